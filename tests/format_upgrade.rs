//! A prefix written by repository format 3, whose WAL objects are named by
//! the SHA-256 of their content and whose claims hold it in `sha256`, kept
//! in use by this build (format 4, XXH3-128 names): its WAL still restores,
//! a re-push of a stored segment is recognised, a claim an interrupted
//! older push left is honoured, the identity record is raised to format 4
//! before the first new name is written, and a newer format is refused.

mod common;

use common::*;
use pgproof::codec::{Checksum, Compression};
use pgproof::repo::document;
use pgproof::repo::layout::parse_wal_object;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

fn decompressed(path: &Path, compression: Compression) -> Vec<u8> {
    let stored = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    compression
        .decoder(&stored[..])
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn read_document(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn write_document(path: &Path, doc: &Value) {
    std::fs::write(path, document::encode(doc).unwrap()).unwrap();
}

/// Rewrites the prefix `<repo>/main` as a format 3 pgproof left it: every
/// WAL object renamed to the SHA-256 of its content, every claim holding
/// that SHA-256 in `sha256`, and the identity record at format 3. Returns
/// the WAL names with their SHA-256.
fn make_format_3(prefix: &Path) -> BTreeMap<String, String> {
    let mut sums = BTreeMap::new();
    let files = files_under(&prefix.join("wal"));
    for path in &files {
        let Some(object) = parse_wal_object(path.to_str().unwrap()) else {
            continue;
        };
        let sha = Checksum::of(&decompressed(path, object.compression)).to_hex();
        let renamed = path.with_file_name(format!(
            "{}-{sha}.{}",
            object.name,
            object.compression.extension()
        ));
        std::fs::rename(path, &renamed).unwrap();
        sums.insert(object.name.to_string(), sha);
    }
    for path in files.iter().filter(|p| file_name(p).ends_with(".claim")) {
        let mut claim = read_document(path);
        let map = claim.as_object_mut().unwrap();
        let wal = map["wal"].as_str().unwrap().to_string();
        map.remove("content_checksum").expect("a format 4 claim");
        map.insert("sha256".into(), Value::String(sums[&wal].clone()));
        map.insert("format".into(), 3.into());
        write_document(path, &claim);
    }
    set_record_format(prefix, 3);
    sums
}

fn record_path(prefix: &Path) -> PathBuf {
    files_under(prefix)
        .into_iter()
        .find(|p| file_name(p) == "cluster.json")
        .expect("the prefix has an identity record")
}

fn set_record_format(prefix: &Path, format: u32) {
    let path = record_path(prefix);
    let mut record = read_document(&path);
    record["format"] = format.into();
    write_document(&path, &record);
}

fn record_format(prefix: &Path) -> u64 {
    read_document(&record_path(prefix))["format"]
        .as_u64()
        .unwrap()
}

/// The checksum digits of every stored WAL object of `name`.
fn stored_sums(prefix: &Path, name: &str) -> Vec<String> {
    files_under(&prefix.join("wal"))
        .iter()
        .filter_map(|p| parse_wal_object(p.to_str().unwrap()))
        .filter(|o| o.name.to_string() == name)
        .map(|o| o.checksum.to_hex())
        .collect()
}

#[test]
fn a_format_3_archive_restores_and_keeps_growing_after_the_upgrade() {
    let scratch = Scratch::new("format-3");
    let repo = TestRepo::new(&scratch, Backend::File);
    let prefix = repo.dir.as_ref().unwrap().join("main");
    let cluster = Cluster::archiving_into(&scratch, &repo, 15);
    cluster.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g");
    let backup = repo.backup(&cluster);
    cluster.execute("INSERT INTO t SELECT g FROM generate_series(1001, 2000) g");
    let kept = cluster.write_and_switch(100);
    let last_old = cluster.write_and_switch(100);
    cluster.wait_archived(&last_old);
    // Copies of two archived segments, to push again by hand.
    let copies = scratch.dir("copies");
    for name in [&kept, &last_old] {
        std::fs::copy(cluster.pgdata.join("pg_wal").join(name), copies.join(name)).unwrap();
    }
    cluster.stop();

    let sums = make_format_3(&prefix);
    assert_eq!(sums[&kept].len(), 64);
    let out = repo.run(&["verify"]);
    assert_exit(&out, 0);
    assert_eq!(record_format(&prefix), 3, "verify only reads");

    // An older push of `last_old` interrupted after its claim: the object
    // is gone, the claim (a SHA-256) stays.
    let interrupted = files_under(&prefix.join("wal"))
        .into_iter()
        .find(|p| file_name(p).starts_with(&format!("{last_old}-")))
        .unwrap();
    std::fs::remove_file(&interrupted).unwrap();

    let pgdata = cluster.pgdata.to_str().unwrap();
    let push = |name: &str| {
        repo.run(&[
            "--pgdata",
            pgdata,
            "wal-push",
            copies.join(name).to_str().unwrap(),
        ])
    };
    // A stored segment pushed again: recognised by its SHA-256.
    let before = repo.snapshot();
    let out = push(&kept);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains("identical content"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stored_sums(&prefix, &kept), vec![sums[&kept].clone()]);
    let changed: Vec<_> = repo
        .snapshot()
        .into_iter()
        .filter(|(k, v)| before.get(k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.iter().all(|k| k.ends_with("cluster.json")),
        "only the identity record may change: {changed:?}"
    );
    assert_eq!(
        record_format(&prefix),
        6,
        "a writing command raises the format"
    );

    // The claimed name is stored under the claim's SHA-256, so claim and
    // object agree.
    let out = push(&last_old);
    assert_exit(&out, 0);
    assert_eq!(
        stored_sums(&prefix, &last_old),
        vec![sums[&last_old].clone()]
    );

    // New WAL gets XXH3-128 names; recovery reads both kinds.
    cluster.start();
    cluster.execute("INSERT INTO t SELECT g FROM generate_series(2001, 3000) g");
    let target = cluster.query_one("SELECT now()::text");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    cluster.execute("DROP TABLE t");
    let new = cluster.write_and_switch(10);
    cluster.wait_archived(&new);
    let new_sums = stored_sums(&prefix, &new);
    assert_eq!(new_sums.len(), 1);
    assert_eq!(new_sums[0].len(), 32, "new WAL is named by its XXH3-128");
    cluster.stop();

    let out = repo.run(&["verify"]);
    assert_exit(&out, 0);

    let dest = scratch.path.join("restored");
    let out = repo.run(&[
        "restore",
        dest.to_str().unwrap(),
        "--backup",
        &backup,
        "--target-time",
        &target,
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);
    let restored = Cluster::restored(&scratch, "restored", 15, dest);
    restored.start();
    restored.wait_promoted(std::time::Duration::from_secs(60));
    assert_eq!(restored.query_one("SELECT count(*)::text FROM t"), "3000");
}

#[test]
fn a_prefix_of_a_newer_format_is_refused_and_left_alone() {
    let scratch = Scratch::new("format-newer");
    let repo = TestRepo::new(&scratch, Backend::File);
    let prefix = repo.dir.as_ref().unwrap().join("main");
    let cluster = Cluster::archiving_into(&scratch, &repo, 15);
    let segment = cluster.write_and_switch(100);
    cluster.wait_archived(&segment);
    let copy = scratch.dir("copies").join(&segment);
    std::fs::copy(cluster.pgdata.join("pg_wal").join(&segment), &copy).unwrap();
    cluster.stop();

    set_record_format(&prefix, 99);
    let before = repo.snapshot();
    let pgdata = cluster.pgdata.to_str().unwrap();
    // wal-fetch's 128 makes PostgreSQL stop rather than end recovery there.
    for (args, exit) in [
        (
            vec!["--pgdata", pgdata, "wal-push", copy.to_str().unwrap()],
            3,
        ),
        (vec!["wal-fetch", &segment, "/dev/null"], 128),
        (vec!["verify"], 3),
    ] {
        let out = repo.run(&args);
        assert_exit(&out, exit);
        let err = stderr(&out);
        assert!(
            err.contains("format 99") && err.contains("upgrade pgproof"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(repo.snapshot(), before, "a refused command wrote nothing");
}
