//! What an operator sees while a backup runs: with output going to a file,
//! timed progress lines with sizes and rates; on a terminal (tmux here),
//! bars. Either way the banner names the cluster and how it was found.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn busy_cluster(scratch: &Scratch, repo: &TestRepo) -> Cluster {
    let mut cluster = Cluster::init(scratch, "db", 15);
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    // Enough incompressible-ish data for the copy to take a while.
    cluster.execute(
        "CREATE TABLE filler AS SELECT g, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 600000) g",
    );
    cluster
}

#[test]
fn backup_progress_goes_to_a_log_as_lines_with_rates() {
    if !wants_major(15) {
        return;
    }
    let scratch = Scratch::new("progress-lines");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = busy_cluster(&scratch, &repo);
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "--progress-interval",
            "20ms",
            "backup-push",
            cluster.pgdata.to_str().unwrap(),
            "--fast",
            "--jobs",
            "1",
        ],
        &[("PGUSER".into(), "postgres".into())],
        None,
    );
    assert_exit(&out, 0);
    let err = stderr(&out);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("pgproof backup-push: copying: "))
        .collect();
    assert!(!lines.is_empty(), "no progress lines:\n{err}");
    let line = lines[0];
    assert!(
        line.contains(" of ") && line.contains("/s, about ") && line.contains(" left"),
        "a progress line has done, total, rate and time left: {line}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\u{1b}["),
        "no terminal codes in a log:\n{err}"
    );
    // -q silences progress along with everything but errors.
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "-q",
            "--progress-interval",
            "20ms",
            "backup-push",
            cluster.pgdata.to_str().unwrap(),
            "--fast",
        ],
        &[("PGUSER".into(), "postgres".into())],
        None,
    );
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
}

#[test]
fn backup_progress_on_a_terminal_is_a_bar() {
    if !wants_major(15) {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is not installed; scripts/install-test-deps.sh installs it");
    }
    let scratch = Scratch::new("progress-bars");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = busy_cluster(&scratch, &repo);
    let socket = format!("pgproof-test-{}", std::process::id());
    let done = scratch.path.join("done");
    let script = format!(
        "env PGUSER=postgres {} --repo {} --cluster main backup-push {} --fast; touch {}; sleep 120",
        pgproof_exe().display(),
        repo.url,
        cluster.pgdata.display(),
        done.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .unwrap()
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "180",
        "-y",
        "50",
        &script,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    wait_until("the backup in tmux", Duration::from_secs(120), || {
        done.exists()
    });
    let screen =
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned();
    tmux(&["kill-server"]);
    assert!(
        screen.contains("copying [====") && screen.contains("MiB/s 100%, done in"),
        "the screen shows a finished bar:\n{screen}"
    );
    assert!(
        screen.contains("pgproof backup-push: cluster main") && screen.contains("complete (full):"),
        "log lines still show above the bar:\n{screen}"
    );
}
