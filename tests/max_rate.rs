//! `backup-push --max-rate`: a full, an incremental and an offline backup
//! of a real cluster each take at least as long as their bytes at the rate
//! (less the limiter's burst), from the flag, `PGPROOF_MAX_RATE` and the
//! configuration file's `max_rate` in turn, and each restores or verifies;
//! a bad rate from any of them is a configuration error (exit 3) before
//! anything is stored. On one major: the limiter is the same code for all.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const MAJOR: u32 = 16;

/// 10 MB/s, and the burst the limiter allows at that rate (one 1 MiB read).
const RATE: f64 = 10e6;
const BURST: f64 = (1 << 20) as f64;

/// Runs `args` on the repository, which must succeed: the backup's name,
/// what it said, and how long it took.
fn timed_backup(
    repo: &TestRepo,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, String, Duration) {
    let mut all = vec!["--repo", repo.url.as_str(), "--cluster", "main"];
    all.extend_from_slice(args);
    let mut full_env = repo.pg_env();
    full_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let started = Instant::now();
    let out = pgproof(&all, &full_env, None);
    let took = started.elapsed();
    assert_exit(&out, 0);
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (name, stderr(&out), took)
}

/// The backup read its `size` bytes no faster than the rate allows.
#[track_caller]
fn assert_held(what: &str, manifest: &Value, took: Duration, said: &str) {
    let size = manifest["size"].as_u64().unwrap() as f64;
    assert!(size > 40e6, "{what}: a backup worth limiting, {size} bytes");
    let least = (size - BURST) / RATE;
    assert!(
        took.as_secs_f64() >= least,
        "{what}: {size} bytes in {took:?}, at 10 MB/s at least {least:.2} s\n{said}"
    );
    assert!(
        said.contains("of the limit of 10 MB/s"),
        "{what}: the rate achieved is reported:\n{said}"
    );
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("pgproof.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn full_incremental_and_offline_backups_are_held_to_the_rate_and_restore() {
    if !wants_major(MAJOR) {
        return;
    }
    let scratch = Scratch::new("max-rate");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, MAJOR);
    // About 45 MB of table beside the catalog's 20-odd.
    cluster.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((-g)::text) AS v FROM generate_series(1, 400000) g",
    );
    cluster.execute("CHECKPOINT");
    let sum = "SELECT md5(string_agg(v, ',' ORDER BY id)) FROM t";
    let sum_before = cluster.query_one(sum);
    let pgdata = cluster.pgdata.to_str().unwrap();

    // Unlimited first: what the machine does without the limit, so that
    // the limited run's time is the limit's doing.
    let (_, said, free) = timed_backup(&repo, &["backup-push", pgdata, "--fast"], &[]);
    assert!(!said.contains("reading at most"), "{said}");

    let (full, said, took) = timed_backup(
        &repo,
        &["backup-push", pgdata, "--fast", "--max-rate", "10MB"],
        &[],
    );
    assert!(
        said.contains("reading at most 10 MB/s (from flag --max-rate)"),
        "the rate is announced with its origin:\n{said}"
    );
    let manifest = repo.manifest(&full);
    assert_held("full", &manifest, took, &said);
    assert!(
        took > free,
        "limited {took:?} against {free:?} without a limit"
    );

    let out = repo.run(&["verify", "--backup", &full]);
    assert_exit(&out, 0);
    let dest = scratch.path.join("restored");
    let out = repo.run(&[
        "restore",
        dest.to_str().unwrap(),
        "--backup",
        &full,
        "--target-immediate",
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);
    let restored = Cluster::restored(&scratch, "restored", MAJOR, dest);
    restored.start();
    restored.wait_promoted(Duration::from_secs(90));
    assert_eq!(
        restored.query_one(sum),
        sum_before,
        "the limited backup restores"
    );
    restored.stop();

    // An incremental reads every file to compare it: held the same, here
    // from the environment.
    cluster.execute("UPDATE t SET v = 'changed' WHERE id % 1000 = 0");
    cluster.execute("CHECKPOINT");
    let (incr, said, took) = timed_backup(
        &repo,
        &["backup-push", pgdata, "--fast", "--incremental"],
        &[("PGPROOF_MAX_RATE", "10MB")],
    );
    assert!(
        said.contains("reading at most 10 MB/s (from $PGPROOF_MAX_RATE)"),
        "{said}"
    );
    let manifest = repo.manifest(&incr);
    assert_eq!(manifest["parent"]["name"], full.as_str(), "{said}");
    assert_held("incremental", &manifest, took, &said);
    let out = repo.run(&["verify", "--backup", &incr]);
    assert_exit(&out, 0);

    // Offline, from the configuration file's cluster section, over a
    // top-level value that would be refused.
    cluster.stop();
    let config = write_config(
        &scratch.path,
        "max_rate = \"not a rate\"\n[clusters.main]\nmax_rate = \"10MB\"\n",
    );
    let (offline, said, took) = timed_backup(
        &repo,
        &["--config", &config, "backup-push", pgdata, "--offline"],
        &[],
    );
    assert!(
        said.contains(&format!("reading at most 10 MB/s (from {config})")),
        "{said}"
    );
    let manifest = repo.manifest(&offline);
    assert_eq!(manifest["offline"], Value::Bool(true));
    assert_held("offline", &manifest, took, &said);
    let out = repo.run(&["verify", "--backup", &offline]);
    assert_exit(&out, 0);
}

#[test]
fn a_bad_rate_is_a_configuration_error_and_nothing_is_stored() {
    if !wants_major(MAJOR) {
        return;
    }
    let scratch = Scratch::new("max-rate-bad");
    let repo = TestRepo::new(&scratch, Backend::File);
    // Never started: a cleanly shut down cluster, for an offline backup.
    let cluster = Cluster::init(&scratch, "source", MAJOR);
    let pgdata = cluster.pgdata.to_str().unwrap();
    let nothing_stored = |what: &str| {
        assert!(
            files_under(repo.dir.as_ref().unwrap()).is_empty(),
            "{what}: nothing is stored"
        );
    };

    let out = repo.run(&["backup-push", pgdata, "--offline", "--max-rate", "fast"]);
    assert_exit(&out, 3);
    let said = stderr(&out);
    assert!(
        said.contains("max rate from flag --max-rate: \"fast\" is not a rate"),
        "{said}"
    );
    assert!(said.contains("hint: write bytes per second"), "{said}");
    nothing_stored("--max-rate fast");

    let mut env = repo.pg_env();
    env.push(("PGPROOF_MAX_RATE".into(), "50Mb".into()));
    let mut args = vec!["--repo", repo.url.as_str(), "--cluster", "main"];
    args.extend(["backup-push", pgdata, "--offline"]);
    let out = pgproof(&args, &env, None);
    assert_exit(&out, 3);
    let said = stderr(&out);
    assert!(
        said.contains("$PGPROOF_MAX_RATE") && said.contains("bits"),
        "{said}"
    );
    nothing_stored("PGPROOF_MAX_RATE=50Mb");

    let config = write_config(&scratch.path, "max_rate = \"x\"\n");
    let out = repo.run(&["--config", &config, "backup-push", pgdata, "--offline"]);
    assert_exit(&out, 3);
    let said = stderr(&out);
    assert!(
        said.contains(&format!("max rate from {config}: \"x\" is not a rate")),
        "{said}"
    );
    nothing_stored("max_rate = \"x\"");

    // A number without a unit could mean anything: refused, not guessed.
    let numbered = write_config(&scratch.path, "max_rate = 50\n");
    let out = repo.run(&["--config", &numbered, "backup-push", pgdata, "--offline"]);
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("it has no unit"), "{}", stderr(&out));
    nothing_stored("max_rate = 50");

    // The flag comes first: `off` over the file's bad value backs up unlimited.
    let config = write_config(&scratch.path, "max_rate = \"x\"\n");
    let out = repo.run(&[
        "--config",
        &config,
        "backup-push",
        pgdata,
        "--offline",
        "--max-rate",
        "off",
    ]);
    assert_exit(&out, 0);
    assert!(
        !stderr(&out).contains("reading at most"),
        "{}",
        stderr(&out)
    );
}
