//! File names that are not UTF-8 (a Latin-1 named note, a log file) in a
//! real data directory: backup-push, restore, and every name comes back byte
//! for byte with its own content; verify, backup-list and delete read such
//! a manifest; the restored server starts.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

const LATIN1: &[u8] = b"notes-\xe9t\xe9.txt";

/// Files and directories created in the source, relative to PGDATA. Around
/// the Latin-1 names sort PostgreSQL's own (`PG_VERSION`, `base`, `global`
/// before; `pg_*`, `postgresql.conf` after) and these.
fn extra_dirs() -> Vec<Vec<u8>> {
    vec![b"pg_log".to_vec(), b"r\xe9sum\xe9s".to_vec()]
}

fn extra_files() -> Vec<Vec<u8>> {
    vec![
        b"notes-a.txt".to_vec(),
        // The same name in UTF-8: it must stay a different file.
        "notes-été.txt".as_bytes().to_vec(),
        LATIN1.to_vec(),
        b"notes-zz.txt".to_vec(),
        // Longer than a tar header's 100 bytes, not UTF-8 from its first byte.
        [b"\xe9".as_slice(), &[b'x'; 120]].concat(),
        b"pg_log/a.log".to_vec(),
        [b"pg_log/".as_slice(), LATIN1].concat(),
        b"pg_log/\xff\xfe.log".to_vec(),
        b"pg_log/z.log".to_vec(),
        b"r\xe9sum\xe9s/inside".to_vec(),
        // Longer than a tar header's 100 bytes.
        [b"r\xe9sum\xe9s/".as_slice(), &b"long-\xe9".repeat(30)].concat(),
    ]
}

/// The contents of these directories are left out of a base backup (the
/// directories themselves are kept).
const EMPTIED: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
/// Left out of a base backup, or written by restore.
const NOT_CARRIED: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "recovery.signal",
    "standby.signal",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
}

/// Every directory and file below `root` that a backup carries, by the
/// bytes of its path relative to `root`.
fn tree(root: &Path) -> BTreeMap<Vec<u8>, Kind> {
    let mut out = BTreeMap::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(OsStr::from_bytes(&rel));
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = e.file_name();
            let name = name.as_bytes();
            let path = if rel.is_empty() {
                name.to_vec()
            } else {
                [rel.as_slice(), b"/", name].concat()
            };
            let text = String::from_utf8_lossy(&path).into_owned();
            if e.file_type().unwrap().is_dir() {
                out.insert(path.clone(), Kind::Dir);
                let emptied = EMPTIED.contains(&text.as_str()) || text.starts_with("pg_wal/");
                if !emptied {
                    stack.push(path);
                }
            } else if !NOT_CARRIED.contains(&text.as_str())
                && !String::from_utf8_lossy(name).starts_with("pg_internal.init")
            {
                out.insert(path, Kind::File);
            }
        }
    }
    out
}

fn show(path: &[u8]) -> String {
    path.escape_ascii().to_string()
}

fn names_carried(name: &str, major: u32, backend: Backend) {
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new(name);
    let repo = TestRepo::new(&scratch, backend);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    for d in extra_dirs() {
        let p = cluster.pgdata.join(OsStr::from_bytes(&d));
        std::fs::create_dir(&p).unwrap();
        chown_to_postgres(&p);
    }
    for (i, f) in extra_files().iter().enumerate() {
        let p = cluster.pgdata.join(OsStr::from_bytes(f));
        std::fs::write(&p, format!("file {i}: {}\n", show(f)).repeat(i + 1)).unwrap();
        chown_to_postgres(&p);
    }
    // Files not changed since before the backup began must come back
    // identical; the others are repaired by WAL replay. (Sleeping past the
    // file system's coarse clock keeps later changes after `unchanged_before`.)
    let unchanged_before = SystemTime::now();
    std::thread::sleep(Duration::from_millis(100));

    let args = |rest: &[&str]| -> Vec<String> {
        ["--repo", &repo.url, "--cluster", "main"]
            .iter()
            .chain(rest)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |rest: &[&str]| {
        let a = args(rest);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        pgproof(&a, &repo.pg_env(), None)
    };
    let out = run(&["backup-push", cluster.pgdata.to_str().unwrap(), "--fast"]);
    assert_exit(&out, 0);
    let backup = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let dest = scratch.path.join("restored");
    let out = run(&[
        "restore",
        dest.to_str().unwrap(),
        "--target-immediate",
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);

    // Names: the same set, byte for byte.
    let source = tree(&cluster.pgdata);
    let restored = tree(&dest);
    let missing: Vec<String> = source
        .keys()
        .filter(|k| !restored.contains_key(*k))
        .map(|k| show(k))
        .collect();
    let added: Vec<String> = restored
        .keys()
        .filter(|k| !source.contains_key(*k))
        .map(|k| show(k))
        .collect();
    assert!(
        missing.is_empty() && added.is_empty(),
        "missing from the restore: {missing:?}; not in the source: {added:?}"
    );
    for f in extra_files() {
        assert_eq!(restored.get(&f), Some(&Kind::File), "{}", show(&f));
    }
    for d in extra_dirs() {
        assert_eq!(restored.get(&d), Some(&Kind::Dir), "{}", show(&d));
    }
    // Contents: every file the server did not touch since the backup began.
    let mut compared = 0;
    for (path, kind) in &source {
        let src = cluster.pgdata.join(OsStr::from_bytes(path));
        let modified = std::fs::metadata(&src).unwrap().modified().unwrap();
        // restore appends its recovery settings there.
        if *kind == Kind::Dir || modified >= unchanged_before || path == b"postgresql.auto.conf" {
            continue;
        }
        let back = std::fs::read(dest.join(OsStr::from_bytes(path))).unwrap();
        assert!(
            back == std::fs::read(&src).unwrap(),
            "{} differs from the source",
            show(path)
        );
        compared += 1;
    }
    assert!(compared > 100, "only {compared} files compared");

    // verify, backup-list and a delete dry run read the manifest.
    let out = run(&["verify"]);
    assert_exit(&out, 0);
    let out = run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], backup.as_str());
    assert_exit(&run(&["delete", "retain", "1"]), 0);

    // The restored server starts and has the data.
    let mut server = Cluster::restored(&scratch, "restored", major, dest);
    server.env = repo.env.clone();
    server.start();
    server.wait_promoted(Duration::from_secs(90));
    assert_eq!(server.query_one("SELECT count(*)::text FROM t"), "1000");

    // A second backup; deleting the first reads both manifests.
    let out = run(&["backup-push", cluster.pgdata.to_str().unwrap(), "--fast"]);
    assert_exit(&out, 0);
    let out = run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    let out = run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_ne!(list[0]["name"], backup.as_str());
    assert_exit(&run(&["verify"]), 0);
}

#[test]
fn names_that_are_not_utf8_are_carried_pg15() {
    names_carried("names-15", 15, Backend::File);
}

#[test]
fn names_that_are_not_utf8_are_carried_pg13() {
    names_carried("names-13", 13, Backend::File);
}

#[test]
fn names_that_are_not_utf8_are_carried_pg18() {
    names_carried("names-18", 18, Backend::File);
}

#[test]
fn names_that_are_not_utf8_are_carried_over_s3_pg15() {
    names_carried("names-15-s3", 15, Backend::S3);
}

#[test]
fn names_that_are_not_utf8_are_carried_over_azure_pg17() {
    names_carried("names-17-azure", 17, Backend::Azure);
}

#[test]
fn a_manifest_naming_a_directory_outside_the_restore_is_refused_before_anything_is_written() {
    if !wants_major(15) {
        return;
    }
    let scratch = Scratch::new("names-crafted");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "source", 15);
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    let base = ["--repo", repo.url.as_str(), "--cluster", "main"];
    let run = |rest: &[&str]| {
        let args: Vec<&str> = base.iter().chain(rest).copied().collect();
        pgproof(&args, &repo.pg_env(), None)
    };
    let out = run(&["backup-push", cluster.pgdata.to_str().unwrap(), "--fast"]);
    assert_exit(&out, 0);

    // Rewritten with a valid checksum: as if crafted by someone with write
    // access to the repository, or written by a faulty tool.
    let manifest = files_under(repo.dir.as_ref().unwrap())
        .into_iter()
        .find(|p| file_name(p) == "manifest.json")
        .unwrap();
    let mut doc: serde_json::Value =
        pgproof::repo::document::decode(&std::fs::read(&manifest).unwrap(), "manifest").unwrap();
    let escaped: &[u8] = b"../\xe9scaped";
    let dirs = doc["directories"].as_array_mut().unwrap();
    dirs.push(serde_json::json!({
        "path_hex": hex(escaped), "tablespace": null, "mode": 448
    }));
    std::fs::write(&manifest, pgproof::repo::document::encode(&doc).unwrap()).unwrap();

    let dest = scratch.path.join("restored");
    let out = run(&["restore", dest.to_str().unwrap()]);
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains(r"../\xE9scaped") && err.contains("`..`"),
        "{err}"
    );
    assert!(!dest.exists(), "nothing is created");
    assert!(!scratch.path.join(OsStr::from_bytes(b"\xe9scaped")).exists());

    let out = run(&["verify"]);
    assert_exit(&out, 6);
    let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(text.contains(r"../\xE9scaped"), "{text}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
