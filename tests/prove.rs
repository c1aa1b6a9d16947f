//! `pgproof prove`: a good backup is restored, started, replayed to the end
//! of the archive, checked and its proof recorded; a wrong expectation, a
//! damaged part and a WAL gap before consistency each fail clearly, with
//! the failed proof recorded. Runs the proving server as root's chosen user
//! and, when the tests run as root, pgproof itself as the server's user.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Output};

/// A cluster archiving into a file repository, with a table `keep` of 1000
/// rows backed up, then 500 more rows archived after the backup.
struct Story {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    backup: String,
}

fn story(name: &str, major: u32) -> Story {
    story_on(name, major, Backend::File)
}

fn story_on(name: &str, major: u32, backend: Backend) -> Story {
    let scratch = Scratch::new(name);
    let repo = TestRepo::new(&scratch, backend);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE keep AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );
    cluster.execute("CREATE DATABASE app");
    let env = repo.pg_env();
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "backup-push",
            cluster.pgdata.to_str().unwrap(),
            "--fast",
        ],
        &env,
        None,
    );
    assert_exit(&out, 0);
    let backup = String::from_utf8_lossy(&out.stdout).trim().to_string();
    cluster.execute("INSERT INTO keep SELECT g, 'after' FROM generate_series(1001, 1500) g");
    let last = cluster.write_and_switch(10);
    cluster.wait_archived(&last);
    Story {
        scratch,
        repo,
        cluster,
        backup,
    }
}

impl Story {
    /// `prove` arguments: the repository, the scratch parent, and the test
    /// builds of the major (15 comes from Debian's packages, found without a setting).
    fn args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = ["--repo", &self.repo.url, "--cluster", "main"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let bindir = pg_root().join(self.cluster.major.to_string()).join("bin");
        if self.cluster.major != 15 {
            args.push("--pg-bindir".into());
            args.push(bindir.display().to_string());
        }
        args.extend(["prove".to_string(), "--scratch".into()]);
        args.push(self.scratch_parent().display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn scratch_parent(&self) -> PathBuf {
        self.scratch.dir("prove-scratch")
    }

    fn prove(&self, extra: &[&str]) -> Output {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgproof(&args, &self.repo.env, None)
    }

    /// pgproof run as the server's own user: the path taken when not root.
    fn prove_as_server_user(&self, extra: &[&str]) -> Output {
        let mut cmd = as_postgres(pgproof_exe());
        cmd.args(self.args(extra));
        for (k, _) in std::env::vars() {
            if k.starts_with("PGPROOF_") || k.starts_with("AWS_") || k == "PGDATA" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir("/");
        cmd.output().unwrap()
    }

    fn backups(&self) -> serde_json::Value {
        let out = pgproof(
            &[
                "--repo",
                &self.repo.url,
                "--cluster",
                "main",
                "backup-list",
                "--json",
            ],
            &self.repo.env,
            None,
        );
        assert_exit(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn proofs(&self) -> Vec<serde_json::Value> {
        let dir = self.repo.dir.as_ref().unwrap();
        files_under(dir)
            .into_iter()
            .filter(|p| p.parent().map(file_name) == Some("proofs"))
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// No server and no scratch directory left behind.
    fn assert_cleaned_up(&self) {
        let left: Vec<_> = std::fs::read_dir(self.scratch_parent())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "scratch directories left: {left:?}");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_named<'a>(proof: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    proof["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {proof:#}"))
}

fn good_backup_is_proven(major: u32, as_server_user: bool) {
    if !wants_major(major) {
        return;
    }
    let s = story(&format!("prove-{major}"), major);
    let sql = ["--sql", "SELECT count(*) FROM keep", "--expect", "1500"];
    let out = if as_server_user {
        s.prove_as_server_user(&sql)
    } else {
        s.prove(&sql)
    };
    eprintln!("{}{}", stderr(&out), stdout(&out));
    assert_exit(&out, 0);
    let verdict = stdout(&out);
    assert!(
        verdict.contains(&format!("backup {} of main proven", s.backup))
            && verdict.contains("replayed to"),
        "{verdict}\n{}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(err.contains("check sql: passed"), "{err}");
    // The scratch copy is prove's own: no advice to start it by hand.
    assert!(!err.contains("next: start PostgreSQL"), "{err}");
    s.assert_cleaned_up();

    let list = s.backups();
    assert_eq!(list[0]["proof"]["succeeded"], true, "{list:#}");
    assert!(list[0]["proof"]["replayed_to_lsn"].is_string(), "{list:#}");
    let proofs = s.proofs();
    assert_eq!(proofs.len(), 1);
    let p = &proofs[0];
    assert_eq!(
        p["system_identifier"],
        s.cluster.system_identifier().as_str()
    );
    assert!(
        p["server_version"]
            .as_str()
            .unwrap()
            .starts_with(&format!("PostgreSQL {major}")),
        "{p:#}"
    );
    for name in [
        "restore",
        "start",
        "replay",
        "system identifier",
        "catalogs",
        "connect app",
        "connect postgres",
        "pg_amcheck",
        "sql",
    ] {
        assert_eq!(check_named(p, name)["passed"], true, "{name}: {p:#}");
    }
    // The segment holding the rows written after the backup was replayed.
    let replayed = p["replayed_to_wal"].as_str().unwrap().to_string();
    let backup_start = list[0]["start_wal"].as_str().unwrap();
    assert!(
        replayed.as_str() > backup_start,
        "{replayed} {backup_start}"
    );
    // The source was not disturbed.
    assert_eq!(s.cluster.query_one("SELECT count(*) FROM keep"), "1500");

    // A wrong expectation fails the proof, and it is recorded as the newest.
    let out = s.prove(&["--sql", "SELECT count(*) FROM keep", "--expect", "999"]);
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: sql failed") && err.contains("expected \"999\""),
        "{err}"
    );
    assert_eq!(s.backups()[0]["proof"]["succeeded"], false);
    assert_eq!(s.proofs().len(), 2);
    s.assert_cleaned_up();
}

#[test]
fn good_backup_is_proven_15_as_the_server_user() {
    good_backup_is_proven(15, true);
}

/// The oldest major: settings that later majors dropped are given only to it.
#[test]
fn good_backup_is_proven_13() {
    good_backup_is_proven(13, false);
}

#[test]
fn good_backup_is_proven_17() {
    good_backup_is_proven(17, false);
}

/// The proving server's restore_command reaches the object store with the
/// credentials pgproof was given (through the environment, never the
/// command line).
fn good_backup_is_proven_from(backend: Backend, major: u32) {
    if !wants_major(major) {
        return;
    }
    let s = story_on(&format!("prove-{backend:?}"), major, backend);
    let out = s.prove(&["--sql", "SELECT count(*) FROM keep", "--expect", "1500"]);
    eprintln!("{}", stderr(&out));
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("proven"), "{}", stdout(&out));
    assert!(
        !stderr(&out).contains("testing-secret"),
        "credentials never appear"
    );
    let list = s.backups();
    assert_eq!(list[0]["proof"]["succeeded"], true, "{list:#}");
    s.assert_cleaned_up();
}

#[test]
fn good_backup_is_proven_from_s3_16() {
    good_backup_is_proven_from(Backend::S3, 16);
}

#[test]
fn good_backup_is_proven_from_azure_17() {
    good_backup_is_proven_from(Backend::Azure, 17);
}

#[test]
fn a_corrupt_part_fails_the_proof() {
    if !wants_major(15) {
        return;
    }
    let s = story("prove-corrupt", 15);
    // The time limit bounds the whole proof, the restore included.
    let out = s.prove(&["--time-limit", "1ms"]);
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: restore failed: the time limit"),
        "{err}"
    );
    s.assert_cleaned_up();

    let part = files_under(s.repo.dir.as_ref().unwrap())
        .into_iter()
        .find(|p| file_name(p).starts_with("part-00001.tar"))
        .expect("a part");
    let mut bytes = std::fs::read(&part).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&part, bytes).unwrap();

    let out = s.prove(&[]);
    eprintln!("{}", stderr(&out));
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: restore failed") && err.contains("part-00001"),
        "{err}"
    );
    let proofs = s.proofs();
    assert_eq!(proofs.len(), 2);
    assert!(proofs.iter().all(|p| p["succeeded"] == false));
    assert!(
        proofs
            .iter()
            .all(|p| check_named(p, "restore")["passed"] == false)
    );
    s.assert_cleaned_up();
}

fn archived_object(s: &Story, segment: &str) -> PathBuf {
    files_under(s.repo.dir.as_ref().unwrap())
        .into_iter()
        .find(|p| file_name(p).starts_with(&format!("{segment}-")))
        .unwrap_or_else(|| panic!("{segment} is archived"))
}

#[test]
fn wal_gaps_fail_the_proof() {
    if !wants_major(17) {
        return;
    }
    let s = story("prove-gap", 17);
    // One more segment, so that one after the backup can go missing.
    let after = s.cluster.write_and_switch(10);
    s.cluster.wait_archived(&after);
    let list = s.backups();
    let start_wal = list[0]["start_wal"].as_str().unwrap().to_string();
    let stop_wal = list[0]["stop_wal"].as_str().unwrap().to_string();

    // A gap after the consistency point: PostgreSQL would end recovery there
    // and promote as if it had reached the end of the archive.
    let names: Vec<String> = files_under(s.repo.dir.as_ref().unwrap())
        .iter()
        .map(|p| file_name(p).split('-').next().unwrap().to_string())
        .filter(|n| n.len() == 24 && n.as_str() > stop_wal.as_str() && n.as_str() < after.as_str())
        .collect();
    let missing = names
        .first()
        .expect("a segment between the backup and the last one");
    // First damaged: wal-fetch refuses it and PostgreSQL stops recovery.
    let object = archived_object(&s, missing);
    let mut bytes = std::fs::read(&object).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&object, bytes).unwrap();
    let out = s.prove(&[]);
    eprintln!("{}", stderr(&out));
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: ")
            && err.contains(&format!("could not restore file \"{missing}\""))
            && err.contains("is corrupt"),
        "{err}"
    );
    s.assert_cleaned_up();
    // Then missing.
    std::fs::remove_file(&object).unwrap();
    let out = s.prove(&["--keep"]);
    eprintln!("{}", stderr(&out));
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: archive end failed") && err.contains(&after),
        "{err}"
    );
    // --keep leaves the restored cluster and the server's log, and says where.
    let kept: Vec<PathBuf> = std::fs::read_dir(s.scratch_parent())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        err.contains(&format!("stays for inspection: {}", kept[0].display())),
        "{err}"
    );
    assert!(kept[0].join("data/PG_VERSION").exists() && kept[0].join("server.log").exists());
    std::fs::remove_dir_all(&kept[0]).unwrap();

    // A gap before consistency: the server cannot start.
    std::fs::remove_file(archived_object(&s, &start_wal)).unwrap();
    let out = s.prove(&[]);
    eprintln!("{}", stderr(&out));
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: start failed") && err.contains("server log:"),
        "{err}"
    );
    assert!(
        err.contains(&start_wal),
        "the hint names the WAL needed:\n{err}"
    );
    let proofs = s.proofs();
    assert_eq!(proofs.len(), 3);
    assert!(proofs.iter().all(|p| p["succeeded"] == false));
    assert!(
        proofs
            .iter()
            .all(|p| check_named(p, "restore")["passed"] == true)
    );
    s.assert_cleaned_up();
    // No proving server is left running.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(s.scratch_parent().to_str().unwrap()),
        "a proving server is still running"
    );
}

/// SIGTERM (a scheduler's timeout) stops the proving server, removes the
/// scratch directory and records the attempt as failed.
#[test]
fn an_interrupted_proof_leaves_nothing_running() {
    if !wants_major(15) {
        return;
    }
    let s = story("prove-interrupt", 15);
    // The operator's query keeps the proof busy while the server runs.
    let child = spawn_busy_proof(&s);
    wait_until(
        "the proving server has replayed and the query runs",
        std::time::Duration::from_secs(60),
        || {
            let backend_running = Command::new("ps")
                .args(["-eo", "args"])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l.contains("pgproof-prove:") && l.contains("SELECT"))
                })
                .unwrap_or(false);
            backend_running
                && files_under(&s.scratch_parent())
                    .iter()
                    .any(|p| file_name(p) == "server.log")
        },
    );
    common::signal(&child, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    eprintln!("{err}");
    assert_exit(&out, 12);
    assert!(
        err.contains("NOT proven: interrupted failed") && err.contains("SIGTERM"),
        "{err}"
    );
    s.assert_cleaned_up();
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(s.scratch_parent().to_str().unwrap()),
        "a proving server is still running"
    );
    assert_eq!(s.proofs().len(), 1);
}

/// A proof in the background whose SQL check keeps it busy for a minute
/// once the server runs; its output is piped.
fn spawn_busy_proof(s: &Story) -> std::process::Child {
    let args = s.args(&["--sql", "SELECT pg_sleep(60)"]);
    let mut cmd = Command::new(pgproof_exe());
    cmd.args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("PGPROOF_") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().unwrap()
}

/// Whether `pid` is a process that has not exited (zombies have).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

#[test]
fn a_proof_killed_outright_is_cleaned_up_by_the_next() {
    if !wants_major(15) {
        return;
    }
    let s = story("prove-killed", 15);
    let mut child = spawn_busy_proof(&s);
    let mut postmaster_pid = None;
    wait_until(
        "the proving server runs",
        std::time::Duration::from_secs(60),
        || {
            postmaster_pid = files_under(&s.scratch_parent())
                .into_iter()
                .find(|p| file_name(p) == "postmaster.pid")
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok());
            postmaster_pid.is_some()
        },
    );
    let postmaster_pid = postmaster_pid.unwrap();
    // SIGKILL: pgproof cannot stop its server or remove its directory.
    common::signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().unwrap();
    assert!(
        running(postmaster_pid),
        "the orphaned server should still run"
    );

    let out = s.prove(&[]);
    let err = stderr(&out);
    assert_exit(&out, 0);
    assert!(
        err.contains("left by a proof that was killed")
            && err.contains(&format!("stopped its server (pid {postmaster_pid})")),
        "{err}"
    );
    assert!(!running(postmaster_pid), "the orphaned server still runs");
    s.assert_cleaned_up();
}
