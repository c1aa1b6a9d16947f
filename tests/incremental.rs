//! Incremental backups (issue 13) with real clusters: a chain taken across
//! updates, deletes, a rewritten table, a dropped and a created database, a
//! new tablespace, a truncation and a relation whose tail VACUUM cut off,
//! each incremental restored to the end of its backup holding exactly what
//! the cluster held; a damaged or missing parent named by restore, verify
//! and prove; `delete` never taking a backup a kept one rests on; and how
//! the type of a backup is chosen (`--full`, `--incremental`,
//! `PGPROOF_BACKUP_TYPE`, `PGPROOF_FULL_EVERY`).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// How long a restored server may take to come up or promote.
const SERVER_WAIT: Duration = Duration::from_secs(120);
const MARKER: &str = ".pgproof-restore-in-progress";

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn out_text(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// `backup-push --fast` of `cluster` with `flags` and, besides the
/// repository's, the environment `extra`. Waits first: backup names are
/// whole seconds.
fn push(repo: &TestRepo, cluster: &Cluster, flags: &[&str], extra: &[(&str, &str)]) -> Output {
    std::thread::sleep(Duration::from_millis(1100));
    let pgdata = cluster.pgdata.to_str().unwrap();
    let mut args = vec![
        "--repo",
        repo.url.as_str(),
        "--cluster",
        "main",
        "backup-push",
        pgdata,
        "--fast",
    ];
    args.extend_from_slice(flags);
    let mut env = repo.pg_env();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pgproof(&args, &env, None)
}

/// The name a successful backup-push printed.
fn pushed(out: &Output) -> String {
    assert_exit(out, 0);
    stdout(out).trim().to_string()
}

/// `backup-push --incremental`, which must rest on `parent` and say so.
fn incremental_on(repo: &TestRepo, cluster: &Cluster, parent: &str) -> String {
    let out = push(repo, cluster, &["--incremental"], &[]);
    let name = pushed(&out);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("backup {name} of main complete"))
            && err.contains(&format!("incremental on {parent}")),
        "the last line names the parent:\n{err}"
    );
    name
}

fn list(repo: &TestRepo) -> Vec<Value> {
    let out = repo.run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(rows: &'a [Value], name: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {rows:#?}"))
}

/// `chain` is the backups, full first, that `chain.last()` is made of: its
/// row says so, with its type, its parent and the stored size of them all.
#[track_caller]
fn assert_chain(rows: &[Value], chain: &[String]) {
    let name = chain.last().unwrap();
    let r = row(rows, name);
    let (kind, parent) = match chain {
        [_] => ("full", Value::Null),
        [.., parent, _] => ("incremental", Value::from(parent.as_str())),
        [] => unreachable!(),
    };
    assert_eq!(r["type"], kind, "{r:#}");
    assert_eq!(r["parent"], parent, "{r:#}");
    assert_eq!(r["chain"], Value::from(chain.to_vec()), "{r:#}");
    let stored: u64 = chain
        .iter()
        .map(|n| row(rows, n)["stored_size"].as_u64().unwrap())
        .sum();
    assert_eq!(r["chain_stored_size"], stored, "{r:#}");
}

/// A client of database `db`.
fn connect(c: &Cluster, db: &str) -> postgres::Client {
    postgres::Config::new()
        .host_path(&c.socket_dir)
        .port(c.port)
        .user("postgres")
        .dbname(db)
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {db} on port {}: {e}", c.port))
}

/// The first column of every row a query returned.
fn column(client: &mut postgres::Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
        .collect()
}

/// Statements run in database `db`, one at a time: VACUUM and CREATE
/// DATABASE refuse the implicit transaction of several in one query.
fn execute_in(c: &Cluster, db: &str, statements: &[&str]) {
    let mut client = connect(c, db);
    for s in statements {
        client
            .batch_execute(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

/// What the cluster holds: its databases and, in each, every user table's
/// row count, a digest of its rows and the size of its main fork (rows
/// that VACUUM cut off would come back as dead tuples no count sees).
type Contents = BTreeMap<String, String>;

fn contents(c: &Cluster) -> Contents {
    let mut out = Contents::new();
    let databases = column(
        &mut c.client(),
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
    );
    for db in databases {
        let mut client = connect(c, &db);
        let tables = column(
            &mut client,
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
        );
        out.insert(db.clone(), format!("{} tables", tables.len()));
        for t in tables {
            let digest = column(
                &mut client,
                &format!(
                    "SELECT count(*) || ' rows ' \
                     || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '-') \
                     || ' ' || pg_relation_size('{t}') || ' bytes' FROM {t} t"
                ),
            );
            out.insert(format!("{db}.{t}"), digest.concat());
        }
    }
    out
}

/// Restores `backup` to its end (`--target-immediate`), the tablespace
/// `tablespace` (its OID) beside it, and starts it promoted.
fn restore_and_start(
    scratch: &Scratch,
    repo: &TestRepo,
    major: u32,
    backup: &str,
    dir: &str,
    tablespace: Option<&str>,
) -> Cluster {
    let dest = scratch.path.join(dir);
    let mapping =
        tablespace.map(|oid| format!("{oid}={}", scratch.path.join(format!("{dir}-ts")).display()));
    let mut args = vec![
        "restore",
        dest.to_str().unwrap(),
        "--backup",
        backup,
        "--target-immediate",
        "--target-action",
        "promote",
    ];
    if let Some(m) = &mapping {
        args.extend(["--tablespace", m.as_str()]);
    }
    let out = repo.run(&args);
    assert_exit(&out, 0);
    let restored = Cluster::restored(scratch, dir, major, dest);
    restored.start();
    restored.wait_promoted(SERVER_WAIT);
    restored
}

/// `prove --backup backup` with the server binaries of `major`, in a
/// scratch directory of its own, with `extra` arguments.
fn prove(scratch: &Scratch, repo: &TestRepo, major: u32, backup: &str, extra: &[&str]) -> Output {
    let bindir = pg_bin(major).display().to_string();
    let prove_scratch = scratch.dir("prove-scratch").display().to_string();
    let mut args = vec![
        "--repo",
        repo.url.as_str(),
        "--cluster",
        "main",
        "--pg-bindir",
        &bindir,
        "prove",
        "--scratch",
        &prove_scratch,
        "--backup",
        backup,
    ];
    args.extend_from_slice(extra);
    pgproof(&args, &repo.env, None)
}

/// What a failed restore left cannot pass for a data directory: no
/// pg_control, and anything written is marked as an unfinished restore.
#[track_caller]
fn assert_unusable(dest: &Path) {
    assert!(
        !dest.join("global/pg_control").exists(),
        "pg_control is in place in {}",
        dest.display()
    );
    let empty = std::fs::read_dir(dest).map_or(true, |mut d| d.next().is_none());
    assert!(
        empty || dest.join(MARKER).is_file(),
        "{} holds data without the marker",
        dest.display()
    );
}

/// Whether a file or directory that should be gone holds anything: a
/// dropped relation's first segment may stay, emptied, until a checkpoint.
fn holds_data(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(_) => false,
        Ok(m) => m.is_dir() || m.len() > 0,
    }
}

/// The two majors the whole story runs on: 15 and 17 when both are
/// selected, else the oldest and the newest selected.
fn two_majors() -> Vec<u32> {
    let selected = majors();
    if selected.contains(&15) && selected.contains(&17) {
        return vec![15, 17];
    }
    let mut pair: Vec<u32> = selected
        .first()
        .into_iter()
        .chain(selected.last())
        .copied()
        .collect();
    pair.dedup();
    pair
}

/// One backup of the story and what the cluster held when it was taken.
struct Taken {
    step: &'static str,
    name: String,
    contents: Contents,
    /// The tablespace's OID, once there is one.
    tablespace: Option<String>,
    /// Relative paths of what was dropped or rewritten before the backup.
    gone: Vec<String>,
}

/// The backups of the story so far, and what the next one must not bring back.
#[derive(Default)]
struct Story {
    backups: Vec<Taken>,
    /// Relative paths of what was dropped or rewritten so far.
    gone: Vec<String>,
    /// The tablespace's OID, once there is one.
    tablespace: Option<String>,
}

impl Story {
    /// Records backup `name` with what `cluster` holds now.
    fn taken(&mut self, cluster: &Cluster, step: &'static str, name: String) {
        self.backups.push(Taken {
            step,
            name,
            contents: contents(cluster),
            tablespace: self.tablespace.clone(),
            gone: self.gone.clone(),
        });
    }

    fn newest(&self) -> &str {
        &self.backups.last().unwrap().name
    }
}

#[test]
fn incremental_backups_restore_what_the_cluster_held() {
    for major in two_majors() {
        incremental_story(major);
    }
}

fn incremental_story(major: u32) {
    let scratch = Scratch::new(&format!("incremental-{major}"));
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    // Autovacuum would change blocks between backups on its own schedule.
    execute_in(
        &cluster,
        "postgres",
        &[
            "ALTER SYSTEM SET autovacuum = off",
            "SELECT pg_reload_conf()",
        ],
    );
    // Tables of a few hundred blocks each, so that a change is some blocks
    // of a file, not the file.
    execute_in(
        &cluster,
        "postgres",
        &[
            "CREATE TABLE accounts (id int PRIMARY KEY, balance bigint, owner text);
             INSERT INTO accounts SELECT g, g * 10, md5(g::text) FROM generate_series(1, 30000) g;
             CREATE TABLE events (id int PRIMARY KEY, payload text);
             INSERT INTO events SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 20000) g;
             CREATE TABLE history (id int, note text);
             INSERT INTO history SELECT g, md5((g * 3)::text) FROM generate_series(1, 20000) g;
             CREATE TABLE shrinking (id int, filler text);
             INSERT INTO shrinking SELECT g, md5((g * 7)::text) FROM generate_series(1, 20000) g;",
            "CREATE DATABASE app",
        ],
    );
    execute_in(
        &cluster,
        "app",
        &[
            "CREATE TABLE orders (id int PRIMARY KEY, item text);
             INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
            // Hint bits set now, not by the first reader after the full
            // backup: those pages would count as changed.
            "VACUUM (FREEZE, ANALYZE)",
        ],
    );
    execute_in(&cluster, "postgres", &["VACUUM (FREEZE, ANALYZE)"]);
    let app_oid = cluster.query_one("SELECT oid::text FROM pg_database WHERE datname = 'app'");

    let mut story = Story::default();
    // Nothing is written between a backup and reading what it holds.
    let full = repo.backup(&cluster);
    story.taken(&cluster, "full", full);

    // (a) A few rows updated: a few blocks of a table and its index.
    cluster.execute("UPDATE accounts SET balance = balance + 1 WHERE id <= 300");
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "updates", name);

    // (b) Rows deleted.
    cluster.execute("DELETE FROM history WHERE id % 3 = 0");
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "deletes", name);

    // (c) A table rewritten into a new relfilenode; the old file goes.
    let old_accounts = cluster.query_one("SELECT pg_relation_filepath('accounts')");
    execute_in(&cluster, "postgres", &["VACUUM FULL accounts"]);
    let new_accounts = cluster.query_one("SELECT pg_relation_filepath('accounts')");
    assert_ne!(
        old_accounts, new_accounts,
        "VACUUM FULL kept the relfilenode"
    );
    story.gone.push(old_accounts);
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "vacuum full", name);

    // (d) A database dropped, another created with a table.
    execute_in(
        &cluster,
        "postgres",
        &["DROP DATABASE app", "CREATE DATABASE shop"],
    );
    execute_in(
        &cluster,
        "shop",
        &["CREATE TABLE items (id int PRIMARY KEY, label text);
           INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5000) g;"],
    );
    story.gone.push(format!("base/{app_oid}"));
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "databases", name);

    // (e) A new tablespace, with a table in it.
    let location = scratch.dir("ts-source");
    execute_in(
        &cluster,
        "postgres",
        &[
            &format!("CREATE TABLESPACE far LOCATION '{}'", location.display()),
            "CREATE TABLE remote (id int, v text) TABLESPACE far;
             INSERT INTO remote SELECT g, md5((g * 11)::text) FROM generate_series(1, 20000) g;",
        ],
    );
    story.tablespace =
        Some(cluster.query_one("SELECT oid::text FROM pg_tablespace WHERE spcname = 'far'"));
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "tablespace", name);

    // (f) A table truncated (a new, empty relfilenode), the tail of another
    // cut off by VACUUM, and a few blocks in the tablespace changed.
    let old_events = cluster.query_one("SELECT pg_relation_filepath('events')");
    let long = cluster.query_one("SELECT pg_relation_size('shrinking')::text");
    execute_in(
        &cluster,
        "postgres",
        &[
            "TRUNCATE events",
            "DELETE FROM shrinking WHERE id > 5000",
            "VACUUM shrinking",
            "UPDATE remote SET v = 'changed' WHERE id <= 50",
        ],
    );
    let short = cluster.query_one("SELECT pg_relation_size('shrinking')::text");
    assert!(
        short.parse::<u64>().unwrap() < long.parse::<u64>().unwrap(),
        "VACUUM did not truncate shrinking ({long} -> {short} bytes)"
    );
    story.gone.push(old_events);
    let name = incremental_on(&repo, &cluster, story.newest());
    story.taken(&cluster, "truncations", name);
    let taken = story.backups;

    // backup-list: every backup is its chain's newest, full first.
    let names: Vec<String> = taken.iter().map(|t| t.name.clone()).collect();
    let rows = list(&repo);
    assert_eq!(rows.len(), names.len(), "{rows:#?}");
    for i in 0..names.len() {
        assert_chain(&rows, &names[..=i]);
    }
    let full_row = row(&rows, &names[0]);
    let updates_row = row(&rows, &names[1]);
    let (full_stored, updates_stored) = (
        full_row["stored_size"].as_u64().unwrap(),
        updates_row["stored_size"].as_u64().unwrap(),
    );
    assert!(
        updates_stored * 2 < full_stored,
        "{major}: the incremental after a few updates stored {updates_stored} bytes, the full {full_stored}"
    );
    // `size` stays what a restore writes: the whole cluster.
    assert!(
        updates_row["size"].as_u64().unwrap() > full_row["size"].as_u64().unwrap() / 2,
        "{updates_row:#}"
    );
    let out = repo.run(&["backup-list"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_default()
    };
    assert!(
        line(&names[0]).contains("full")
            && line(&names[1]).contains("incr")
            && line(&names[1]).contains(names[0].as_str()),
        "the text shows the type and the parent:\n{text}"
    );

    // Each incremental, composed from its chain, holds what the cluster held.
    for (i, t) in taken.iter().enumerate().skip(1) {
        let dir = format!("restored-{i}");
        let restored = restore_and_start(
            &scratch,
            &repo,
            major,
            &t.name,
            &dir,
            t.tablespace.as_deref(),
        );
        assert_eq!(
            contents(&restored),
            t.contents,
            "{major}: backup {} after {} restored something else\n{}",
            t.name,
            t.step,
            restored.server_log()
        );
        for path in &t.gone {
            assert!(
                !holds_data(&restored.pgdata.join(path)),
                "{major}: {path}, gone before backup {} ({}), came back from its parent",
                t.name,
                t.step
            );
        }
        restored.stop();
    }
}

#[test]
fn a_damaged_or_missing_parent_is_named() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("incremental-parent");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 30000) g;",
    );
    cluster.execute("VACUUM FREEZE t");
    let full = pushed(&push(&repo, &cluster, &["--full"], &[]));
    cluster.execute("UPDATE t SET v = 'changed' WHERE id <= 100");
    let incremental = incremental_on(&repo, &cluster, &full);
    let want = contents(&cluster);

    let full_dir = files_under(repo.dir.as_ref().unwrap())
        .into_iter()
        .find(|p| {
            file_name(p) == "manifest.json" && p.parent().map(file_name) == Some(full.as_str())
        })
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .expect("the full backup's directory");
    let part = full_dir.join("part-00001.tar.zst");
    let original = std::fs::read(&part).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&part, &bytes).unwrap();

    // restore: corrupt, naming the parent and its part; nothing startable left.
    let dest = scratch.path.join("from-damaged-parent");
    let out = repo.run(&["restore", dest.to_str().unwrap(), "--backup", &incremental]);
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains(&full) && err.contains("part-00001.tar.zst"),
        "the parent and its part are named:\n{err}"
    );
    assert_unusable(&dest);

    // verify: of everything, and of the incremental alone, which needs it.
    for args in [
        vec!["verify"],
        vec!["verify", "--backup", incremental.as_str()],
    ] {
        let out = repo.run(&args);
        assert_exit(&out, 6);
        let text = out_text(&out);
        assert!(
            text.contains(&full) && text.contains("part-00001"),
            "{args:?} names the parent's part:\n{text}"
        );
    }

    // prove: not proven, the restore failing on the parent's part.
    let out = prove(&scratch, &repo, major, &incremental, &[]);
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(
        err.contains("NOT proven: restore failed")
            && err.contains(&full)
            && err.contains("part-00001"),
        "{err}"
    );

    // The part repaired, the parent's manifest gone instead.
    std::fs::write(&part, &original).unwrap();
    let manifest = full_dir.join("manifest.json");
    let aside = scratch.path.join("manifest.json.aside");
    std::fs::rename(&manifest, &aside).unwrap();
    let dest = scratch.path.join("from-missing-parent");
    let out = repo.run(&["restore", dest.to_str().unwrap(), "--backup", &incremental]);
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains(&full) && err.contains("manifest"),
        "the missing parent is named:\n{err}"
    );
    assert_unusable(&dest);
    let out = repo.run(&["verify", "--backup", &incremental]);
    assert_exit(&out, 6);
    assert!(out_text(&out).contains(&full), "{}", out_text(&out));

    // Put back, the chain restores whole: the failures were the parent's.
    std::fs::rename(&aside, &manifest).unwrap();
    let restored = restore_and_start(&scratch, &repo, major, &incremental, "restored", None);
    assert_eq!(contents(&restored), want, "{}", restored.server_log());
}

/// `delete --json`'s decision for each backup: (action, reason code).
fn decisions(out: &Output) -> BTreeMap<String, (String, String)> {
    assert_exit(out, 0);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                (
                    b["action"].as_str().unwrap().to_string(),
                    b["reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

/// The stored objects of backup `name` in a repository snapshot.
fn objects_of(snapshot: &BTreeMap<String, String>, name: &str) -> BTreeMap<String, String> {
    snapshot
        .iter()
        .filter(|(k, _)| k.contains(&format!("/{name}/")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_chain_of_seven_survives_delete() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("incremental-delete");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE t (id serial PRIMARY KEY, v text);
         INSERT INTO t (v) SELECT md5(g::text) FROM generate_series(1, 20000) g;",
    );
    cluster.execute("VACUUM FREEZE t");
    let step = || cluster.execute("INSERT INTO t (v) SELECT 'step' FROM generate_series(1, 100)");

    // A full and seven incrementals, each on the one before.
    let mut a = vec![repo.backup(&cluster)];
    for _ in 0..7 {
        step();
        let parent = a.last().unwrap().clone();
        a.push(incremental_on(&repo, &cluster, &parent));
    }
    let rows = list(&repo);
    assert_eq!(names(&rows), a);
    for i in 0..a.len() {
        assert_chain(&rows, &a[..=i]);
    }

    // Before its fourth incremental: the full and the first three are
    // older, and the newest needs every one of them.
    let before = repo.snapshot();
    let out = repo.run(&["delete", "before", &a[4]]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for needed in &a[..4] {
        let line = text
            .lines()
            .find(|l| {
                l.split_once("backup ")
                    .is_some_and(|(_, rest)| rest.starts_with(needed.as_str()))
            })
            .unwrap_or_else(|| panic!("{needed} is not in the plan:\n{text}"));
        assert!(
            line.trim_start().starts_with("keep") && line.contains("needed by "),
            "{needed} is kept because it is needed:\n{text}"
        );
    }
    let out = repo.run(&["delete", "before", &a[4], "--confirm", "--json"]);
    let plan = decisions(&out);
    for (i, name) in a.iter().enumerate() {
        let (action, reason) = &plan[name];
        assert_eq!(action, "keep", "{name}: {plan:?}");
        if i < 4 {
            assert_eq!(reason, "needed", "{name}: {plan:?}");
        }
    }
    assert_eq!(
        names(&list(&repo)),
        a,
        "a backup a kept one rests on was deleted"
    );
    let after = repo.snapshot();
    for name in &a {
        assert!(
            !objects_of(&before, name).is_empty(),
            "{name} has no objects"
        );
        assert_eq!(
            objects_of(&after, name),
            objects_of(&before, name),
            "objects of {name} were deleted or changed"
        );
    }

    // A second full and an incremental on it.
    step();
    let b = pushed(&push(&repo, &cluster, &["--full"], &[]));
    step();
    let b1 = incremental_on(&repo, &cluster, &b);
    let want = contents(&cluster);
    let rows = list(&repo);
    assert_chain(&rows, std::slice::from_ref(&b));
    assert_chain(&rows, &[b.clone(), b1.clone()]);
    assert_chain(&rows, &a);

    // retain 1 counts fulls: the newest chain stays, the older goes whole.
    let before = repo.snapshot();
    let out = repo.run(&["delete", "retain", "1"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    for name in &a {
        assert!(text.contains(&format!("delete backup {name}")), "{text}");
    }
    for name in [&b, &b1] {
        assert!(text.contains(&format!("keep   backup {name}")), "{text}");
    }
    let plan = decisions(&repo.run(&["delete", "retain", "1", "--json"]));
    for name in &a {
        assert_eq!(plan[name].0, "delete", "{name}: {plan:?}");
    }
    for name in [&b, &b1] {
        assert_eq!(plan[name].0, "keep", "{name}: {plan:?}");
    }
    assert_eq!(repo.snapshot(), before, "a dry run changed the repository");

    let out = repo.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert_eq!(names(&list(&repo)), [b.clone(), b1.clone()]);
    let left = repo.snapshot();
    for name in &a {
        assert!(
            objects_of(&left, name).is_empty(),
            "objects of {name} are left"
        );
    }
    let out = repo.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("verified 2 backups"),
        "{}",
        stdout(&out)
    );

    // The newest incremental restores and proves. Nothing is written after
    // it, so replaying to the end of the archive changes nothing.
    let restored = restore_and_start(&scratch, &repo, major, &b1, "restored", None);
    assert_eq!(contents(&restored), want, "{}", restored.server_log());
    restored.stop();
    let expected = cluster.query_one(
        "SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM t",
    );
    let out = prove(
        &scratch,
        &repo,
        major,
        &b1,
        &[
            "--sql",
            "SELECT count(*) || ' ' || md5(string_agg(t::text, ',' ORDER BY t::text)) FROM t",
            "--expect",
            &expected,
        ],
    );
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("backup {b1} of main proven")),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(row(&list(&repo), &b1)["proof"]["succeeded"], true);
}

#[test]
fn full_and_incremental_flags_and_setting() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("incremental-setting");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 20000) g",
    );
    let step = || cluster.execute("INSERT INTO t SELECT g, 'more' FROM generate_series(1, 100) g");

    // Both flags: a usage error (README: exit 2), nothing stored.
    let before = repo.snapshot();
    let out = push(&repo, &cluster, &["--full", "--incremental"], &[]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("--full") && err.contains("--incremental"),
        "{err}"
    );
    // A type that is neither: a bad setting, named.
    let out = push(&repo, &cluster, &[], &[("PGPROOF_BACKUP_TYPE", "weekly")]);
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("weekly"), "{}", stderr(&out));
    assert_eq!(
        repo.snapshot(),
        before,
        "a refused backup-push stored something"
    );

    // Nothing to rest on: a full, and why.
    let out = push(&repo, &cluster, &["--incremental"], &[]);
    let first = pushed(&out);
    assert!(
        stderr(&out).contains("taking a full backup"),
        "{}",
        stderr(&out)
    );
    let mut chain = vec![first.clone()];
    assert_chain(&list(&repo), &chain);

    // The setting makes a plain backup-push incremental...
    step();
    let incremental = [("PGPROOF_BACKUP_TYPE", "incremental")];
    let second = pushed(&push(&repo, &cluster, &[], &incremental));
    chain.push(second);
    assert_chain(&list(&repo), &chain);

    // ...and --full overrides it,
    step();
    let third = pushed(&push(&repo, &cluster, &["--full"], &incremental));
    assert_chain(&list(&repo), std::slice::from_ref(&third));
    // as --incremental overrides a setting of full.
    step();
    let fourth = pushed(&push(
        &repo,
        &cluster,
        &["--incremental"],
        &[("PGPROOF_BACKUP_TYPE", "full")],
    ));
    assert_chain(&list(&repo), &[third.clone(), fourth.clone()]);

    // full_every: from the setting, a chain whose full started longer ago
    // than that gets a new full; a flag is taken as asked.
    step();
    let overdue = [
        ("PGPROOF_BACKUP_TYPE", "incremental"),
        ("PGPROOF_FULL_EVERY", "1s"),
    ];
    let fifth = pushed(&push(&repo, &cluster, &[], &overdue));
    assert_chain(&list(&repo), std::slice::from_ref(&fifth));
    step();
    let sixth = pushed(&push(&repo, &cluster, &["--incremental"], &overdue));
    assert_chain(&list(&repo), &[fifth.clone(), sixth.clone()]);
    step();
    let recent = [
        ("PGPROOF_BACKUP_TYPE", "incremental"),
        ("PGPROOF_FULL_EVERY", "1d"),
    ];
    let seventh = pushed(&push(&repo, &cluster, &[], &recent));
    chain = vec![fifth, sixth, seventh];
    assert_chain(&list(&repo), &chain);

    // The configuration file's backup_type, under the environment's.
    let config = scratch.path.join("pgproof.toml");
    std::fs::write(&config, "backup_type = \"incremental\"\n").unwrap();
    let with_file = ["--config", config.to_str().unwrap()];
    step();
    chain.push(pushed(&push(&repo, &cluster, &with_file, &[])));
    assert_chain(&list(&repo), &chain);
    step();
    let full = pushed(&push(
        &repo,
        &cluster,
        &with_file,
        &[("PGPROOF_BACKUP_TYPE", "full")],
    ));
    assert_chain(&list(&repo), &[full]);
    assert_eq!(list(&repo).len(), 9);
}

/// A cluster restored from an incremental and promoted (a new timeline,
/// the same system) goes on archiving into the same prefix and takes the
/// next incremental on the backup it came from. Its files are what the
/// restore wrote, then changed by recovery, promotion and new writes on
/// another timeline, none of which moves a page LSN past the parent's in
/// any way an LSN rule could trust: compared by content, the next
/// incremental restores to exactly what the promoted cluster holds.
#[test]
fn a_restored_and_promoted_cluster_continues_the_chain() {
    let major = 15;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("incremental-promoted");
    let repo = TestRepo::new(&scratch, Backend::File);
    let source = Cluster::archiving_into(&scratch, &repo, major);
    execute_in(
        &source,
        "postgres",
        &["CREATE TABLE accounts (id int PRIMARY KEY, balance bigint);
             INSERT INTO accounts SELECT g, g FROM generate_series(1, 30000) g;"],
    );
    let full = pushed(&push(&repo, &source, &["--full"], &[]));
    execute_in(
        &source,
        "postgres",
        &["UPDATE accounts SET balance = balance + 1 WHERE id <= 3000"],
    );
    let first = incremental_on(&repo, &source, &full);
    source.stop();

    // Restored with archiving as the backup had it: the promoted cluster
    // archives timeline 2 into the same prefix.
    let dest = scratch.path.join("promoted");
    let out = repo.run(&[
        "restore",
        dest.to_str().unwrap(),
        "--backup",
        &first,
        "--target-immediate",
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);
    let mut promoted = Cluster::restored_archiving(&scratch, "promoted", major, dest, true);
    promoted.env = repo.env.clone();
    promoted.start();
    promoted.wait_promoted(SERVER_WAIT);
    assert_eq!(
        promoted.query_one("SELECT timeline_id FROM pg_control_checkpoint()"),
        "2"
    );
    execute_in(
        &promoted,
        "postgres",
        &[
            "DELETE FROM accounts WHERE id > 29000",
            "VACUUM accounts",
            "UPDATE accounts SET balance = -balance WHERE id % 97 = 0",
            "CREATE TABLE born_on_two AS SELECT g AS id FROM generate_series(1, 5000) g",
        ],
    );
    let second = incremental_on(&repo, &promoted, &first);
    let want = contents(&promoted);
    assert_chain(&list(&repo), &[full.clone(), first.clone(), second.clone()]);

    let restored = restore_and_start(&scratch, &repo, major, &second, "again", None);
    assert_eq!(contents(&restored), want, "the promoted cluster, restored");
    restored.stop();
    promoted.stop();
    let out = repo.run(&["verify"]);
    assert_exit(&out, 0);
}
