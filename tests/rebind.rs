//! Rebinding a cluster prefix after pg_upgrade or a new initdb (invariant 2):
//! an explicit act, a dry run unless --confirm. Afterwards the new system
//! archives and backs up under the same cluster name, the old system is
//! refused, and the old system's backups still restore with their WAL.

mod common;

use common::*;
use std::time::Duration;

/// The newest supported major above 15 that this machine has, as the
/// "upgraded" system; 15 again (a new initdb) when there is none.
fn upgraded_major() -> u32 {
    majors().into_iter().filter(|m| *m > 15).max().unwrap_or(15)
}

fn backups(repo: &TestRepo) -> serde_json::Value {
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "backup-list",
            "--json",
        ],
        &repo.env,
        None,
    );
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_new_system_takes_over_the_prefix_and_the_old_backups_still_restore() {
    let scratch = Scratch::new("rebind");
    let repo = TestRepo::new(&scratch, Backend::File);
    let repo_dir = repo.dir.clone().unwrap();
    let in_main = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--repo", &repo.url, "--cluster", "main"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = in_main(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pgproof(&args, &repo.pg_env(), None)
    };
    // Restores into `name` (with `extra` restore arguments) up to the
    // backup's consistency point, starts the copy and waits for promotion.
    let restore_promoted = |name: &str, major: u32, extra: &[&str]| {
        let dest = scratch.path.join(name);
        let mut args = vec![
            "restore",
            dest.to_str().unwrap(),
            "--target-immediate",
            "--target-action",
            "promote",
        ];
        args.extend_from_slice(extra);
        assert_exit(&run(&args), 0);
        let restored = Cluster::restored(&scratch, name, major, dest.clone());
        restored.start();
        restored.wait_promoted(Duration::from_secs(120));
        restored
    };

    // The old system: PostgreSQL 15, archiving and backed up.
    let old = Cluster::init(&scratch, "old", 15);
    old.archive_with(&format!("--repo {} --cluster main", repo.url));
    old.start();
    old.execute("CREATE TABLE kept AS SELECT generate_series(1, 1234) AS id");
    assert_exit(
        &run(&["backup-push", old.pgdata.to_str().unwrap(), "--fast"]),
        0,
    );
    let old_system = old.system_identifier();
    let old_backup = backups(&repo)[0]["name"].as_str().unwrap().to_string();
    // One of its archived segments, kept to be offered again later.
    let old_segment = old.write_and_switch(100);
    old.wait_archived(&old_segment);
    let saved_segment = scratch.dir("saved").join(&old_segment);
    std::fs::copy(old.pgdata.join("pg_wal").join(&old_segment), &saved_segment).unwrap();
    old.stop();

    // The same cluster after an upgrade: a new system identifier (and here
    // a newer major), archiving under the same name.
    let new_major = upgraded_major();
    let new = Cluster::init(&scratch, "new", new_major);
    new.archive_with(&format!("--repo {} --cluster main", repo.url));
    new.start();
    let new_system = new.system_identifier();
    let new_pgdata = new.pgdata.to_str().unwrap();

    // Until the prefix is rebound, the new system is refused, and told how.
    let out = run(&["backup-push", new_pgdata, "--fast"]);
    assert_exit(&out, 4);
    assert!(stderr(&out).contains("pgproof rebind"), "{}", stderr(&out));

    // A dry run names both systems and changes nothing.
    let before = repo.snapshot();
    let out = run(&["rebind", new_pgdata]);
    assert_exit(&out, 0);
    let said = stderr(&out);
    for expected in [
        old_system.as_str(),
        new_system.as_str(),
        "dry run",
        "--confirm",
    ] {
        assert!(said.contains(expected), "{expected:?} missing from: {said}");
    }
    assert_eq!(repo.snapshot(), before);

    let out = run(&["rebind", new_pgdata, "--confirm", "--reason", "pg_upgrade"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("rebound"), "{}", stderr(&out));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo_dir.join("main/cluster.json")).unwrap())
            .unwrap();
    let bindings = record["bindings"].as_array().unwrap();
    assert_eq!(bindings.len(), 2, "{record}");
    assert_eq!(bindings[0]["system_identifier"], old_system.as_str());
    assert_eq!(bindings[1]["system_identifier"], new_system.as_str());
    assert_eq!(bindings[1]["major"], new_major);
    assert_eq!(bindings[1]["reason"], "pg_upgrade");
    // Asked again, there is nothing to do.
    let out = run(&["rebind", new_pgdata, "--confirm"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("already belongs"), "{}", stderr(&out));

    // Until the new system has a backup, status says the cluster is not
    // protected, whatever the old system's backups.
    let out = run(&["status"]);
    assert_exit(&out, 2);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("there is no complete backup"), "{said}");
    assert!(said.contains(&new_system), "{said}");

    // The new system now archives and backs up there.
    new.execute("CREATE TABLE fresh AS SELECT generate_series(1, 77) AS id");
    assert_exit(&run(&["backup-push", new_pgdata, "--fast"]), 0);
    let list = backups(&repo);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[0]["system_identifier"], old_system.as_str());
    assert_eq!(list[1]["system_identifier"], new_system.as_str());

    // The old system is refused now, even a segment already stored.
    let before = repo.snapshot();
    let out = run(&[
        "--pgdata",
        old.pgdata.to_str().unwrap(),
        "wal-push",
        saved_segment.to_str().unwrap(),
    ]);
    assert_exit(&out, 4);
    assert!(stderr(&out).contains(&old_system), "{}", stderr(&out));
    assert_eq!(repo.snapshot(), before);

    // The old system's backup still restores, with its WAL, from its own
    // binding.
    let restored = restore_promoted("restored-old", 15, &["--backup", &old_backup]);
    assert_eq!(
        restored.query_one("SELECT count(*)::text FROM kept"),
        "1234"
    );
    assert_eq!(restored.system_identifier(), old_system);
    assert!(
        restored
            .server_log()
            .contains("pgproof wal-fetch: restored"),
        "{}",
        restored.server_log()
    );
    restored.stop();

    // And the newest backup is the new system's.
    let restored = restore_promoted("restored-new", new_major, &[]);
    assert_eq!(restored.query_one("SELECT count(*)::text FROM fresh"), "77");
    assert_eq!(restored.system_identifier(), new_system);
}

#[test]
fn rebind_of_an_empty_prefix_or_without_a_data_directory() {
    let scratch = Scratch::new("rebind-empty");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "c", 15);
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "rebind",
            cluster.pgdata.to_str().unwrap(),
            "--confirm",
        ],
        &[],
        None,
    );
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("holds nothing yet"),
        "{}",
        stderr(&out)
    );
    assert!(files_under(repo.dir.as_ref().unwrap()).is_empty());

    let not_a_cluster = scratch.dir("empty");
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "rebind",
            not_a_cluster.to_str().unwrap(),
            "--confirm",
        ],
        &[],
        None,
    );
    assert_exit(&out, 10);
    assert!(
        stderr(&out).contains(not_a_cluster.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
}
