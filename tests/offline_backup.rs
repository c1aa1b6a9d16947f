//! `backup-push --offline`: a cleanly shut down cluster is backed up with no
//! server to ask, restores and starts with no archived WAL, is verified and
//! proven, and serves as the base of a point-in-time restore once the
//! cluster runs again. Refused: a running cluster, a cluster that crashed,
//! another system's prefix. On the oldest and newest majors (their
//! pg_control layouts differ).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAJORS: [u32; 2] = [13, 18];

fn offline_backup(repo: &TestRepo, pgdata: &Path) -> std::process::Output {
    repo.run(&["backup-push", "--offline", pgdata.to_str().unwrap()])
}

#[test]
fn a_stopped_cluster_is_backed_up_restored_verified_proven_and_recovered_past() {
    for major in MAJORS.into_iter().filter(|m| wants_major(*m)) {
        let scratch = Scratch::new(&format!("offline-{major}"));
        let repo = TestRepo::new(&scratch, Backend::File);
        let cluster = Cluster::archiving_into(&scratch, &repo, major);
        cluster.execute(
            "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
        );
        let sum_before = cluster.query_one("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM t");
        // A tablespace, whose link the restore makes without a tablespace_map.
        let location = scratch.dir("ts-source");
        cluster.execute(&format!(
            "CREATE TABLESPACE far LOCATION '{}'",
            location.display()
        ));
        cluster.execute(
            "CREATE TABLE remote TABLESPACE far AS SELECT g AS id FROM generate_series(1, 3000) g",
        );
        let oid = cluster.query_one("SELECT oid::text FROM pg_tablespace WHERE spcname = 'far'");
        let elsewhere = |name: &str| format!("{oid}={}", scratch.path.join(name).display());
        cluster.stop();

        let out = offline_backup(&repo, &cluster.pgdata);
        assert_exit(&out, 0);
        let backup = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let said = stderr(&out);
        assert!(
            said.contains("--offline"),
            "{major}: the banner says how the cluster was found:\n{said}"
        );
        assert!(
            said.contains("needs none from the archive"),
            "{major}:\n{said}"
        );

        let m = repo.manifest(&backup);
        assert_eq!(m["offline"], Value::Bool(true), "{major}");
        assert_eq!(
            m["backup_label"], "",
            "{major}: an offline backup has no backup_label"
        );
        let checkpoint_segment = m["start_wal"].as_str().unwrap().to_string();
        let paths: Vec<&str> = m["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&format!("pg_wal/{checkpoint_segment}").as_str()),
            "{major}: the segment of the shutdown checkpoint travels with the backup: {paths:?}"
        );
        assert_eq!(
            paths.iter().filter(|p| p.starts_with("pg_wal/")).count(),
            1,
            "{major}: nothing else of pg_wal is stored: {paths:?}"
        );

        // Verify: no archived WAL is needed, so nothing is missing.
        let out = repo.run(&["verify", "--backup", &backup]);
        assert_exit(&out, 0);

        // Nothing to replay: PostgreSQL cannot pause or shut down at the
        // shutdown point, so asking for it is refused before anything is written.
        let dest = scratch.path.join("restored");
        let out = repo.restore(
            &dest,
            &[
                "--backup",
                &backup,
                "--target-immediate",
                "--target-action",
                "pause",
            ],
        );
        assert_exit(&out, 3);
        assert!(stderr(&out).contains("offline backup"), "{}", stderr(&out));
        assert!(!dest.exists(), "{major}: a refused restore writes nothing");

        // Restored and started with no WAL from the archive beyond what it carries.
        let ts = elsewhere("ts-restored");
        let out = repo.restore(
            &dest,
            &[
                "--backup",
                &backup,
                "--tablespace",
                &ts,
                "--target-immediate",
                "--target-action",
                "promote",
            ],
        );
        assert_exit(&out, 0);
        assert!(
            !dest.join("backup_label").exists(),
            "{major}: a backup_label would send recovery elsewhere"
        );
        assert!(dest.join("recovery.signal").exists());
        let restored = Cluster::restored(&scratch, "restored", major, dest);
        restored.start();
        restored.wait_promoted(Duration::from_secs(60));
        assert_eq!(
            restored.query_one("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM t"),
            sum_before,
            "{major}: the restored table is the one that was shut down"
        );
        assert_eq!(
            restored.query_one("SELECT count(*)::text FROM remote"),
            "3000",
            "{major}: the tablespace's table"
        );
        restored.stop();

        // Proven by pgproof itself.
        let args = prove_args(&scratch, major);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = repo.run(&args);
        assert_exit(&out, 0);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("proven"),
            "{}",
            stderr(&out)
        );

        // The cluster runs again: the offline backup is the base of a
        // point-in-time restore that replays the WAL archived since.
        cluster.start();
        cluster.execute("INSERT INTO t SELECT g, 'later' FROM generate_series(5001, 6000) g");
        cluster.execute("SELECT pg_create_restore_point('after_offline')");
        cluster.execute("INSERT INTO t SELECT g, 'too late' FROM generate_series(6001, 7000) g");
        let last = cluster.write_and_switch(10);
        cluster.wait_archived(&last);
        let out = repo.run(&["verify"]);
        assert_exit(&out, 0);
        let out = repo.run(&["status"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(&format!("none since backup {backup}")),
            "{major}: status sees no gap:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let dest = scratch.path.join("pitr");
        let ts = elsewhere("ts-pitr");
        let out = repo.restore(
            &dest,
            &[
                "--backup",
                &backup,
                "--tablespace",
                &ts,
                "--target-name",
                "after_offline",
                "--target-action",
                "promote",
            ],
        );
        assert_exit(&out, 0);
        let pitr = Cluster::restored(&scratch, "pitr", major, dest);
        pitr.start();
        pitr.wait_promoted(Duration::from_secs(90));
        assert_eq!(
            pitr.query_one("SELECT count(*)::text FROM t"),
            "6000",
            "{major}"
        );
        pitr.stop();

        // Stopped again: an offline incremental on the offline full, whose
        // restore is the cluster as it was shut down the second time.
        cluster.stop();
        let out = repo.run(&[
            "backup-push",
            "--offline",
            "--incremental",
            cluster.pgdata.to_str().unwrap(),
        ]);
        assert_exit(&out, 0);
        let incremental = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let m = repo.manifest(&incremental);
        assert_eq!(m["type"], "incremental", "{major}");
        assert_eq!(m["offline"], Value::Bool(true), "{major}");
        let dest = scratch.path.join("incremental");
        let ts = elsewhere("ts-incremental");
        let out = repo.restore(
            &dest,
            &[
                "--backup",
                &incremental,
                "--tablespace",
                &ts,
                "--target-immediate",
                "--target-action",
                "promote",
            ],
        );
        assert_exit(&out, 0);
        let again = Cluster::restored(&scratch, "incremental", major, dest);
        again.start();
        again.wait_promoted(Duration::from_secs(60));
        assert_eq!(
            again.query_one("SELECT count(*)::text FROM t"),
            "7000",
            "{major}"
        );
        assert_eq!(again.query_one("SELECT count(*)::text FROM remote"), "3000");
        again.stop();
    }
}

#[test]
fn a_running_or_crashed_cluster_and_a_foreign_prefix_are_refused() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("offline-refusals");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    // The prefix is bound to this system by its first archived segment.
    let first = cluster.write_and_switch(10);
    cluster.wait_archived(&first);

    let out = offline_backup(&repo, &cluster.pgdata);
    assert_exit(&out, 11);
    assert!(stderr(&out).contains("is running"), "{}", stderr(&out));

    // Killed: pg_control says in production, its files need WAL replayed over them.
    let out = as_postgres(cluster.bin.join("pg_ctl"))
        .arg("-D")
        .arg(&cluster.pgdata)
        .args(["-m", "immediate", "-w", "stop"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = offline_backup(&repo, &cluster.pgdata);
    assert_exit(&out, 11);
    assert!(
        stderr(&out).contains("not shut down cleanly"),
        "{}",
        stderr(&out)
    );
    // Without --offline, a stopped cluster's error points at it.
    let out = repo.run(&["backup-push", cluster.pgdata.to_str().unwrap()]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("backup-push --offline"),
        "{}",
        stderr(&out)
    );
    let out = repo.run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(0),
        "no backup was written: {list}"
    );

    // Another system, shut down cleanly, into this system's prefix.
    let other = Cluster::init(&scratch, "other", major);
    let out = offline_backup(&repo, &other.pgdata);
    assert_exit(&out, 4);
    assert!(
        stderr(&out).contains("belongs to system"),
        "{}",
        stderr(&out)
    );
    let nothing: Vec<PathBuf> = files_under(repo.dir.as_ref().unwrap())
        .into_iter()
        .filter(|p| file_name(p) == "manifest.json")
        .collect();
    assert!(nothing.is_empty(), "{nothing:?}");
}
