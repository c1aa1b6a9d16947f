//! Request budgets on a large archive: `status` and `wal-push` must cost a
//! handful of storage requests however much WAL the archive holds, because
//! they list only the WAL directories they need (`repo::wal_dirs`).
//!
//! The repository is that of a real cluster whose WAL was moved far ahead
//! with `pg_resetwal -l` to timeline 3 at segment N (N = 100,000 by
//! default). It archives through pgproof and takes a real backup there;
//! then the test writes N synthetic archived segments *before* that
//! position directly into storage, over three timelines (1: the first 40%,
//! 2: the next 30%, 3: the rest) with the history files of timelines 2 and
//! 3, under the keys `pgproof::repo::layout` gives for that cluster's
//! binding. Synthetic segments hold their own name, not WAL: neither
//! command under test reads a segment, and none has a claim object, like an
//! archive written before claims existed. The measured `wal-push` pushes the
//! real next segment of the real cluster.
//!
//! `PGPROOF_BUDGET_SEGMENTS` changes N (S3 runs default to 20,000: see
//! `segments`); `PGPROOF_BUDGET_COMPARE_EXE` runs the
//! measured commands with another pgproof build and only prints the figures
//! (how the before/after numbers in the issue were taken).

mod common;

use common::*;
use futures::StreamExt;
use pgproof::codec::{Compression, ContentChecksum};
use pgproof::pg::walname::WalFileName;
use pgproof::repo::ClusterName;
use pgproof::repo::identity::Binding;
use std::path::Path;
use std::time::{Duration, Instant};

const STATUS_BUDGET: u64 = 20;
const WAL_PUSH_BUDGET: u64 = 5;
/// "Finishes in seconds", with room for a loaded 2-core machine.
const STATUS_TIME_LIMIT: Duration = Duration::from_secs(20);

/// moto stores about 140 objects a second on the 2-core test machine (32
/// uploads in flight): 100,000 would take 12 minutes, so S3 runs hold
/// 20,000 unless `PGPROOF_BUDGET_SEGMENTS` says otherwise. The budgets do
/// not depend on the count; the filesystem run holds the full 100,000.
fn segments(backend: Backend) -> u64 {
    std::env::var("PGPROOF_BUDGET_SEGMENTS")
        .ok()
        .map(|v| v.parse().expect("PGPROOF_BUDGET_SEGMENTS is a number"))
        .unwrap_or(match backend {
            Backend::File => 100_000,
            Backend::S3 => 20_000,
            Backend::Azure => unreachable!("the budgets are measured on file and S3 repositories"),
        })
}

fn segment_name(timeline: u32, n: u64) -> String {
    format!("{timeline:08X}{:08X}{:08X}", n / 256, n % 256)
}

fn lsn_of(n: u64) -> String {
    let lsn = n * (16 << 20);
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// `(key relative to the repository root, body)` of every synthetic object.
fn synthetic_objects(binding: &str, n: u64) -> Vec<(String, Vec<u8>)> {
    let cluster = ClusterName::new("main").unwrap();
    let (s2, s3) = (n * 4 / 10, n * 7 / 10);
    let object = |name: &str, body: Vec<u8>| {
        let key = pgproof::repo::layout::wal_object(
            &cluster,
            binding,
            WalFileName::parse(name).unwrap(),
            ContentChecksum::of(&body),
            Compression::None,
        );
        (key, body)
    };
    let switch = |parent: u32, at: u64| format!("{parent}\t{}\tsynthetic switch\n", lsn_of(at));
    let mut out = vec![
        object("00000002.history", switch(1, s2).into_bytes()),
        object(
            "00000003.history",
            (switch(1, s2) + &switch(2, s3)).into_bytes(),
        ),
    ];
    for i in 0..n {
        let tli = if i < s2 {
            1
        } else if i < s3 {
            2
        } else {
            3
        };
        let name = segment_name(tli, i);
        out.push(object(&name, name.clone().into_bytes()));
    }
    out
}

fn write_to_directory(root: &Path, objects: &[(String, Vec<u8>)]) {
    for (key, body) in objects {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    }
    chown_tree(&root.join("main"));
}

/// 32 uploads in flight, straight to the bucket under the repository's prefix.
fn write_to_s3(url: &str, objects: Vec<(String, Vec<u8>)>) {
    use object_store::ObjectStoreExt;
    let rest = url.strip_prefix("s3://").unwrap();
    let (bucket, prefix) = rest.split_once('/').unwrap();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3_endpoint())
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing-secret-never-printed")
        .with_allow_http(true)
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let results: Vec<_> = futures::stream::iter(objects.into_iter().map(|(key, body)| {
            let store = &store;
            let path = object_store::path::Path::from(format!("{prefix}/{key}"));
            async move { store.put(&path, body.into()).await }
        }))
        .buffer_unordered(32)
        .collect()
        .await;
        for r in results {
            r.unwrap();
        }
    });
}

/// The total of the `--stats` line: `pgproof <cmd>: storage requests: N (...)`.
fn requests(out: &std::process::Output) -> u64 {
    let line = stats_line(out);
    line.split("storage requests: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("unreadable --stats line: {line}"))
}

fn stats_line(out: &std::process::Output) -> String {
    let err = stderr(out);
    err.lines()
        .find(|l| l.contains("storage requests: "))
        .unwrap_or_else(|| panic!("no --stats line in:\n{err}"))
        .to_string()
}

/// Runs `exe` in `cwd` (as archive_command runs in the data directory).
fn measured(
    exe: &Path,
    args: &[&str],
    env: &[(String, String)],
    cwd: &Path,
) -> (std::process::Output, Duration) {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args).current_dir(cwd);
    for (k, _) in std::env::vars() {
        if k.starts_with("PGPROOF_") || k.starts_with("AWS_") || k == "PGDATA" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let started = Instant::now();
    let out = cmd.output().unwrap();
    (out, started.elapsed())
}

fn budget(backend: Backend) {
    let Some(&major) = majors().iter().find(|&&m| m >= 15) else {
        return;
    };
    let n = segments(backend);
    let scratch = Scratch::new(&format!("budget-{backend:?}").to_lowercase());
    let repo = TestRepo::new(&scratch, backend);
    let mut cluster = Cluster::init(&scratch, "source", major);
    // Far ahead, on timeline 3, right after the synthetic WAL.
    let out = as_postgres(cluster.bin.join("pg_resetwal"))
        .arg("-l")
        .arg(segment_name(3, n))
        .arg("-D")
        .arg(&cluster.pgdata)
        .output()
        .unwrap();
    assert!(out.status.success(), "pg_resetwal: {}", stderr(&out));
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    let backup = repo.backup(&cluster);

    let control = pgproof::pg::control::ControlFile::read(&cluster.pgdata).unwrap();
    assert_eq!(
        control.wal_segment_size,
        16 << 20,
        "the layout assumes 16 MiB segments"
    );
    let binding = Binding::id_for(control.system_identifier, control.major);
    let objects = synthetic_objects(&binding, n);
    let count = objects.len();
    let started = Instant::now();
    match backend {
        Backend::File => write_to_directory(repo.dir.as_ref().unwrap(), &objects),
        Backend::S3 => write_to_s3(&repo.url, objects),
        Backend::Azure => unreachable!("the budgets are measured on file and S3 repositories"),
    }
    let populate = started.elapsed();

    // The next segment, left for the test to push: archiving stops, then a switch.
    cluster.execute("ALTER SYSTEM SET archive_command = ''");
    cluster.execute("SELECT pg_reload_conf()");
    wait_until("archive_command is off", Duration::from_secs(30), || {
        cluster.query_one("SHOW archive_command").is_empty()
    });
    let next = cluster.write_and_switch(1000);
    let ready = cluster
        .pgdata
        .join("pg_wal/archive_status")
        .join(format!("{next}.ready"));
    wait_until(
        "the switched segment is .ready",
        Duration::from_secs(30),
        || ready.exists(),
    );

    let compare = std::env::var_os("PGPROOF_BUDGET_COMPARE_EXE").map(std::path::PathBuf::from);
    let exe = compare
        .clone()
        .unwrap_or_else(|| pgproof_exe().to_path_buf());
    let base = ["--stats", "--repo", repo.url.as_str(), "--cluster", "main"];
    let (status, status_time) = measured(
        &exe,
        &[&base[..], &["status"]].concat(),
        &repo.env,
        &scratch.path,
    );
    let wal = format!("pg_wal/{next}");
    let (push, push_time) = measured(
        &exe,
        &[&base[..], &["wal-push", &wal]].concat(),
        &repo.env,
        &cluster.pgdata,
    );
    let (status_n, push_n) = (requests(&status), requests(&push));
    eprintln!(
        "request budget, {backend:?}, {n} synthetic segments ({count} objects written in {:.1} s) with {}: status {status_n} requests in {:.2} s; wal-push {push_n} requests in {:.2} s",
        populate.as_secs_f64(),
        exe.display(),
        status_time.as_secs_f64(),
        push_time.as_secs_f64()
    );
    eprintln!("  {}\n  {}", stats_line(&status), stats_line(&push));
    if compare.is_some() {
        eprintln!("comparison run: budgets not asserted");
        return;
    }
    assert_exit(&status, 0);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!("gaps           none since backup {backup}")),
        "{text}"
    );
    assert!(
        status_n <= STATUS_BUDGET,
        "status made {status_n} storage requests, more than {STATUS_BUDGET}:\n{}",
        stderr(&status)
    );
    assert!(
        status_time <= STATUS_TIME_LIMIT,
        "status took {status_time:?} on {n} archived segments"
    );
    assert_exit(&push, 0);
    assert!(
        push_n <= WAL_PUSH_BUDGET,
        "wal-push made {push_n} storage requests, more than {WAL_PUSH_BUDGET}:\n{}",
        stderr(&push)
    );
    // Stored for real: the newest segment status now sees is the pushed one.
    let out = repo.run(&["status", "--json"]);
    assert!(
        stdout_of(&out).contains(&format!("\"newest\": \"{next}\"")),
        "{}",
        stdout_of(&out)
    );
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_and_wal_push_stay_within_their_budgets_on_a_large_filesystem_archive() {
    budget(Backend::File);
}

#[test]
fn status_and_wal_push_stay_within_their_budgets_on_a_large_s3_archive() {
    budget(Backend::S3);
}
