//! Restoring where a restore happened before: a cluster once restored to a
//! point in time and promoted, backed up with the recovery settings that
//! restore left, restored again with no target and with another kind of
//! target; and a restore killed part way, which PostgreSQL must never start
//! and a rerun must start over.

mod common;

use common::*;
use pgproof::pg::recovery::{TARGET_SETTINGS, setting_name};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a restored server may take to come up or promote.
const SERVER_WAIT: Duration = Duration::from_secs(120);
const MARKER: &str = ".pgproof-restore-in-progress";

fn restore(repo: &TestRepo, dest: &Path, extra: &[&str]) -> Output {
    pgproof(&restore_args(repo, dest, extra), &repo.env, None)
}

fn restore_args<'a>(repo: &'a TestRepo, dest: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--repo",
        repo.url.as_str(),
        "--cluster",
        "main",
        "restore",
        dest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

fn start_and_wait_promoted(c: &Cluster) {
    c.start();
    c.wait_promoted(SERVER_WAIT);
}

fn live_settings(conf: &str) -> Vec<String> {
    conf.lines().filter_map(setting_name).collect()
}

/// The scenario of issue 10: restore to a time and promote (timeline 2),
/// back that up (its postgresql.auto.conf carries the target), write more,
/// then restore the latest backup with no target and with an LSN target.
fn an_earlier_restores_target_does_not_steer_the_next(major: u32) {
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new(&format!("again-{major}"));
    let repo = TestRepo::new(&scratch, Backend::File);
    let source = Cluster::init(&scratch, "source", major);
    source.archive_with(&format!("--repo {} --cluster main", repo.url));
    source.start();
    source.execute(
        "CREATE TABLE t AS SELECT g AS id, 'first' AS phase FROM generate_series(1, 1000) g",
    );
    repo.backup(&source);
    source.execute("INSERT INTO t SELECT g, 'before the time' FROM generate_series(1001, 1500) g");
    let time = source.query_one("SELECT now()::text");
    std::thread::sleep(Duration::from_millis(1100));
    source.execute("INSERT INTO t SELECT g, 'after the time' FROM generate_series(1501, 2000) g");
    let last = source.write_and_switch(10);
    source.wait_archived(&last);
    source.stop();

    // The first restore: to the time, promoted, archiving on timeline 2.
    let first_dir = scratch.path.join("first");
    let out = restore(
        &repo,
        &first_dir,
        &["--target-time", &time, "--target-action", "promote"],
    );
    assert_exit(&out, 0);
    let first = Cluster::restored_archiving(&scratch, "first", major, first_dir.clone(), true);
    start_and_wait_promoted(&first);
    assert_eq!(first.query_one("SELECT count(*)::text FROM t"), "1500");
    assert_eq!(
        first.query_one("SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
        "00000002"
    );
    let carried = std::fs::read_to_string(first_dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        live_settings(&carried).contains(&"recovery_target_time".to_string()),
        "the promoted cluster keeps its restore's target, so its backups carry it:\n{carried}"
    );
    let second_backup = repo.backup(&first);
    first.execute("INSERT INTO t SELECT g, 'after the backup' FROM generate_series(2001, 2500) g");
    let lsn = first.query_one("SELECT pg_current_wal_lsn()::text");
    first.execute("INSERT INTO t SELECT g, 'after the lsn' FROM generate_series(2501, 3000) g");
    let last = first.write_and_switch(10);
    first.wait_archived(&last);
    first.stop();

    // (1) The latest backup, no target: every row, recovery to the end.
    let all_dir = scratch.path.join("all");
    let out = restore(&repo, &all_dir, &[]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains(&second_backup) && err.contains("commented out 3 recovery setting"),
        "restore says what it removed:\n{err}"
    );
    let conf = std::fs::read_to_string(all_dir.join("postgresql.auto.conf")).unwrap();
    for removed in [
        "recovery_target_time = ",
        "recovery_target_action = ",
        "restore_command = ",
    ] {
        assert!(
            conf.lines()
                .any(|l| l.starts_with("# Removed by pgproof restore on ")
                    && l.contains(&format!(": {removed}"))),
            "{removed} is commented out with the prefix:\n{conf}"
        );
    }
    let live = live_settings(&conf);
    assert!(
        !live.iter().any(|s| TARGET_SETTINGS.contains(&s.as_str())),
        "no recovery target is left:\n{conf}"
    );
    assert_eq!(
        live.iter().filter(|s| *s == "restore_command").count(),
        1,
        "{conf}"
    );
    let all = Cluster::restored(&scratch, "all", major, all_dir);
    start_and_wait_promoted(&all);
    assert_eq!(all.query_one("SELECT count(*)::text FROM t"), "2500");
    let log = all.server_log();
    assert!(
        !log.contains("point-in-time recovery"),
        "no target was asked for:\n{log}"
    );
    all.stop();

    // (2) Another kind of target than the earlier restore's: it starts
    // (no "multiple recovery targets specified") and stops there.
    let lsn_dir = scratch.path.join("lsn");
    let out = restore(
        &repo,
        &lsn_dir,
        &["--target-lsn", &lsn, "--target-action", "promote"],
    );
    assert_exit(&out, 0);
    let at_lsn = Cluster::restored(&scratch, "lsn", major, lsn_dir);
    start_and_wait_promoted(&at_lsn);
    assert_eq!(at_lsn.query_one("SELECT count(*)::text FROM t"), "2000");
    assert_eq!(
        at_lsn.query_one("SELECT count(*)::text FROM t WHERE phase = 'after the lsn'"),
        "0"
    );
}

#[test]
fn an_earlier_restores_target_does_not_steer_the_next_15() {
    an_earlier_restores_target_does_not_steer_the_next(15);
}

#[test]
fn an_earlier_restores_target_does_not_steer_the_next_18() {
    an_earlier_restores_target_does_not_steer_the_next(18);
}

/// Row counts and a digest of every value of both tables.
fn fingerprint(c: &Cluster) -> String {
    c.query_one(
        "SELECT (SELECT count(*) || ':' || sum(hashtext(v)::bigint) FROM big) || ' ' || \
                (SELECT count(*) || ':' || sum(hashtext(v)::bigint) FROM elsewhere)",
    )
}

fn bytes_under(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::symlink_metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

fn is_empty_or_absent(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// A restore running in the background, its log in a file.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(args: &[&str], env: &[(String, String)], log: PathBuf) -> Running {
        let file = std::fs::File::create(&log).unwrap();
        let child = pgproof_command(args, env, false)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Running { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls (without sleeping: the last steps are short) until `seen`;
    /// `false` when the restore ended first.
    fn watch_until(&mut self, mut seen: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if seen() {
                return true;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the restore failed:\n{}", self.log());
                return false;
            }
            assert!(Instant::now() < deadline, "timed out:\n{}", self.log());
            std::thread::yield_now();
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        common::signal(&self.child, signal);
    }

    /// Stops it, and waits until every thread has stopped: a write under
    /// way when the signal came still ends first.
    fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.child.id());
        wait_until("the restore has stopped", Duration::from_secs(30), || {
            std::fs::read_dir(&tasks).unwrap().flatten().all(|t| {
                std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                })
            })
        });
    }

    fn kill(mut self) -> String {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{}", self.log());
        self.log()
    }
}

/// What a killed restore left: no pg_control, every root that holds
/// anything marked, and PostgreSQL refuses to start on it.
fn assert_unstartable(scratch: &Scratch, major: u32, dest: &Path, roots: &[&Path], when: &str) {
    eprintln!(
        "killed {when}: {} MiB written, backup_label {}",
        bytes_under(dest) >> 20,
        if dest.join("backup_label").exists() {
            "written"
        } else {
            "not yet"
        }
    );
    assert!(
        !dest.join("global/pg_control").exists(),
        "{when}: pg_control is in place in an unfinished restore"
    );
    for root in roots {
        assert!(
            is_empty_or_absent(root) || root.join(MARKER).is_file(),
            "{when}: {} holds data without the marker",
            root.display()
        );
    }
    if !dest.exists() {
        return;
    }
    // Given to the server's user, so that what stops it is PostgreSQL's own judgement.
    chown_tree(dest);
    let sock = scratch.dir("probe-sock");
    let log = scratch
        .path
        .join(format!("probe-{}.log", when.replace(' ', "-")));
    let mut server = as_postgres(pg_bin(major).join("postgres"))
        .arg("-D")
        .arg(dest)
        .args([
            "-c",
            &format!("port={}", free_port()),
            "-c",
            &format!("unix_socket_directories={}", sock.display()),
            "-c",
            "listen_addresses=",
            "-c",
            "archive_mode=off",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "{when}: PostgreSQL started on an unfinished restore:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "{when}: postgres exited 0");
}

#[test]
fn a_killed_restore_never_starts_and_a_rerun_starts_over() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("killed");
    let repo = TestRepo::new(&scratch, Backend::File);
    let source = Cluster::init(&scratch, "source", major);
    source.archive_with(&format!("--repo {} --cluster main", repo.url));
    source.start();
    let ts_source = scratch.dir("ts-source");
    source.execute(&format!(
        "CREATE TABLESPACE extra LOCATION '{}'",
        ts_source.display()
    ));
    // Large enough for several parts, so the restore can be caught in the middle.
    source.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v FROM generate_series(1, 1500000) g;
         CREATE TABLE elsewhere TABLESPACE extra AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 100000) g",
    );
    let oid = source.query_one("SELECT oid::text FROM pg_tablespace WHERE spcname = 'extra'");
    let want = fingerprint(&source);
    repo.backup(&source);
    let last = source.write_and_switch(1);
    source.wait_archived(&last);
    source.stop();

    let dest = scratch.path.join("restored");
    let ts_dest = scratch.path.join("ts-restored");
    let ts_arg = format!("{oid}={}", ts_dest.display());
    let args = restore_args(&repo, &dest, &["--tablespace", &ts_arg, "--jobs", "1"]);
    let roots = [dest.as_path(), ts_dest.as_path()];
    let log = |n: u32| scratch.path.join(format!("restore-{n}.log"));

    // Right after it starts: as soon as the marker is there.
    let mut run = Running::spawn(&args, &repo.env, log(1));
    assert!(run.watch_until(|| dest.join(MARKER).exists()));
    run.kill();
    assert_unstartable(&scratch, major, &dest, &roots, "at the start");

    // In the middle of the parts. Stopped there, it is still running: a
    // second restore into the same place is refused and changes nothing.
    let mut run = Running::spawn(&args, &repo.env, log(2));
    assert!(run.watch_until(|| bytes_under(&dest) >= 48 << 20));
    run.pause();
    let before: Vec<_> = files_under(&dest)
        .into_iter()
        .map(|p| (p.clone(), std::fs::symlink_metadata(&p).unwrap().len()))
        .collect();
    let out = pgproof(&args, &repo.env, None);
    assert_exit(&out, 11);
    assert!(
        stderr(&out).contains("another pgproof restore is writing into"),
        "{}",
        stderr(&out)
    );
    let after: Vec<_> = files_under(&dest)
        .into_iter()
        .map(|p| (p.clone(), std::fs::symlink_metadata(&p).unwrap().len()))
        .collect();
    assert_eq!(
        before, after,
        "a refused restore changed the running one's files"
    );
    let said = run.kill();
    assert!(said.contains("starting over"), "{said}");
    assert_unstartable(&scratch, major, &dest, &roots, "in the middle");

    // Near the end: everything written but pg_control, being synced.
    let mut caught = false;
    for attempt in 0..3 {
        let mut run = Running::spawn(&args, &repo.env, log(3 + attempt));
        if run.watch_until(|| dest.join("backup_label").exists()) {
            run.kill();
            caught = true;
            break;
        }
        // It finished first: empty the place and try again.
        std::fs::remove_dir_all(&dest).unwrap();
        std::fs::remove_dir_all(&ts_dest).unwrap();
    }
    assert!(
        caught,
        "the restore always finished before it could be killed near its end"
    );
    assert!(dest.join("recovery.signal").exists() || dest.join("backup_label").exists());
    assert_unstartable(&scratch, major, &dest, &roots, "near the end");

    // Anything else that is not empty stays refused and untouched.
    let busy = scratch.dir("busy");
    std::fs::write(busy.join("precious"), "x").unwrap();
    let out = pgproof(
        &restore_args(&repo, &busy, &["--tablespace", &ts_arg]),
        &repo.env,
        None,
    );
    assert_exit(&out, 11);
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    // The rerun starts over and finishes.
    let out = pgproof(&args, &repo.env, None);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("starting over") && err.contains(&dest.display().to_string()),
        "{err}"
    );
    for root in roots {
        assert!(
            !root.join(MARKER).exists(),
            "{} is still marked",
            root.display()
        );
    }
    let restored = Cluster::restored(&scratch, "restored", major, dest.clone());
    start_and_wait_promoted(&restored);
    assert_eq!(fingerprint(&restored), want);
}
