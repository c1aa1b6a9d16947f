//! WAL archiving end to end: real clusters of each major archive through
//! `pgproof wal-push` as their archive_command, under a write load that
//! switches many segments, into a file, an S3 and an Azure repository; every segment
//! comes back byte-identical through `pgproof wal-fetch`.

mod common;

use common::*;

fn archived_names(cluster: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cluster.pgdata.join("pg_wal/archive_status"))
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".done")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

fn round_trip(major: u32, backend: Backend) {
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new(&format!("wal-{major}-{backend:?}"));
    let repo = TestRepo::new(&scratch, backend);
    let mut cluster = Cluster::init(&scratch, "pg", major);
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();

    let mut last = String::new();
    for round in 0..8u32 {
        // Growing batches: some segments fill up by themselves, others are switched early.
        last = cluster.write_and_switch(5_000 + round * 40_000);
    }
    cluster.wait_archived(&last);
    let archiver = cluster.query_one("SELECT failed_count::text FROM pg_stat_archiver");
    assert_eq!(
        archiver,
        "0",
        "archive_command failed at least once:\n{}",
        cluster.server_log()
    );
    assert!(
        cluster.server_log().contains("pgproof wal-push: archived"),
        "no summary line in the server log"
    );

    let names = archived_names(&cluster);
    assert!(
        names.len() >= 10,
        "expected many archived segments, got {names:?}"
    );
    let fetched = scratch.dir("fetched");
    for name in &names {
        let dest = fetched.join(name);
        let out = pgproof(
            &[
                "--repo",
                &repo.url,
                "--cluster",
                "main",
                "wal-fetch",
                name,
                dest.to_str().unwrap(),
            ],
            &repo.env,
            None,
        );
        assert_exit(&out, 0);
        let original = std::fs::read(cluster.pgdata.join("pg_wal").join(name)).unwrap();
        let restored = std::fs::read(&dest).unwrap();
        assert!(
            original == restored,
            "{name} did not come back byte-identical"
        );
    }
}

macro_rules! round_trips {
    ($($test:ident: $major:expr, $backend:expr;)*) => {
        $(
            #[test]
            fn $test() {
                round_trip($major, $backend);
            }
        )*
    };
}

round_trips! {
    pg13_file_repository: 13, Backend::File;
    pg14_file_repository: 14, Backend::File;
    pg15_file_repository: 15, Backend::File;
    pg16_file_repository: 16, Backend::File;
    pg17_file_repository: 17, Backend::File;
    pg18_file_repository: 18, Backend::File;
    pg14_s3_repository: 14, Backend::S3;
    pg15_s3_repository: 15, Backend::S3;
    pg17_s3_repository: 17, Backend::S3;
    pg16_azure_repository: 16, Backend::Azure;
}

#[test]
fn every_compression_round_trips() {
    let scratch = Scratch::new("codecs");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "pg", 15);
    cluster.start();
    cluster.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g");
    let segment = cluster.write_and_switch(1000);
    let original = std::fs::read(cluster.pgdata.join("pg_wal").join(&segment)).unwrap();
    for codec in ["zstd", "zstd:9", "lz4", "none"] {
        let name = format!("c-{}", codec.replace(':', "-"));
        let args = [
            "--repo",
            repo.url.as_str(),
            "--cluster",
            name.as_str(),
            "--compression",
            codec,
        ];
        let mut push = args.to_vec();
        let rel = format!("pg_wal/{segment}");
        push.extend(["wal-push", rel.as_str()]);
        assert_exit(&pgproof(&push, &[], Some(&cluster.pgdata)), 0);
        let dest = scratch.path.join(format!("{name}.out"));
        let mut fetch = args.to_vec();
        fetch.extend(["wal-fetch", segment.as_str(), dest.to_str().unwrap()]);
        assert_exit(&pgproof(&fetch, &[], None), 0);
        assert!(
            std::fs::read(&dest).unwrap() == original,
            "{codec} did not round-trip"
        );
    }
}
