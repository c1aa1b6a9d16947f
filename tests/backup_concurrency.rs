//! backup-push under real conditions: two at once, a lock left by a dead
//! process or held by a live one, SIGKILL at random points, a broken
//! archive_command, a file that cannot be read. Real servers, real WAL, a
//! real repository; every outcome is checked in the repository and on the
//! server.

mod common;

use common::*;
use pgproof::process::ProcessId;
use pgproof::repo::lock::LockHolder;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// The exit status of a run that found the backup lock held.
const BUSY: i32 = 13;

struct Setup {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
}

/// A cluster archiving through pgproof with a table `keep` of 1000 rows.
fn setup(name: &str, major: u32, backend: Backend) -> Setup {
    let scratch = Scratch::new(name);
    let repo = TestRepo::new(&scratch, backend);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE keep AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
    Setup {
        scratch,
        repo,
        cluster,
    }
}

impl Setup {
    fn push_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--repo",
            self.repo.url.as_str(),
            "--cluster",
            "main",
            "backup-push",
            self.cluster.pgdata.to_str().unwrap(),
            "--fast",
        ];
        args.extend_from_slice(extra);
        args
    }

    fn spawn_push(&self, extra: &[&str]) -> Child {
        pgproof_command(&self.push_args(extra), &self.repo.pg_env(), false)
            .spawn()
            .unwrap()
    }

    fn push(&self, extra: &[&str]) -> Output {
        pgproof(&self.push_args(extra), &self.repo.pg_env(), None)
    }

    fn pgproof(&self, args: &[&str]) -> Output {
        let mut all = vec!["--repo", self.repo.url.as_str(), "--cluster", "main"];
        all.extend_from_slice(args);
        pgproof(&all, &self.repo.env, None)
    }

    /// The names backup-list shows, oldest first.
    fn listed(&self) -> Vec<String> {
        let out = self.pgproof(&["backup-list", "--json"]);
        assert_exit(&out, 0);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn repo_dir(&self) -> &Path {
        self.repo.dir.as_deref().expect("a file repository")
    }

    fn lock_file(&self) -> PathBuf {
        self.repo_dir().join("main/locks/backup.json")
    }

    /// Every lock object, take-over locks included.
    /// The lock objects. A run killed while it wrote the lock leaves the
    /// write's staging file (`backup.json#1`): not a lock (no listing shows
    /// it, nothing waits for it); verify notes it as an unfinished upload
    /// and delete removes it (`staging_files`).
    fn locks(&self) -> Vec<PathBuf> {
        files_under(&self.repo_dir().join("main/locks"))
            .into_iter()
            .filter(|p| !is_staging(p))
            .collect()
    }

    fn staging_files(&self) -> Vec<PathBuf> {
        files_under(&self.repo_dir().join("main"))
            .into_iter()
            .filter(|p| is_staging(p))
            .collect()
    }

    fn backups_dir(&self) -> PathBuf {
        let root = self.repo_dir().join("main/backups");
        let binding = std::fs::read_dir(&root).unwrap().next().unwrap().unwrap();
        binding.path()
    }

    /// Backup directories that hold no manifest.
    fn incomplete(&self) -> Vec<String> {
        let Ok(dirs) = std::fs::read_dir(self.backups_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<String> = dirs
            .flatten()
            .filter(|d| !d.path().join("manifest.json").exists())
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// Writes a lock held by `holder`, as a pgproof run would have.
    fn place_lock(&self, holder: &LockHolder) -> Vec<u8> {
        let bytes = pgproof::repo::document::encode(holder).unwrap();
        let path = self.lock_file();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        bytes
    }

    /// Sessions pgproof holds on the server: a backup's session ends its
    /// backup mode when it closes.
    fn wait_no_pgproof_session(&self) {
        wait_until(
            "the killed backup's session has ended",
            Duration::from_secs(60),
            || {
                self.cluster.query_one(
                    "SELECT count(*)::text FROM pg_stat_activity WHERE application_name = 'pgproof'",
                ) == "0"
            },
        );
    }

    /// Restores `backup`, replays to the end of the archive, and counts the rows of `keep`.
    fn restore_and_count(&self, backup: &str, dir: &str) -> String {
        let dest = self.scratch.path.join(dir);
        let out = self.pgproof(&["restore", dest.to_str().unwrap(), "--backup", backup]);
        assert_exit(&out, 0);
        let mut restored = Cluster::restored(&self.scratch, dir, self.cluster.major, dest);
        restored.env = self.repo.env.clone();
        restored.start();
        wait_until(
            "the restored server accepts queries",
            Duration::from_secs(90),
            || restored.try_query_one("SELECT 1").is_some(),
        );
        restored.query_one("SELECT count(*)::text FROM keep")
    }
}

fn wait_output(child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Our own child; if it ended just now, there is nothing to kill.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let _ = watchdog.join();
    assert!(
        took < limit,
        "pgproof did not end within {limit:?}; killed. stderr:\n{}",
        stderr(&out)
    );
    (out, took)
}

fn name_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Two runs started at once: each either completes its own backup or is
/// refused with the lock's holder named; never one directory for both.
fn two_at_once(backend: Backend) {
    if !wants_major(15) {
        return;
    }
    let s = setup(&format!("two-at-once-{backend:?}"), 15, backend);
    let mut completed = Vec::new();
    for round in 0..3 {
        let (a, b) = (s.spawn_push(&[]), s.spawn_push(&[]));
        let outs = [a, b].map(|c| wait_output(c, Duration::from_secs(180)).0);
        let mut succeeded = 0;
        for out in &outs {
            match code(out) {
                0 => {
                    succeeded += 1;
                    completed.push(name_of(out));
                }
                BUSY => {
                    let err = stderr(out);
                    assert!(
                        err.contains("is locked by pgproof")
                            && err.contains("backup-push (pid")
                            && err.contains("still runs")
                            && err.contains("hint:"),
                        "round {round}: the refusal names the holder:\n{err}"
                    );
                }
                _ => panic!("round {round}: unexpected outcome:\n{}", stderr(out)),
            }
        }
        assert!(succeeded >= 1, "round {round}: neither run completed");
    }
    let distinct: BTreeSet<&String> = completed.iter().collect();
    assert_eq!(
        distinct.len(),
        completed.len(),
        "two runs shared a name: {completed:?}"
    );
    let mut listed = s.listed();
    listed.sort();
    completed.sort();
    assert_eq!(
        listed, completed,
        "backup-list shows exactly the completed backups"
    );
    if backend == Backend::File {
        assert!(s.locks().is_empty(), "locks left: {:?}", s.locks());
        assert!(s.incomplete().is_empty(), "{:?}", s.incomplete());
    }
    let newest = listed.last().unwrap();
    assert_eq!(s.restore_and_count(newest, "restored"), "1000");
}

#[test]
fn two_backup_pushes_at_once_never_share_a_backup() {
    two_at_once(Backend::File);
}

#[test]
fn two_backup_pushes_at_once_never_share_a_backup_s3() {
    two_at_once(Backend::S3);
}

fn holder_of(pid: u32, host: Option<&str>) -> LockHolder {
    let p = ProcessId::of(pid).expect("the process runs");
    LockHolder::new(
        "backup-push",
        host.unwrap_or(&p.host),
        &p.boot_id,
        p.pid,
        p.start_ticks,
    )
}

#[test]
fn a_live_holder_is_respected_and_a_dead_one_taken_over() {
    if !wants_major(15) {
        return;
    }
    let s = setup("lock-holders", 15, Backend::File);

    // A live process on this host, with its true start time.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    let live = holder_of(sleeper.id(), None);
    let placed = s.place_lock(&live);
    let out = s.push(&[]);
    assert_exit(&out, BUSY);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("pid {}", live.pid)) && err.contains("still runs"),
        "{err}"
    );
    assert!(
        err.contains(&s.lock_file().display().to_string()),
        "the hint says what to remove:\n{err}"
    );
    assert_eq!(
        std::fs::read(s.lock_file()).unwrap(),
        placed,
        "the lock is untouched"
    );

    // A process of another host is never judged from here.
    let elsewhere = holder_of(std::process::id(), Some("db-elsewhere"));
    let placed = s.place_lock(&elsewhere);
    let out = s.push(&[]);
    assert_exit(&out, BUSY);
    let err = stderr(&out);
    assert!(
        err.contains("on host db-elsewhere") && err.contains("cannot tell"),
        "{err}"
    );
    assert_eq!(std::fs::read(s.lock_file()).unwrap(), placed);

    // The pid reused by another process: a lock naming it with another start time is stale.
    let reused = LockHolder {
        process_start: live.process_start + 1,
        ..live.clone()
    };
    s.place_lock(&reused);
    let out = s.push(&[]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("took over the backup lock") && err.contains("now belongs to another process"),
        "{err}"
    );
    let first = name_of(&out);
    assert!(s.locks().is_empty(), "released: {:?}", s.locks());

    // delete leaves alone the backup a live lock's holder is writing, even
    // named before the newest complete one (a host whose clock is behind),
    // and removes it as debris once the holder is gone.
    let running = s.backups_dir().join("20000101T000000Z");
    std::fs::create_dir_all(&running).unwrap();
    let claim = serde_json::json!({
        "format": 1, "backup": "20000101T000000Z", "binding": "x", "lock_token": live.token,
        "host": live.host, "pid": live.pid, "claimed_at": "2000-01-01T00:00:00Z",
        "pgproof_version": "0.1.0"
    });
    let claim: pgproof::repo::claim::BackupClaim = serde_json::from_value(claim).unwrap();
    std::fs::write(
        running.join("claim.json"),
        pgproof::repo::document::encode(&claim).unwrap(),
    )
    .unwrap();
    std::fs::write(running.join("part-00001.tar.zst"), b"partial").unwrap();
    s.place_lock(&live);
    let out = s.pgproof(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("running"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        running.join("part-00001.tar.zst").exists(),
        "a running backup was deleted"
    );

    // The holder ends: its lock is stale, its directory debris.
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let out = s.pgproof(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        !running.exists(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Two runs finding one stale lock: never both take it over.
    s.place_lock(&live);
    let (a, b) = (s.spawn_push(&[]), s.spawn_push(&[]));
    let outs = [a, b].map(|c| wait_output(c, Duration::from_secs(180)).0);
    let took_over = outs
        .iter()
        .filter(|o| stderr(o).contains("took over the backup lock"))
        .count();
    assert_eq!(
        took_over,
        1,
        "{}\n---\n{}",
        stderr(&outs[0]),
        stderr(&outs[1])
    );
    let mut names = vec![first];
    for out in &outs {
        match code(out) {
            0 => names.push(name_of(out)),
            BUSY => assert!(stderr(out).contains("is locked by"), "{}", stderr(out)),
            _ => panic!("{}", stderr(out)),
        }
    }
    let mut listed = s.listed();
    listed.sort();
    names.sort();
    assert_eq!(listed, names);
    assert!(s.locks().is_empty(), "released: {:?}", s.locks());
}

/// A small deterministic generator: the kill points are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next_unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn sigkill_at_random_points_never_lists_a_backup_and_the_next_one_works() {
    if !wants_major(15) {
        return;
    }
    let s = setup("sigkill", 15, Backend::File);
    let started = Instant::now();
    let out = s.push(&[]);
    assert_exit(&out, 0);
    // The shortest backup seen so far: the first one runs cold and is
    // slower, and kill points spread over a longer time than a backup
    // takes would mostly land after it finished.
    let mut one_backup = started.elapsed();
    let mut completed = vec![name_of(&out)];
    let mut rng = Lcg(20261201);
    let (mut killed, mut taken_over) = (0, 0);
    for round in 0..20 {
        // Spread over the whole run: connecting, locking, copying, stopping, waiting, the manifest.
        let delay = one_backup.mul_f64(rng.next_unit());
        let mut child = s.spawn_push(&[]);
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        if finished {
            assert_exit(&out, 0);
            completed.push(name_of(&out));
        } else {
            killed += 1;
            assert!(
                !stderr(&out).contains("is locked by"),
                "round {round}: the previous kill's lock was not taken over:\n{}",
                stderr(&out)
            );
        }
        s.wait_no_pgproof_session();
        let mut listed = s.listed();
        listed.sort();
        completed.sort();
        // A run killed after writing its manifest completed: it is listed, and rightly.
        let extra: Vec<&String> = listed.iter().filter(|n| !completed.contains(n)).collect();
        for name in extra {
            assert!(
                s.backups_dir().join(name).join("manifest.json").exists(),
                "round {round}: {name} is listed without its manifest"
            );
        }
        completed = listed;

        // The next backup works, taking over the lock if the killed run held it.
        let pushed = Instant::now();
        let out = s.push(&[]);
        assert_exit(&out, 0);
        one_backup = one_backup.min(pushed.elapsed());
        if stderr(&out).contains("took over the backup lock") {
            taken_over += 1;
        }
        completed.push(name_of(&out));
        assert!(s.locks().is_empty(), "round {round}: {:?}", s.locks());
    }
    eprintln!(
        "one backup took {one_backup:?}; {killed} of 20 runs killed, {taken_over} locks taken over; {:?} in all",
        started.elapsed()
    );
    assert!(killed >= 10, "most runs were meant to be killed: {killed}");
    assert!(
        taken_over >= 5,
        "kills while the lock was held: {taken_over}"
    );
    completed.sort();
    let mut listed = s.listed();
    listed.sort();
    assert_eq!(listed, completed);

    // The debris of the killed runs confuses neither verify nor delete;
    // delete removes their staging files once old enough (here: a second).
    let debris = s.incomplete();
    let out = s.pgproof(&["verify"]);
    assert_exit(&out, 0);
    std::thread::sleep(Duration::from_secs(1));
    let out = s.pgproof(&[
        "delete",
        "retain",
        "2",
        "--confirm",
        "--unfinished-age",
        "1s",
    ]);
    assert_exit(&out, 0);
    assert!(
        s.staging_files().is_empty(),
        "staging files left: {:?}",
        s.staging_files()
    );
    assert!(
        s.incomplete().is_empty(),
        "debris {debris:?} left: {:?}",
        s.incomplete()
    );
    assert_eq!(s.listed().len(), 2);
}

/// archive_command fails (PG 15: `false`; PG 13: a repository that does
/// not exist): backup-push gives up after --archive-timeout, with a hint,
/// and writes no manifest.
fn broken_archiving(major: u32) {
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new(&format!("broken-archiving-{major}"));
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "source", major);
    if major >= 15 {
        cluster.configure("archive_mode = on\narchive_command = 'false'\n");
    } else {
        cluster.archive_with(&format!(
            "--repo file://{}/nowhere --cluster main",
            scratch.path.display()
        ));
    }
    cluster.start();
    let s = Setup {
        scratch,
        repo,
        cluster,
    };
    let limit = Duration::from_secs(5);
    let child = s.spawn_push(&["--archive-timeout", "5s"]);
    let (out, took) = wait_output(child, Duration::from_secs(90));
    eprintln!("backup-push with broken archiving ended after {took:?}");
    assert_exit(&out, 7);
    let err = stderr(&out);
    assert!(
        err.contains("did not reach") && err.contains("has no manifest") && err.contains("hint:"),
        "{err}"
    );
    assert!(
        took < limit + Duration::from_secs(30),
        "took {took:?} for an archive timeout of {limit:?}"
    );
    assert!(s.listed().is_empty());
    assert!(
        files_under(s.repo_dir())
            .iter()
            .all(|p| file_name(p) != "manifest.json")
    );
    assert!(s.locks().is_empty(), "{:?}", s.locks());
    s.wait_no_pgproof_session();
}

#[test]
fn broken_archiving_fails_within_the_archive_timeout_pg13() {
    broken_archiving(13);
}

#[test]
fn broken_archiving_fails_within_the_archive_timeout_pg15() {
    broken_archiving(15);
}

#[test]
fn a_failed_part_ends_the_backup_names_the_file_and_releases_the_lock() {
    if !wants_major(15) {
        return;
    }
    let s = setup("failed-part", 15, Backend::File);
    // Root's file in the data directory: the server's user cannot read it.
    let unreadable = s.cluster.pgdata.join("root-only.conf");
    std::fs::write(&unreadable, b"secret").unwrap();
    std::fs::set_permissions(
        &unreadable,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let child = pgproof_command(&s.push_args(&[]), &s.repo.pg_env(), true)
        .spawn()
        .unwrap();
    let (out, _) = wait_output(child, Duration::from_secs(120));
    assert_exit(&out, 10);
    let err = stderr(&out);
    assert!(
        err.contains("was abandoned (no manifest)")
            && err.contains("part part-00001.tar.zst")
            && err.contains(&unreadable.display().to_string()),
        "{err}"
    );
    assert!(s.listed().is_empty());
    assert!(s.locks().is_empty(), "{:?}", s.locks());
    s.wait_no_pgproof_session();

    std::fs::remove_file(&unreadable).unwrap();
    let out = s.push(&[]);
    assert_exit(&out, 0);
    assert_eq!(s.listed(), vec![name_of(&out)]);
}

#[test]
fn sigterm_releases_the_lock_and_ends_backup_mode() {
    if !wants_major(15) {
        return;
    }
    let scratch = Scratch::new("sigterm");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "source", 15);
    // The backup then waits for WAL that never comes: time to interrupt it.
    cluster.configure("archive_mode = on\narchive_command = 'false'\n");
    cluster.start();
    let s = Setup {
        scratch,
        repo,
        cluster,
    };
    let child = s.spawn_push(&["--archive-timeout", "5min"]);
    wait_until(
        "the backup waits for its WAL",
        Duration::from_secs(60),
        || {
            s.lock_file().exists()
                && files_under(s.repo_dir())
                    .iter()
                    .any(|p| file_name(p).starts_with("part-"))
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: our own child, still running.
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let (out, took) = wait_output(child, Duration::from_secs(60));
    assert_exit(&out, 14);
    assert!(
        stderr(&out).contains("received SIGTERM"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(50), "{took:?}");
    assert!(s.locks().is_empty(), "{:?}", s.locks());
    assert!(s.listed().is_empty());
    s.wait_no_pgproof_session();
}

/// object_store's staging file names: `<name>#<digits>`.
fn is_staging(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rsplit_once('#'))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}
