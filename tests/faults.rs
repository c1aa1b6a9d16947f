//! Fault injection: pgproof against storage that resets connections,
//! answers 503 Slow Down, stalls past the time limit, cuts bodies short and
//! loses responses after acting on requests (`common::fault_proxy`, between
//! pgproof and moto), against SIGKILL at random points, and against a full
//! disk. The invariants are the product's: a command that exits 0 did its
//! whole job (every object present and byte-identical, every backup
//! verifiable, every restore startable with the right rows); a command that
//! fails says so with a non-zero status (7 for storage) and a retry succeeds;
//! no partial or misnamed object is ever stored.
//!
//! Figures are printed on lines starting `FIGURES` (bench/faults.sh runs the
//! long version and collects them). Knobs: PGPROOF_FAULT_SEED (repeat a
//! schedule), PGPROOF_FAULT_RATE, PGPROOF_FAULTS_SEGMENTS (default 1000),
//! PGPROOF_FAULTS_JOBS (default 4), PGPROOF_FAULTS_KILLS (default 100).

mod common;
#[path = "faults/runs.rs"]
mod runs;
#[path = "faults/wal_source.rs"]
mod wal_source;

use common::fault_proxy::{Counts, FaultProxy};
use common::*;
use runs::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wal_source::{WalSource, major};

/// pgproof's time limit per network step under faults: a stall costs little.
const TIMEOUT: &str = "2s";
/// A single call that runs longer than this is hung (and a failure).
const CALL_LIMIT: Duration = Duration::from_secs(180);
/// Calls per segment before the harness gives up on it (a failure).
const MAX_ATTEMPTS: usize = 30;
const FAULT_RATE: f64 = 0.2;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
        .unwrap_or(default)
}

/// `f(0..n)` on `jobs` threads, results in index order.
fn parallel<T: Send>(n: usize, jobs: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, T)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= n {
                            return mine;
                        }
                        mine.push((i, f(i)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, t)| t).collect()
}

/// What the archiver gives archive_command: the repository's environment,
/// and the data directory as the working directory.
fn archiver_env(repo_env: &[(String, String)], source: &WalSource) -> ArchiverEnv {
    ArchiverEnv {
        env: repo_env.to_vec(),
        pgdata: source.cluster.pgdata.clone(),
    }
}

struct ArchiverEnv {
    env: Vec<(String, String)>,
    pgdata: PathBuf,
}

fn push_command(
    repo: &TestRepo,
    env: &ArchiverEnv,
    segment: &Path,
    timeout: &str,
) -> std::process::Command {
    let mut cmd = pgproof_command(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "--timeout",
            timeout,
            "--push-ahead",
            "0",
            "wal-push",
            segment.to_str().unwrap(),
        ],
        &env.env,
        false,
    );
    cmd.current_dir(&env.pgdata);
    cmd
}

/// `wal-fetch` of `segment`'s name straight from the repository (never
/// through the proxy): `None` when it comes back byte-identical, else why not.
/// The second value is true when the file is not archived at all.
fn fetch_problem(repo: &TestRepo, segment: &Path, into: &Path) -> Option<(String, bool)> {
    let name = file_name(segment);
    let dest = into.join(name);
    let run = run_limited(
        pgproof_command(
            &[
                "--repo",
                &repo.url,
                "--cluster",
                "main",
                "--prefetch",
                "0",
                "wal-fetch",
                name,
                dest.to_str().unwrap(),
            ],
            &repo.env,
            false,
        ),
        CALL_LIMIT,
        None,
    );
    let problem = match run.code {
        Some(0) if std::fs::read(&dest).ok() == std::fs::read(segment).ok() => None,
        Some(0) => Some((format!("{name} came back different"), false)),
        Some(1) => Some((format!("{name} is not archived"), true)),
        other => Some((
            format!("wal-fetch {name} failed ({other:?}): {}", run.reason()),
            false,
        )),
    };
    let _ = std::fs::remove_file(&dest);
    problem
}

/// Exit statuses of failed calls, with a sample reason for each.
fn tally_failures<'a>(runs: impl Iterator<Item = &'a Run>) -> BTreeMap<String, (usize, String)> {
    let mut by_code: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for run in runs.filter(|r| !r.ok()) {
        let key = match (run.code, run.hung) {
            (_, true) => "hung".to_string(),
            (Some(c), _) => c.to_string(),
            (None, _) => "signal".to_string(),
        };
        let entry = by_code.entry(key).or_insert((0, run.reason()));
        entry.0 += 1;
    }
    by_code
}

fn describe_counts(c: &Counts) -> String {
    format!(
        "{c}; requests not answered in full (retried or failed) {}",
        c.requests - c.relayed
    )
}

/// Item 2: at least 1000 wal-push calls through the fault proxy.
#[test]
fn wal_push_of_many_segments_through_faults() {
    push_through_faults(Backend::S3, env_or("PGPROOF_FAULTS_SEGMENTS", 1000));
}

/// The same schedule in front of Azurite: object_store's Azure client and
/// pgproof's own retries of an ambiguous conditional create.
#[test]
fn wal_push_of_many_segments_through_faults_azure() {
    push_through_faults(Backend::Azure, env_or("PGPROOF_FAULTS_SEGMENTS", 300));
}

fn push_through_faults(backend: Backend, count: usize) {
    let jobs = env_or("PGPROOF_FAULTS_JOBS", 4);
    let scratch = Scratch::new(&format!("faults-push-{backend:?}"));
    let t0 = Instant::now();
    let source = WalSource::generate_spread(&scratch, count, 0, 50);
    eprintln!("generated {count} segments in {:?}", t0.elapsed());
    let repo = TestRepo::new(&scratch, backend);
    let (proxy, proxied_env) = match backend {
        Backend::S3 => {
            let proxy = FaultProxy::start(&s3_endpoint(), FAULT_RATE);
            let env = proxy.s3_env();
            (proxy, env)
        }
        Backend::Azure => {
            let proxy = FaultProxy::start(&azurite_endpoint(), FAULT_RATE);
            let env = proxy.azure_env();
            (proxy, env)
        }
        Backend::File => unreachable!("a filesystem repository has no network to fault"),
    };
    let env = archiver_env(&proxied_env, &source);

    proxy.set_enabled(true);
    let pushing = Instant::now();
    let outcomes: Vec<Vec<Run>> = parallel(count, jobs, |i| {
        let mut runs = Vec::new();
        while runs.len() < MAX_ATTEMPTS {
            let run = run_limited(
                push_command(&repo, &env, &source.segments[i], TIMEOUT),
                CALL_LIMIT,
                None,
            );
            let ok = run.ok();
            runs.push(run);
            if ok {
                break;
            }
        }
        runs
    });
    proxy.set_enabled(false);
    let push_time = pushing.elapsed();
    let counts = proxy.counts();

    let fetched = scratch.dir("fetched");
    // Reading back is local work and moto: twice as many at once.
    let problems: Vec<Option<(String, bool)>> = parallel(count, 2 * jobs, |i| {
        // Only what some call reported archived is owed; the rest is counted apart.
        outcomes[i]
            .iter()
            .any(Run::ok)
            .then(|| fetch_problem(&repo, &source.segments[i], &fetched))
            .flatten()
    });
    // Only moto is listed directly; on Azure every segment's fetch above
    // is the check.
    let inv = inventory(&match backend {
        Backend::S3 => s3_keys(&repo),
        _ => Vec::new(),
    });

    let calls: usize = outcomes.iter().map(Vec::len).sum();
    let first_try = outcomes
        .iter()
        .filter(|r| r.len() == 1 && r[0].ok())
        .count();
    let unrecoverable: Vec<&str> = outcomes
        .iter()
        .zip(&source.segments)
        .filter(|(r, _)| !r.iter().any(Run::ok))
        .map(|(_, s)| file_name(s))
        .collect();
    let failures = tally_failures(outcomes.iter().flatten());
    let lost: Vec<&String> = problems
        .iter()
        .flatten()
        .filter(|p| p.1)
        .map(|p| &p.0)
        .collect();
    let false_successes: Vec<&String> = problems
        .iter()
        .flatten()
        .filter(|p| !p.1)
        .map(|p| &p.0)
        .collect();
    let duplicates: Vec<_> = inv.wal.iter().filter(|(_, k)| k.len() > 1).collect();
    let slowest = outcomes
        .iter()
        .flatten()
        .map(|r| r.elapsed)
        .max()
        .unwrap_or_default();
    eprintln!(
        "FIGURES wal-push through faults: seed {}, rate {FAULT_RATE}, {count} segments, {jobs} at once, {:.1} s\n\
         FIGURES   calls {calls} (first try {first_try}, harness retries {}), failed calls by exit status {:?}, slowest call {:.1} s\n\
         FIGURES   proxy: {}\n\
         FIGURES   lost {}, false successes {}, never succeeded in {MAX_ATTEMPTS} calls {}, objects {} (duplicates {}, unknown {})",
        proxy.seed(),
        push_time.as_secs_f64(),
        calls - count,
        failures,
        slowest.as_secs_f64(),
        describe_counts(&counts),
        lost.len(),
        false_successes.len(),
        unrecoverable.len(),
        inv.wal.values().map(Vec::len).sum::<usize>(),
        duplicates.len(),
        inv.unknown.len(),
    );

    assert!(counts.total_faults() > 0, "the schedule injected no fault");
    assert!(
        lost.is_empty(),
        "wal-push exited 0 but nothing is stored: {lost:?}"
    );
    assert!(
        false_successes.is_empty(),
        "wal-push exited 0 but the stored object is not the file: {false_successes:?}"
    );
    assert!(
        unrecoverable.is_empty(),
        "{} segments never archived in {MAX_ATTEMPTS} calls (first: {:?}); failures by exit status: {failures:?}",
        unrecoverable.len(),
        &unrecoverable[..unrecoverable.len().min(5)]
    );
    let not_storage: Vec<_> = failures.iter().filter(|(code, _)| *code != "7").collect();
    assert!(
        not_storage.is_empty(),
        "failed calls must exit 7 (storage unreachable or refusing), not {not_storage:?}"
    );
    assert!(
        duplicates.is_empty() && inv.unknown.is_empty(),
        "stored objects: duplicates {duplicates:?}, unknown {:?}",
        inv.unknown
    );
    for s in source.segments.iter().filter(|_| backend == Backend::S3) {
        assert!(
            inv.wal.contains_key(file_name(s)),
            "{} is not listed in the repository",
            file_name(s)
        );
    }
}

fn pgbench(cluster: &Cluster, args: &[&str]) {
    let out = as_postgres(cluster.bin.join("pgbench"))
        .args(["-h", cluster.socket_dir.to_str().unwrap()])
        .args(["-p", &cluster.port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgbench {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 3: PostgreSQL's own archiver calls wal-push through the proxy while
/// pgbench writes; afterwards the archive is complete and verifies.
#[test]
fn postgres_archives_through_faults_under_pgbench() {
    let scratch = Scratch::new("faults-pgbench");
    let repo = TestRepo::new(&scratch, Backend::S3);
    let proxy = FaultProxy::start(&s3_endpoint(), FAULT_RATE);
    let mut cluster = Cluster::init_with(&scratch, "pg", major(), &["--wal-segsize=1"]);
    cluster.env = proxy.s3_env();
    cluster.archive_with(&format!(
        "--repo {} --cluster main --timeout {TIMEOUT}",
        repo.url
    ));
    cluster.configure("max_wal_size = 64MB\nmin_wal_size = 4MB\n");
    cluster.start();
    // The backup verify checks continuity from, taken straight to moto
    // while the proxy passes the archiver's calls untouched.
    let backup = repo.backup(&cluster);

    proxy.set_enabled(true);
    let t0 = Instant::now();
    pgbench(&cluster, &["-i", "-s", "3", "-q"]);
    pgbench(&cluster, &["-c", "2", "-j", "2", "-T", "10"]);
    let last = cluster.query_one("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut archiver;
    loop {
        archiver = cluster.query_one(
            "SELECT coalesce(last_archived_wal, '') || ' ' || archived_count || ' ' || failed_count FROM pg_stat_archiver",
        );
        if archiver.split(' ').next().unwrap_or("") >= last.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{last} not archived in 300 s through faults (archiver: {archiver})\n{}",
            cluster.server_log()
        );
        // After three failures in a row the archiver sleeps up to a minute
        // unless woken; a reload wakes it.
        cluster.query_one("SELECT pg_reload_conf()::text");
        std::thread::sleep(Duration::from_secs(1));
    }
    proxy.set_enabled(false);
    let counts = proxy.counts();
    let fields: Vec<&str> = archiver.split(' ').collect();
    eprintln!(
        "FIGURES archiver through faults: seed {}, {:.1} s, up to {last}: {} segments archived, {} archive_command failures\n\
         FIGURES   proxy: {}",
        proxy.seed(),
        t0.elapsed().as_secs_f64(),
        fields[1],
        fields[2],
        describe_counts(&counts)
    );

    // The newest segment is stored and reads back verified; verify checks
    // every segment from the backup's start to the newest is there.
    let fetched = scratch.dir("fetched");
    let dest = fetched.join(&last);
    let out = repo.run(&[
        "--prefetch",
        "0",
        "wal-fetch",
        &last,
        dest.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);
    let kept = cluster.pgdata.join("pg_wal").join(&last);
    if let Ok(original) = std::fs::read(&kept) {
        assert!(
            std::fs::read(&dest).unwrap() == original,
            "{last} came back different"
        );
    }
    let out = repo.run(&["verify"]);
    assert_exit(&out, 0);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("verified 1 backup") && report.contains(" 0 problems"),
        "verify checked the backup {backup} and the WAL after it:\n{report}"
    );
}

/// How a command fared through faults: each attempt's exit status.
#[derive(Default)]
struct Attempts {
    codes: Vec<i32>,
    /// Failures that break the contract, with why.
    violations: Vec<String>,
    /// Failures whose message had no hint line.
    without_hint: usize,
    completed: usize,
}

/// A failure is acceptable only as exit 7 with an error naming the
/// repository. Failures without a hint line are counted.
fn judge_failure(what: &str, repo: &TestRepo, out: &std::process::Output, into: &mut Attempts) {
    let err = stderr(out);
    if !err.contains("hint:") {
        into.without_hint += 1;
    }
    if code(out) != 7 {
        into.violations.push(format!(
            "{what} exited {} (not 7): {}",
            code(out),
            error_lines(&err)
        ));
    } else if !err
        .lines()
        .any(|l| l.contains("ERROR") && l.contains(&repo.url))
    {
        into.violations.push(format!(
            "{what} exited 7 without an error naming the repository: {}",
            error_lines(&err)
        ));
    }
}

/// The last few error lines of a command's stderr, each cut to a readable length.
fn error_lines(stderr: &str) -> String {
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("ERROR") && !l.contains("server log:"))
        .map(|l| l.chars().take(500).collect())
        .collect();
    lines[lines.len().saturating_sub(3)..].join("\n  ")
}

/// Item 4: backup-push, restore and prove through the proxy.
#[test]
fn backup_restore_and_prove_through_faults() {
    let scratch = Scratch::new("faults-backup");
    let repo = TestRepo::new(&scratch, Backend::S3);
    // The archiver stores straight into moto: only the commands under test see faults.
    let cluster = Cluster::archiving_into(&scratch, &repo, major());
    cluster.execute(
        "CREATE TABLE keep AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
    // Big enough for multipart uploads and ranged reads (parts stream in 5 MiB pieces).
    cluster.execute(
        "CREATE TABLE bulk AS SELECT g, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 400000) g",
    );
    let proxy = FaultProxy::start(&s3_endpoint(), FAULT_RATE);
    let mut via = proxy.s3_env();
    via.push(("PGUSER".into(), "postgres".into()));
    // Each command completes `rounds` times (prove once: it is slow), each
    // completion checked, within `attempts` tries per completion.
    let attempts = env_or("PGPROOF_FAULTS_ATTEMPTS", 6);
    let rounds = env_or("PGPROOF_FAULTS_ROUNDS", 2);
    let global = |cmd: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--repo", &repo.url, "--cluster", "main", "--timeout", "3s"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(cmd.iter().map(|s| s.to_string()));
        v
    };
    let run_via = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgproof(&args, &via, None)
    };

    proxy.set_enabled(true);
    let mut backup_tries = Attempts::default();
    let mut backup = None;
    for _ in 0..attempts * rounds {
        // The first backup full, the next ones incremental: each reads its
        // parent's block hashes through the faults too, and what is
        // restored and proven below is an incremental's chain.
        let kind = if backup_tries.completed == 0 {
            "--full"
        } else {
            "--incremental"
        };
        cluster.execute("UPDATE bulk SET v = 'changed' WHERE g % 5000 = 0");
        let out = run_via(global(&[
            "backup-push",
            cluster.pgdata.to_str().unwrap(),
            "--fast",
            kind,
        ]));
        backup_tries.codes.push(code(&out));
        if code(&out) == 0 {
            let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let verify = repo.run(&["verify", "--backup", &name]);
            if code(&verify) != 0 {
                backup_tries.violations.push(format!(
                    "backup-push exited 0 but backup {name} does not verify: {}{}",
                    String::from_utf8_lossy(&verify.stdout),
                    stderr(&verify)
                ));
            }
            backup_tries.completed += 1;
            backup = Some(name);
            if backup_tries.completed == rounds {
                break;
            }
            continue;
        }
        judge_failure("backup-push", &repo, &out, &mut backup_tries);
    }
    let backup_counts = proxy.counts();
    proxy.set_enabled(false);
    // Restore and prove are tested even when no backup got through.
    let backup = backup.unwrap_or_else(|| repo.backup(&cluster));
    if backup_tries.completed >= 2 {
        let listed = repo.run(&["backup-list", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let newest = rows.as_array().unwrap().last().unwrap();
        assert_eq!(newest["name"], backup.as_str());
        assert_eq!(newest["type"], "incremental", "{newest}");
    }
    cluster.execute("INSERT INTO keep SELECT g, 'after' FROM generate_series(1001, 1500) g");
    let last = cluster.write_and_switch(10);
    cluster.wait_archived(&last);

    proxy.set_enabled(true);
    let mut restore_tries = Attempts::default();
    for i in 0..attempts * rounds {
        let dest = scratch.path.join(format!("restored-{i}"));
        let out = run_via(global(&["restore", dest.to_str().unwrap()]));
        restore_tries.codes.push(code(&out));
        if code(&out) != 0 {
            judge_failure("restore", &repo, &out, &mut restore_tries);
            continue;
        }
        restore_tries.completed += 1;
        // Started with WAL fetched straight from moto: the restore is judged, not the replay.
        let restored = Cluster {
            major: cluster.major,
            pgdata: dest,
            port: free_port(),
            socket_dir: scratch.dir(&format!("restored-{i}-sock")),
            bin: cluster.bin.clone(),
            log: scratch.path.join(format!("restored-{i}.log")),
            env: repo.env.clone(),
        };
        restored.configure(&format!(
            "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\n",
            restored.port,
            restored.socket_dir.display()
        ));
        restored.start();
        wait_until(
            "the restored server accepts queries",
            Duration::from_secs(120),
            || restored.try_query_one("SELECT 1").is_some(),
        );
        let rows = restored.query_one("SELECT count(*)::text FROM keep");
        if rows != "1500" {
            restore_tries.violations.push(format!(
                "restore exited 0 but the restored server has {rows} rows in keep, not 1500"
            ));
        }
        restored.stop();
        if restore_tries.completed == rounds {
            break;
        }
    }
    let restore_counts = proxy.counts().since(&backup_counts);

    let mut prove_tries = Attempts::default();
    let prove_scratch = scratch.dir("prove-scratch");
    let mut prove_args = vec![];
    if cluster.major != 15 {
        prove_args.push("--pg-bindir".to_string());
        prove_args.push(cluster.bin.display().to_string());
    }
    prove_args.extend([
        "prove".into(),
        "--scratch".into(),
        prove_scratch.display().to_string(),
        "--backup".into(),
        backup.clone(),
        "--sql".into(),
        "SELECT count(*) FROM keep".into(),
        "--expect".into(),
        "1500".into(),
    ]);
    let before_prove = proxy.counts();
    for _ in 0..attempts {
        let args: Vec<&str> = prove_args.iter().map(String::as_str).collect();
        let out = run_via(global(&args));
        prove_tries.codes.push(code(&out));
        if code(&out) == 0 {
            prove_tries.completed += 1;
            let verdict = String::from_utf8_lossy(&out.stdout);
            if !verdict.contains("proven") {
                prove_tries
                    .violations
                    .push(format!("prove exited 0 without a verdict: {verdict}"));
            }
            break;
        }
        judge_failure("prove", &repo, &out, &mut prove_tries);
    }
    proxy.set_enabled(false);
    let prove_counts = proxy.counts().since(&before_prove);

    eprintln!(
        "FIGURES backup/restore/prove through faults: seed {}\n\
         FIGURES   backup-push exits {:?} ({} failures without a hint); proxy: {}\n\
         FIGURES   restore exits {:?} ({} failures without a hint); proxy: {}\n\
         FIGURES   prove exits {:?} ({} failures without a hint); proxy: {}",
        proxy.seed(),
        backup_tries.codes,
        backup_tries.without_hint,
        describe_counts(&backup_counts),
        restore_tries.codes,
        restore_tries.without_hint,
        describe_counts(&restore_counts),
        prove_tries.codes,
        prove_tries.without_hint,
        describe_counts(&prove_counts),
    );
    let mut problems = Vec::new();
    for (what, tries, wanted) in [
        ("backup-push", &backup_tries, rounds),
        ("restore", &restore_tries, rounds),
        ("prove", &prove_tries, 1),
    ] {
        problems.extend(tries.violations.iter().cloned());
        if tries.completed < wanted {
            problems.push(format!(
                "{what} completed {} of {wanted} times in {} attempts at fault rate {FAULT_RATE}",
                tries.completed,
                tries.codes.len()
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Item 5: wal-push killed with SIGKILL at random points, each followed by a
/// retry; then every stored object is read back without pgproof.
fn sigkill_wal_push(backend: Backend) {
    let kills = env_or("PGPROOF_FAULTS_KILLS", 100);
    let scratch = Scratch::new(&format!("faults-kill-{backend:?}"));
    // Full segments: compressing and storing take long enough to be hit.
    const CALIBRATION: usize = 5;
    let source = WalSource::generate(&scratch, kills + CALIBRATION, 4000);
    let repo = TestRepo::new(&scratch, backend);
    let env = archiver_env(&repo.env, &source);
    let seed = std::env::var("PGPROOF_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::from(std::process::id()));
    eprintln!("kill points from seed {seed} (PGPROOF_FAULT_SEED={seed} repeats them)");

    // Kill points spread over a typical whole call: the median of a few
    // (the first, cold call is much slower than the rest).
    let (calibration, to_kill) = source.segments.split_at(CALIBRATION);
    let mut spans: Vec<Duration> = calibration
        .iter()
        .map(|segment| {
            let run = run_limited(push_command(&repo, &env, segment, "60s"), CALL_LIMIT, None);
            assert!(run.ok(), "{}", run.stderr);
            run.elapsed
        })
        .collect();
    spans.sort();
    let span = spans[CALIBRATION / 2];

    let mut killed = 0;
    let mut failures = Vec::new();
    let mut x = seed;
    for segment in to_kill {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Up to 30% past a typical call: some runs end before the kill.
        let at = span.mul_f64(((x >> 33) % 1300) as f64 / 1000.0);
        let run = run_limited(
            push_command(&repo, &env, segment, "60s"),
            CALL_LIMIT,
            Some(at),
        );
        if run.code.is_none() {
            killed += 1;
        } else if !run.ok() {
            failures.push(format!(
                "{} failed before its kill: {}",
                file_name(segment),
                run.reason()
            ));
        }
        let retry = run_limited(push_command(&repo, &env, segment, "60s"), CALL_LIMIT, None);
        if !retry.ok() {
            failures.push(format!(
                "the retry of {} after a kill at {at:?} failed ({:?}): {}",
                file_name(segment),
                retry.code,
                retry.reason()
            ));
        }
    }

    let keys = match backend {
        Backend::File => file_keys(repo.dir.as_ref().unwrap()),
        Backend::S3 => s3_keys(&repo),
        Backend::Azure => unreachable!("the kill tests run on file and S3 repositories"),
    };
    let inv = inventory(&keys);
    let by_name: BTreeMap<&str, &PathBuf> =
        source.segments.iter().map(|s| (file_name(s), s)).collect();
    for (name, stored) in &inv.wal {
        let Some(src) = by_name.get(name.as_str()) else {
            failures.push(format!("{name} is stored but was never pushed: {stored:?}"));
            continue;
        };
        if stored.len() != 1 {
            failures.push(format!(
                "{name} is stored {} times: {stored:?}",
                stored.len()
            ));
        }
        for key in stored {
            if let Some(p) = wal_object_problem(&repo, key, src) {
                failures.push(p);
            }
        }
    }
    for name in by_name.keys() {
        if !inv.wal.contains_key(*name) {
            failures.push(format!("{name} is missing after its retry succeeded"));
        }
    }
    if !inv.unknown.is_empty() {
        failures.push(format!("objects no reader expects: {:?}", inv.unknown));
    }
    eprintln!(
        "FIGURES SIGKILL of wal-push ({backend:?}): seed {seed}, {} runs over a {:.0} ms call, {killed} killed before exiting, {} WAL objects checked, {} staging files left, problems {}",
        to_kill.len(),
        span.as_secs_f64() * 1000.0,
        inv.wal.values().map(Vec::len).sum::<usize>(),
        inv.staging.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sigkill_wal_push_s3() {
    sigkill_wal_push(Backend::S3);
}

#[test]
fn sigkill_wal_push_file() {
    sigkill_wal_push(Backend::File);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (the full-disk test runs as root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        chown_to_postgres(at);
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file, leaving `spare` bytes free
/// (rounded to pages); returns the file.
fn fill(dir: &Path, spare: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    // Whatever the last partial write left.
    while f.write(&chunk[..4096]).is_ok_and(|n| n > 0) {}
    let len = f.metadata().unwrap().len();
    f.set_len(len.saturating_sub(spare)).unwrap();
    drop(f);
    path
}

/// Item 5: a filesystem repository on a full disk. wal-push fails naming
/// the lack of space, leaves no staging file, and succeeds once space is freed;
/// both with no space at all and with room for the small claim but not the
/// object.
#[test]
fn full_disk_file_repository() {
    let scratch = Scratch::new("faults-disk");
    let source = WalSource::generate(&scratch, 3, 4000);
    let mountpoint = scratch.dir("disk");
    let _tmpfs = Tmpfs::mount(&mountpoint, "8m");
    let repo = TestRepo {
        url: format!("file://{}", mountpoint.display()),
        env: Vec::new(),
        dir: Some(mountpoint.clone()),
    };
    let env = archiver_env(&repo.env, &source);
    let push =
        |segment: &Path| run_limited(push_command(&repo, &env, segment, "60s"), CALL_LIMIT, None);
    let first = push(&source.segments[0]);
    assert!(first.ok(), "{}", first.stderr);
    let fetched = scratch.dir("fetched");

    let mut figures = Vec::new();
    for (segment, spare) in [(&source.segments[1], 0u64), (&source.segments[2], 16 << 10)] {
        let filler = fill(&mountpoint, spare);
        let full = push(segment);
        let staging: Vec<String> = file_keys(&mountpoint)
            .into_iter()
            .filter(|k| k.contains('#'))
            .collect();
        let err = full.stderr.to_lowercase();
        figures.push(format!(
            "{spare} bytes spare: exit {:?}, {} staging files left, \"{}\"",
            full.code,
            staging.len(),
            full.reason()
        ));
        assert!(
            !full.ok() && !full.hung,
            "wal-push on a full disk ({spare} bytes spare) must fail: {:?}\n{}",
            full.code,
            full.stderr
        );
        assert!(
            err.contains("no space left") && err.contains(&mountpoint.display().to_string()),
            "the error names the lack of space and the repository's disk: {}",
            full.stderr
        );
        assert!(
            staging.is_empty(),
            "staging files left on the full disk: {staging:?}"
        );
        std::fs::remove_file(&filler).unwrap();
        let retry = push(segment);
        assert!(retry.ok(), "wal-push once space is freed: {}", retry.stderr);
        assert_eq!(fetch_problem(&repo, segment, &fetched), None);
    }
    eprintln!("FIGURES full disk: {}", figures.join("; "));
}
