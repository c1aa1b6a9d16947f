//! What wal-push and wal-fetch refuse, and how they say it: WAL of another
//! cluster, conflicting re-pushes, missing and corrupt objects, truncated or
//! foreign files, bad settings and unreachable storage. After every refusal
//! the repository is exactly as it was.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A PostgreSQL 15 cluster archiving into a file repository under the name
/// "a", with a few segments archived.
struct Archiving {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    segments: Vec<String>,
}

fn archiving(name: &str) -> Archiving {
    let scratch = Scratch::new(name);
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "a", 15);
    cluster.archive_with(&format!("--repo {} --cluster a", repo.url));
    cluster.start();
    let mut segments = Vec::new();
    for _ in 0..3 {
        segments.push(cluster.write_and_switch(2000));
    }
    cluster.wait_archived(segments.last().unwrap());
    Archiving {
        scratch,
        repo,
        cluster,
        segments,
    }
}

impl Archiving {
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--repo", self.repo.url.as_str(), "--cluster", "a"];
        v.extend_from_slice(extra);
        v
    }

    fn push_from_a(&self, path: &Path) -> std::process::Output {
        let pgdata = self.cluster.pgdata.to_str().unwrap();
        pgproof(
            &self.args(&["--pgdata", pgdata, "wal-push", path.to_str().unwrap()]),
            &[],
            None,
        )
    }

    fn segment_path(&self, i: usize) -> PathBuf {
        self.cluster.pgdata.join("pg_wal").join(&self.segments[i])
    }

    fn stored_objects(&self) -> Vec<PathBuf> {
        files_under(self.repo.dir.as_ref().unwrap())
    }

    fn stored_object_of(&self, name: &str) -> PathBuf {
        self.stored_objects()
            .into_iter()
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{name}-"))
            })
            .unwrap_or_else(|| panic!("{name} is not stored"))
    }
}

fn other_major() -> u32 {
    majors().into_iter().find(|m| *m != 15).unwrap_or(15)
}

#[test]
fn wal_of_another_cluster_is_refused_and_nothing_changes() {
    let a = archiving("foreign");
    let b = Cluster::init(&a.scratch, "b", other_major());
    b.start();
    let b_segment = b.write_and_switch(100);
    let b_path = b.pgdata.join("pg_wal").join(&b_segment);
    let before = a.repo.snapshot();
    let a_sys = a.cluster.system_identifier();
    let b_sys = b.system_identifier();

    // B's segment handed to A's archive_command (as if copied into A's pg_wal).
    let out = a.push_from_a(&b_path);
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(&a_sys) && err.contains(&b_sys),
        "both systems must be named:\n{err}"
    );
    assert!(
        err.contains("page header") && err.contains("pg_control"),
        "where each fact came from:\n{err}"
    );

    // B archiving into A's prefix: the prefix's identity record refuses it.
    let out = pgproof(
        &a.args(&["wal-push", &format!("pg_wal/{b_segment}")]),
        &[],
        Some(&b.pgdata),
    );
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(&a_sys) && err.contains(&b_sys),
        "both systems must be named:\n{err}"
    );
    assert!(err.contains("belongs to system"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    assert_eq!(
        a.repo.snapshot(),
        before,
        "the repository changed after a refusal"
    );
}

#[test]
fn identical_repush_succeeds_and_conflicting_repush_fails() {
    let a = archiving("repush");
    let name = a.segments[1].clone();

    let out = pgproof(
        &a.args(&["wal-push", &format!("pg_wal/{name}")]),
        &[],
        Some(&a.cluster.pgdata),
    );
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("identical content"),
        "{}",
        stderr(&out)
    );

    let before = a.repo.snapshot();
    let mut altered = std::fs::read(a.segment_path(1)).unwrap();
    altered[3 * 8192 + 100] ^= 0x5A;
    let dir = a.scratch.dir("altered");
    let altered_path = dir.join(&name);
    std::fs::write(&altered_path, &altered).unwrap();
    let out = a.push_from_a(&altered_path);
    assert_exit(&out, 5);
    assert!(
        stderr(&out).contains("different content"),
        "{}",
        stderr(&out)
    );
    assert_eq!(a.repo.snapshot(), before, "the stored object changed");
}

#[test]
fn wal_fetch_exit_statuses_follow_the_recovery_contract() {
    let a = archiving("fetch-status");
    let out_dir = a.scratch.dir("out");
    let dest = out_dir.join("RECOVERYXLOG");
    let dest_s = dest.to_str().unwrap();

    // Not archived: 1, so PostgreSQL moves on.
    for missing in ["000000010000000A00000001", "00000005.history"] {
        let out = pgproof(&a.args(&["wal-fetch", missing, dest_s]), &[], None);
        assert_exit(&out, 1);
        assert!(!dest.exists());
    }

    // A prefix nothing was archived to is a misconfiguration, not the end of the archive.
    let out = pgproof(
        &[
            "--repo",
            &a.repo.url,
            "--cluster",
            "typo",
            "wal-fetch",
            &a.segments[0],
            dest_s,
        ],
        &[],
        None,
    );
    assert_exit(&out, 128);
    assert!(
        stderr(&out).contains("no identity record"),
        "{}",
        stderr(&out)
    );

    // A damaged stored object is never handed over: 128 in archive recovery...
    let victim = a.stored_object_of(&a.segments[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&victim, &bytes).unwrap();
    let out = pgproof(&a.args(&["wal-fetch", &a.segments[0], dest_s]), &[], None);
    assert_exit(&out, 128);
    assert!(!dest.exists(), "a corrupt segment reached the destination");
    let err = stderr(&out);
    assert!(
        err.contains("corrupt") && err.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );

    // ...and 1 in standby mode, so that the standby retries.
    let standby = a.scratch.dir("standby");
    std::fs::write(standby.join("standby.signal"), "").unwrap();
    let out = pgproof(
        &a.args(&[
            "--pgdata",
            standby.to_str().unwrap(),
            "wal-fetch",
            &a.segments[0],
            dest_s,
        ]),
        &[],
        None,
    );
    assert_exit(&out, 1);
    assert!(!dest.exists());

    // A truncated object fails the same way.
    let victim = a.stored_object_of(&a.segments[1]);
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 3]).unwrap();
    let out = pgproof(&a.args(&["wal-fetch", &a.segments[1], dest_s]), &[], None);
    assert_exit(&out, 128);
    assert!(!dest.exists());

    // The intact one still comes back, identical.
    let out = pgproof(&a.args(&["wal-fetch", &a.segments[2], dest_s]), &[], None);
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(a.segment_path(2)).unwrap()
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let a = archiving("bad-input");
    let before = a.repo.snapshot();
    let dir = a.scratch.dir("bad");

    let truncated = dir.join(&a.segments[0]);
    let segment = std::fs::read(a.segment_path(0)).unwrap();
    std::fs::write(&truncated, &segment[..segment.len() / 2]).unwrap();
    let out = a.push_from_a(&truncated);
    assert_exit(&out, 6);
    assert!(stderr(&out).contains("truncated"), "{}", stderr(&out));

    let not_wal = dir.join("000000010000000000000041");
    std::fs::write(&not_wal, "SELECT 'this is not WAL';\n".repeat(1000)).unwrap();
    let out = a.push_from_a(&not_wal);
    assert_exit(&out, 6);
    assert!(
        stderr(&out).contains("not a valid WAL segment"),
        "{}",
        stderr(&out)
    );

    // A real segment under the wrong name.
    let misnamed = dir.join("000000010000000000000042");
    std::fs::write(&misnamed, &segment).unwrap();
    let out = a.push_from_a(&misnamed);
    assert_exit(&out, 6);
    assert!(
        stderr(&out).contains("first page is for LSN"),
        "{}",
        stderr(&out)
    );

    let junk = dir.join("junk.txt");
    std::fs::write(&junk, "x").unwrap();
    let out = a.push_from_a(&junk);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("not the name of a WAL file"),
        "{}",
        stderr(&out)
    );

    let bad_history = dir.join("00000002.history");
    std::fs::write(&bad_history, "garbage\n").unwrap();
    let out = a.push_from_a(&bad_history);
    assert_exit(&out, 6);

    let pgdata = a.cluster.pgdata.to_str().unwrap();
    let seg = a.segment_path(0);
    let seg = seg.to_str().unwrap();
    let out = pgproof(
        &[
            "--repo",
            "ftp://host/x",
            "--cluster",
            "a",
            "--pgdata",
            pgdata,
            "wal-push",
            seg,
        ],
        &[],
        None,
    );
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));

    let out = pgproof(
        &[
            "--repo",
            "file:///nonexistent/pgproof-repo",
            "--cluster",
            "a",
            "--pgdata",
            pgdata,
            "wal-push",
            seg,
        ],
        &[],
        None,
    );
    assert_exit(&out, 7);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));

    let out = pgproof(
        &["--repo", &a.repo.url, "--pgdata", pgdata, "wal-push", seg],
        &[],
        None,
    );
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("no cluster name"), "{}", stderr(&out));

    let out = pgproof(
        &[
            "--repo",
            &a.repo.url,
            "--cluster",
            "a",
            "--compression",
            "brotli",
            "--pgdata",
            pgdata,
            "wal-push",
            seg,
        ],
        &[],
        None,
    );
    assert_exit(&out, 3);

    // No data directory: the working directory is not one, and nothing names one.
    let out = pgproof(&a.args(&["wal-push", seg]), &[], Some(&dir));
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("no data directory"),
        "{}",
        stderr(&out)
    );

    assert_eq!(a.repo.snapshot(), before);
}

#[test]
fn unreachable_storage_fails_within_the_time_limit_without_leaking_credentials() {
    let scratch = Scratch::new("unreachable");
    let cluster = Cluster::init(&scratch, "a", 15);
    cluster.start();
    let seg = cluster.write_and_switch(100);
    let env: Vec<(String, String)> = [
        ("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-value"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let wal_path = format!("pg_wal/{seg}");
    for args in [
        vec!["wal-push", wal_path.as_str()],
        vec![
            "wal-fetch",
            seg.as_str(),
            "/tmp/pgproof-tests/never-written",
        ],
    ] {
        let started = Instant::now();
        let mut full = vec![
            "--repo",
            "s3://bucket/prefix",
            "--cluster",
            "a",
            "--timeout",
            "3s",
            // Refused connections are retried until the retry deadline
            // (2 minutes by default): the bound under test is the policy's.
            "--retry-deadline",
            "5s",
            "-vv",
        ];
        full.extend(args);
        let out = pgproof(&full, &env, Some(&cluster.pgdata));
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        let err = stderr(&out);
        assert!(
            code(&out) == 7 || code(&out) == 128,
            "status {}:\n{err}",
            code(&out)
        );
        assert!(
            !err.contains("very-secret-value"),
            "the secret key was printed:\n{err}"
        );
        assert!(
            err.contains("s3://bucket/prefix"),
            "the repository must be named:\n{err}"
        );
    }
}

#[test]
fn credentials_never_appear_in_output_or_stored_metadata() {
    let scratch = Scratch::new("creds");
    let repo = TestRepo::new(&scratch, Backend::S3);
    let cluster = Cluster::init(&scratch, "a", 15);
    cluster.start();
    let seg = cluster.write_and_switch(100);
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "a",
            "-vv",
            "wal-push",
            &format!("pg_wal/{seg}"),
        ],
        &repo.env,
        Some(&cluster.pgdata),
    );
    assert_exit(&out, 0);
    let secret = &repo
        .env
        .iter()
        .find(|(k, _)| k == "AWS_SECRET_ACCESS_KEY")
        .unwrap()
        .1;
    assert!(!stderr(&out).contains(secret.as_str()));
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret.as_str()));
    let fetched = scratch.dir("f").join("identity");
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "a",
            "-vv",
            "wal-fetch",
            &seg,
            fetched.to_str().unwrap(),
        ],
        &repo.env,
        None,
    );
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(secret.as_str()));
}

#[test]
fn ready_segments_are_pushed_ahead_and_later_calls_are_cheap() {
    let a = archiving("ahead");
    // A copy of pg_wal where five segments wait as .ready, as after an archiver outage.
    let fake = a.scratch.dir("fake");
    let wal = fake.join("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    let mut names = a.segments.clone();
    for i in 0..2 {
        names.push(a.cluster.write_and_switch(500 + i));
    }
    for n in &names {
        std::fs::copy(a.cluster.pgdata.join("pg_wal").join(n), wal.join(n)).unwrap();
        std::fs::write(wal.join("archive_status").join(format!("{n}.ready")), "").unwrap();
    }
    let pgdata = a.cluster.pgdata.to_str().unwrap();
    let args = [
        "--repo",
        a.repo.url.as_str(),
        "--cluster",
        "ahead",
        "--pgdata",
        pgdata,
        "wal-push",
    ];
    let push = |n: &str| {
        let mut v = args.to_vec();
        let p = wal.join(n);
        let p = p.to_str().unwrap().to_string();
        v.push(&p);
        pgproof(&v, &[], None)
    };
    let out = push(&names[0]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains(&format!(
            "pushed {} more ready files ahead",
            names.len() - 1
        )),
        "{}",
        stderr(&out)
    );
    let (claims, stored): (Vec<_>, Vec<_>) = a
        .stored_objects()
        .into_iter()
        .filter(|p| p.to_str().unwrap().contains("/ahead/wal/"))
        .partition(|p| file_name(p).ends_with(".claim"));
    assert_eq!(stored.len(), names.len(), "{stored:?}");
    assert_eq!(
        claims.len(),
        names.len(),
        "each pushed name is claimed: {claims:?}"
    );
    for n in &names[1..] {
        let out = push(n);
        assert_exit(&out, 0);
        assert!(stderr(&out).contains("already pushed"), "{}", stderr(&out));
    }
    // Markers are used once: a repeated call checks the content in full.
    let out = push(&names[1]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("identical content"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn wal_fetch_prefetches_the_next_segments() {
    let a = archiving("prefetch");
    let mut names = a.segments.clone();
    for i in 0..3 {
        names.push(a.cluster.write_and_switch(300 + i));
    }
    a.cluster.wait_archived(names.last().unwrap());
    // A data directory being recovered: pg_control and PG_VERSION from the source.
    let target = a.scratch.dir("target");
    std::fs::create_dir_all(target.join("global")).unwrap();
    std::fs::create_dir_all(target.join("pg_wal")).unwrap();
    std::fs::copy(
        a.cluster.pgdata.join("global/pg_control"),
        target.join("global/pg_control"),
    )
    .unwrap();
    std::fs::copy(
        a.cluster.pgdata.join("PG_VERSION"),
        target.join("PG_VERSION"),
    )
    .unwrap();

    let fetch = |n: &str| {
        pgproof(
            &a.args(&["--prefetch", "3", "wal-fetch", n, "pg_wal/RECOVERYXLOG"]),
            &[],
            Some(&target),
        )
    };
    let out = fetch(&names[0]);
    assert_exit(&out, 0);
    let spool_has = |n: &str| {
        files_under(&target.join("pg_wal/.pgproof-prefetch"))
            .iter()
            .any(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{n}-"))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(spool_has(&names[1]) && spool_has(&names[2]) && spool_has(&names[3])) {
        assert!(
            Instant::now() < deadline,
            "the prefetcher did not fill the spool"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in &names[1..4] {
        let out = fetch(n);
        assert_exit(&out, 0);
        assert!(stderr(&out).contains("prefetched"), "{}", stderr(&out));
        let original = std::fs::read(a.cluster.pgdata.join("pg_wal").join(n)).unwrap();
        assert!(
            std::fs::read(target.join("pg_wal/RECOVERYXLOG")).unwrap() == original,
            "{n} differs"
        );
    }
    // A damaged spool file is discarded and the archive copy used instead.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spool_has(&names[4]) {
        assert!(
            Instant::now() < deadline,
            "the prefetcher did not fetch {}",
            names[4]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let spooled = files_under(&target.join("pg_wal/.pgproof-prefetch"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{}-", names[4]))
        })
        .unwrap();
    std::fs::write(&spooled, b"damaged").unwrap();
    let out = fetch(&names[4]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("(prefetched"), "{}", stderr(&out));
    assert!(
        std::fs::read(target.join("pg_wal/RECOVERYXLOG")).unwrap()
            == std::fs::read(a.cluster.pgdata.join("pg_wal").join(&names[4])).unwrap()
    );
}

#[test]
fn wal_fetch_works_in_the_data_directory_it_runs_in_not_the_configured_one() {
    // A copy restored from cluster `a` runs restore_command with the same
    // configuration file, whose section names a's data directory: the
    // prefetch spool belongs in the copy, never in the source's pg_wal.
    let a = archiving("fetch-cwd");
    let config = a.scratch.path.join("pgproof.toml");
    std::fs::write(
        &config,
        format!(
            "repo = \"{}\"\n[clusters.a]\npgdata = \"{}\"\n",
            a.repo.url,
            a.cluster.pgdata.display()
        ),
    )
    .unwrap();
    let copy = a.scratch.dir("copy");
    std::fs::create_dir_all(copy.join("global")).unwrap();
    std::fs::create_dir_all(copy.join("pg_wal")).unwrap();
    for f in ["global/pg_control", "PG_VERSION"] {
        std::fs::copy(a.cluster.pgdata.join(f), copy.join(f)).unwrap();
    }
    let out = pgproof(
        &[
            "--config",
            config.to_str().unwrap(),
            "--cluster",
            "a",
            "--prefetch",
            "1",
            "wal-fetch",
            &a.segments[0],
            "pg_wal/RECOVERYXLOG",
        ],
        &[],
        Some(&copy),
    );
    assert_exit(&out, 0);
    wait_until("the prefetcher", Duration::from_secs(30), || {
        !files_under(&copy.join("pg_wal/.pgproof-prefetch")).is_empty()
    });
    assert!(
        files_under(&a.cluster.pgdata.join("pg_wal/.pgproof-prefetch")).is_empty(),
        "nothing is spooled into the source's pg_wal"
    );
}

#[test]
fn history_files_are_archived_and_checked() {
    let a = archiving("history");
    let dir = a.scratch.dir("hist");
    let history = dir.join("00000002.history");
    std::fs::write(&history, "1\t0/3000158\tno recovery target specified\n").unwrap();
    let out = a.push_from_a(&history);
    assert_exit(&out, 0);
    let dest = dir.join("fetched.history");
    let out = pgproof(
        &a.args(&["wal-fetch", "00000002.history", dest.to_str().unwrap()]),
        &[],
        None,
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&history).unwrap()
    );
}

/// Google Cloud Storage is refused as a setting (no emulator exercises it),
/// and an Azure repository without an account names the variables to set.
#[test]
fn object_stores_pgproof_cannot_use_are_refused_with_a_hint() {
    let out = pgproof(
        &[
            "--repo",
            "gs://bucket/pg",
            "--cluster",
            "main",
            "backup-list",
        ],
        &[],
        None,
    );
    assert_exit(&out, 3);
    let said = stderr(&out);
    assert!(
        said.contains("Google Cloud Storage is not supported yet"),
        "{said}"
    );
    assert!(said.contains("hint:"), "{said}");

    let out = pgproof(
        &[
            "--repo",
            "az://container/pg",
            "--cluster",
            "main",
            "backup-list",
        ],
        &[],
        None,
    );
    assert_exit(&out, 7);
    let said = stderr(&out);
    assert!(said.contains("configuring Azure Blob Storage"), "{said}");
    assert!(said.contains("AZURE_STORAGE_ACCOUNT_NAME"), "{said}");
}
