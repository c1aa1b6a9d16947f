//! What a backup leaves out, as PostgreSQL's own base backup does, and what
//! that means after a restore: an unlogged table comes back empty (its
//! init fork is stored, its data is not), a temporary table of a session
//! open during the backup is not stored at all, and logged tables are whole.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

fn manifest_paths(repo: &TestRepo, backup: &str) -> Vec<String> {
    let manifest = files_under(repo.dir.as_ref().unwrap())
        .into_iter()
        .find(|p| {
            file_name(p) == "manifest.json"
                && p.parent().and_then(|d| d.file_name()) == Some(backup.as_ref())
        })
        .expect("the backup has a manifest");
    let doc: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().expect("ASCII paths here").to_string())
        .collect()
}

#[test]
fn unlogged_and_temporary_relations_are_left_out_and_restore_as_postgresql_expects() {
    for major in majors() {
        let scratch = Scratch::new(&format!("contents-{major}"));
        let repo = TestRepo::new(&scratch, Backend::File);
        let cluster = Cluster::archiving_into(&scratch, &repo, major);
        cluster.execute(
            "CREATE TABLE logged AS SELECT g AS id FROM generate_series(1, 5000) g;
             CREATE UNLOGGED TABLE scratchpad AS SELECT g AS id FROM generate_series(1, 5000) g;",
        );
        let unlogged = cluster.query_one("SELECT pg_relation_filepath('scratchpad')");
        // A session holding a temporary table while the backup runs.
        let mut session = cluster.client();
        session
            .batch_execute(
                "CREATE TEMP TABLE mine AS SELECT g AS id FROM generate_series(1, 5000) g",
            )
            .unwrap();
        let temp: String = session
            .query_one("SELECT pg_relation_filepath('mine')", &[])
            .unwrap()
            .get(0);
        assert!(
            file_name(std::path::Path::new(&temp)).starts_with('t'),
            "a temporary relation's file: {temp}"
        );
        assert!(cluster.pgdata.join(&temp).exists());

        let backup = repo.backup(&cluster);
        drop(session);
        let paths = manifest_paths(&repo, &backup);
        let temp_name = file_name(std::path::Path::new(&temp)).to_string();
        assert!(
            !paths.iter().any(|p| p.contains(&format!("/{temp_name}"))),
            "{major}: the temporary relation {temp} was stored"
        );
        assert!(
            !paths.contains(&unlogged),
            "{major}: the unlogged table's data {unlogged} was stored"
        );
        assert!(
            paths.contains(&format!("{unlogged}_init")),
            "{major}: the unlogged table's init fork is missing"
        );
        let logged = cluster.query_one("SELECT pg_relation_filepath('logged')");
        assert!(paths.contains(&logged), "{major}: {logged} is missing");
        cluster.stop();

        let dest = scratch.path.join("restored");
        let out = repo.run(&[
            "restore",
            dest.to_str().unwrap(),
            "--backup",
            &backup,
            "--target-immediate",
            "--target-action",
            "promote",
        ]);
        assert_exit(&out, 0);
        assert!(!dest.join(&temp).exists());
        let restored = Cluster::restored(&scratch, "restored", major, dest);
        restored.start();
        restored.wait_promoted(Duration::from_secs(60));
        assert_eq!(
            restored.query_one("SELECT count(*)::text FROM logged"),
            "5000"
        );
        assert_eq!(
            restored.query_one("SELECT count(*)::text FROM scratchpad"),
            "0",
            "{major}: an unlogged table restores empty"
        );
        restored.stop();
    }
}
