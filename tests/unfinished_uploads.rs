//! No orphaned uploads: a backup-push stopped by SIGTERM mid-copy aborts
//! its S3 multipart uploads before it exits; one killed outright leaves
//! them, `verify` notes them (without counting a problem), and
//! `delete --confirm` aborts those older than `--unfinished-age`. A
//! filesystem repository's staging files (`<key>#<n>`) are reported and
//! removed the same way. Real servers, a real backup killed while it
//! copies, moto's own ListMultipartUploads as the witness.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The exit status of a run that was interrupted.
const INTERRUPTED: i32 = 14;

/// A cluster archiving into `repo`, with a complete backup of a small table
/// (for `delete retain 1` to keep), then a table of md5 text big enough
/// that a backup part stays in flight for a while: zstd halves hex text at
/// best, so the part passes S3's 5 MiB first part many times over.
struct Site {
    _scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    complete: String,
}

impl Site {
    fn new(name: &str, backend: Backend) -> Site {
        let scratch = Scratch::new(name);
        let repo = TestRepo::new(&scratch, backend);
        let cluster = Cluster::archiving_into(&scratch, &repo, 15);
        cluster.execute("CREATE TABLE small AS SELECT g AS id FROM generate_series(1, 100) g");
        let complete = repo.backup(&cluster);
        cluster.execute(
            "CREATE TABLE big AS SELECT md5(g::text) || md5((-g)::text) AS v FROM generate_series(1, 700000) g",
        );
        // The archiver idle before the backup starts: an upload of WAL in
        // flight would be one more unfinished upload to tell apart.
        let segment = cluster.query_one("SELECT pg_walfile_name(pg_switch_wal())");
        cluster.wait_archived(&segment);
        Site {
            _scratch: scratch,
            repo,
            cluster,
            complete,
        }
    }

    fn spawn_push(&self) -> Child {
        let args = [
            "--repo",
            self.repo.url.as_str(),
            "--cluster",
            "main",
            "backup-push",
            self.cluster.pgdata.to_str().unwrap(),
            "--fast",
            "--jobs",
            "1",
        ];
        pgproof_command(&args, &self.repo.pg_env(), false)
            .spawn()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.repo.run(args)
    }

    /// verify's output, which must pass (a note is not a problem).
    fn verify(&self) -> String {
        let out = self.run(&["verify"]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        assert!(text.contains(": 0 problems"), "{text}");
        text
    }

    /// The S3 key prefix of the repository's cluster `main`.
    fn s3_prefix(&self) -> String {
        let path = self.repo.url.strip_prefix("s3://pgproof-test/").unwrap();
        format!("{path}/main/")
    }

    fn repo_dir(&self) -> &Path {
        self.repo.dir.as_deref().expect("a file repository")
    }

    /// The staging files under the backups of a filesystem repository.
    fn staging_files(&self) -> Vec<PathBuf> {
        files_under(&self.repo_dir().join("main/backups"))
            .into_iter()
            .filter(|p| is_staging(file_name(p)))
            .collect()
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An S3 key as pgproof names it: relative to the repository's prefix.
fn relative(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, rest)| rest)
}

/// verify's note of unfinished uploads.
fn unfinished_note(verify: &str) -> Option<&str> {
    verify
        .lines()
        .find(|l| l.starts_with("note: ") && l.contains("unfinished upload(s) under"))
}

fn is_staging(name: &str) -> bool {
    name.split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The keys of the multipart uploads moto holds under `prefix`, asked
/// directly (moto answers unsigned requests), not through pgproof.
fn s3_multipart_keys(prefix: &str) -> Vec<String> {
    let endpoint = s3_endpoint();
    let host = endpoint
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "GET /pgproof-test?uploads&prefix={prefix} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .split("<Upload>")
        .skip(1)
        .filter_map(|u| {
            let key = u.split_once("<Key>")?.1.split_once("</Key>")?.0;
            Some(key.to_string())
        })
        .collect()
}

/// Polls `ready` every 20 ms until it holds; fails the test after `limit`
/// or if the child ends first (the backup outran the probe).
fn wait_while_running(
    child: &mut Child,
    what: &str,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("backup-push ended ({status}) before {what}");
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_output(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let started = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Our own child; if it ended just now, there is nothing to kill.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
    });
    let out = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    assert!(
        started.elapsed() < limit,
        "backup-push did not end within {limit:?}; killed. stderr:\n{}",
        stderr(&out)
    );
    out
}

/// Starts a backup of `site` and signals it once a part of it is a
/// multipart upload in moto; returns its output.
fn push_and_signal_mid_upload(site: &Site, sig: Signal) -> Output {
    let prefix = site.s3_prefix();
    let mut child = site.spawn_push();
    let started = Instant::now();
    wait_while_running(
        &mut child,
        "a backup part is a multipart upload",
        Duration::from_secs(120),
        || {
            s3_multipart_keys(&prefix)
                .iter()
                .any(|k| k.contains("/backups/"))
        },
    );
    eprintln!("a part was uploading after {:?}; {sig}", started.elapsed());
    signal(&child, sig);
    wait_output(child, Duration::from_secs(60))
}

#[test]
fn s3_sigterm_mid_copy_leaves_no_unfinished_upload() {
    if !wants_major(15) {
        return;
    }
    let started = Instant::now();
    let site = Site::new("unfinished-sigterm", Backend::S3);
    let out = push_and_signal_mid_upload(&site, Signal::SIGTERM);
    assert_exit(&out, INTERRUPTED);
    assert!(
        stderr(&out).contains("received SIGTERM"),
        "{}",
        stderr(&out)
    );
    let left = s3_multipart_keys(&site.s3_prefix());
    assert!(left.is_empty(), "multipart uploads left: {left:?}");
    let text = site.verify();
    assert!(!text.contains("unfinished upload"), "{text}");
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn s3_sigkill_leaves_an_orphan_that_delete_aborts() {
    if !wants_major(15) {
        return;
    }
    let started = Instant::now();
    let site = Site::new("unfinished-sigkill", Backend::S3);
    let out = push_and_signal_mid_upload(&site, Signal::SIGKILL);
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    let orphans = s3_multipart_keys(&site.s3_prefix());
    assert!(!orphans.is_empty(), "SIGKILL left no multipart upload");
    let killed_at = Instant::now();

    let text = site.verify();
    let note = unfinished_note(&text).unwrap_or_else(|| panic!("no note of the orphan:\n{text}"));
    assert!(
        note.starts_with(&format!("note: {} unfinished upload(s)", orphans.len()))
            && orphans
                .iter()
                .any(|k| note.contains(&format!("of {}, started", relative(k)))),
        "the note counts them and names the oldest's key ({orphans:?}):\n{note}"
    );

    // Younger than the age given: left alone, it may be a backup running
    // now. (moto answers every upload's start as 2010-11-10, so the default
    // day cannot be shown here; the filesystem test shows it.)
    let out = site.run(&[
        "delete",
        "retain",
        "1",
        "--confirm",
        "--unfinished-age",
        "36500d",
    ]);
    assert_exit(&out, 0);
    assert!(
        !stdout(&out).contains("unfinished upload"),
        "{}",
        stdout(&out)
    );
    assert_eq!(s3_multipart_keys(&site.s3_prefix()), orphans);

    // Old enough for a second (a zero age is refused as no duration).
    std::thread::sleep(Duration::from_secs(1).saturating_sub(killed_at.elapsed()));
    let out = site.run(&["delete", "retain", "1", "--unfinished-age", "1s"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "would abort {} unfinished upload(s) of debris or started over 1.0 s ago",
            orphans.len()
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        s3_multipart_keys(&site.s3_prefix()),
        orphans,
        "a dry run aborts nothing"
    );
    let out = site.run(&[
        "delete",
        "retain",
        "1",
        "--unfinished-age",
        "1s",
        "--confirm",
    ]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "aborted {} unfinished upload(s) of debris or started over 1.0 s ago",
            orphans.len()
        )),
        "{}",
        stdout(&out)
    );
    let left = s3_multipart_keys(&site.s3_prefix());
    assert!(left.is_empty(), "{left:?}");
    let text = site.verify();
    assert!(!text.contains("unfinished upload"), "{text}");
    assert!(
        text.contains("verified 1 backup "),
        "the complete one is kept:\n{text}"
    );
    eprintln!("took {:?}", started.elapsed());
}

#[test]
fn file_repository_staging_files_are_reported_and_old_ones_removed() {
    if !wants_major(15) {
        return;
    }
    let started = Instant::now();
    let site = Site::new("unfinished-file", Backend::File);
    let mut child = site.spawn_push();
    wait_while_running(
        &mut child,
        "a backup part is being staged",
        Duration::from_secs(120),
        || !site.staging_files().is_empty(),
    );
    signal(&child, Signal::SIGKILL);
    let out = wait_output(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), None, "killed: {}", stderr(&out));
    let killed = site.staging_files();
    assert_eq!(killed.len(), 1, "{killed:?}");
    let killed = killed[0].clone();
    let killed_key = killed
        .strip_prefix(site.repo_dir())
        .unwrap()
        .to_str()
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .to_string();
    let aged = Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(&killed)
        .status()
        .unwrap();
    assert!(aged.success());

    // A fresh one beside a part of the complete backup, as a backup
    // running now has.
    let complete_part = files_under(&site.repo_dir().join("main/backups"))
        .into_iter()
        .find(|p| {
            p.parent().is_some_and(|d| file_name(d) == site.complete)
                && file_name(p).starts_with("part-")
        })
        .expect("the complete backup has a part");
    let fresh = PathBuf::from(format!("{}#4242", complete_part.display()));
    std::fs::copy(&complete_part, &fresh).unwrap();

    let text = site.verify();
    let note = unfinished_note(&text).unwrap_or_else(|| panic!("no note:\n{text}"));
    assert!(
        note.starts_with(&format!(
            "note: 2 unfinished upload(s) under {}/main (the oldest, of {killed_key}, started ",
            site.repo.url
        )),
        "{note}"
    );

    let out = site.run(&["delete", "retain", "1"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!(
            "would abort 1 unfinished upload(s) of debris or started over 1day ago (oldest: {killed_key}, "
        )),
        "{}",
        stdout(&out)
    );
    assert!(killed.exists(), "a dry run removes nothing");

    let out = site.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("aborted 1 unfinished upload(s) of debris or started over 1day ago"),
        "{}",
        stdout(&out)
    );
    assert!(!killed.exists(), "the old staging file is removed");
    assert!(fresh.exists(), "the fresh one stays");
    let text = site.verify();
    let note = unfinished_note(&text).unwrap_or_else(|| panic!("no note:\n{text}"));
    let fresh_key = complete_part
        .strip_prefix(site.repo_dir())
        .unwrap()
        .display()
        .to_string();
    assert!(
        note.starts_with("note: 1 unfinished upload(s)")
            && note.contains(&format!("of {fresh_key}, started")),
        "{note}"
    );

    // A run killed while it claimed its name leaves a directory holding
    // only the claim's staging file, which no listing shows. Named before
    // the newest complete backup, it is debris whatever its age: removed,
    // directory and all.
    let complete_dir = complete_part.parent().unwrap();
    let debris_dir = complete_dir.with_file_name("20000101T000000Z");
    std::fs::create_dir(&debris_dir).unwrap();
    let claim_staging = debris_dir.join("claim.json#77");
    std::fs::write(&claim_staging, b"{").unwrap();
    // Killed between creating its directory and its first file: nothing
    // but an empty directory.
    let empty_dir = complete_dir.with_file_name("20000102T000000Z");
    std::fs::create_dir(&empty_dir).unwrap();
    let out = site.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("aborted 1 unfinished upload(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!debris_dir.exists(), "the debris directory is removed");
    assert!(!empty_dir.exists(), "the empty debris directory is removed");
    assert!(fresh.exists(), "the fresh one still stays");
    eprintln!("took {:?}", started.elapsed());
}
