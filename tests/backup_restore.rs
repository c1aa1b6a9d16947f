//! Base backups and point-in-time restores with real clusters: backup-push
//! while the cluster works, a mistake, then restore to just before it with
//! every kind of target; the multi-cluster host that started it all; and
//! what restore refuses.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a restored server may take to come up or promote.
const SERVER_WAIT: Duration = Duration::from_secs(90);

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, SERVER_WAIT, done)
}

/// A cluster archiving into a repository, with a table `keep` of 1000 rows
/// backed up, then 500 more rows, then the table dropped.
struct Story {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    backup: String,
    time: String,
    lsn: String,
    xid: String,
}

fn story(name: &str, major: u32, backend: Backend) -> Story {
    let scratch = Scratch::new(name);
    let repo = TestRepo::new(&scratch, backend);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    cluster.execute(
        "CREATE TABLE keep AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g",
    );

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
        &repo.pg_env(),
        None,
    );
    assert_exit(&out, 0);
    let backup = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = stderr(&out);
    assert!(
        err.contains(&cluster.system_identifier()) && err.contains("postmaster.pid"),
        "the banner names the cluster and how it was found:\n{err}"
    );

    let xid = cluster.query_one("BEGIN; INSERT INTO keep SELECT g, 'after' FROM generate_series(1001, 1500) g; SELECT txid_current()::text; COMMIT;");
    let xid = if xid.is_empty() {
        cluster.query_one("SELECT xmin::text FROM keep WHERE id = 1500")
    } else {
        xid
    };
    let lsn = cluster.query_one("SELECT pg_current_wal_lsn()::text");
    let time = cluster.query_one("SELECT now()::text");
    cluster.query_one("SELECT pg_create_restore_point('before_drop')::text");
    std::thread::sleep(Duration::from_millis(1100));
    cluster.execute("DROP TABLE keep");
    let last = cluster.write_and_switch(10);
    cluster.wait_archived(&last);
    Story {
        scratch,
        repo,
        cluster,
        backup,
        time,
        lsn,
        xid,
    }
}

impl Story {
    fn restore(&self, dir: &str, target: &[&str]) -> (Cluster, std::process::Output) {
        let dest = self.scratch.path.join(dir);
        let mut args = vec![
            "--repo",
            self.repo.url.as_str(),
            "--cluster",
            "main",
            "restore",
            dest.to_str().unwrap(),
        ];
        args.extend_from_slice(target);
        let out = pgproof(&args, &self.repo.env, None);
        let restored = Cluster {
            major: self.cluster.major,
            pgdata: dest,
            port: free_port(),
            socket_dir: self.scratch.dir(&format!("{dir}-sock")),
            bin: self.cluster.bin.clone(),
            log: self.scratch.path.join(format!("{dir}.log")),
            env: self.repo.env.clone(),
        };
        (restored, out)
    }

    fn restore_and_start(&self, dir: &str, target: &[&str]) -> Cluster {
        let (restored, out) = self.restore(dir, target);
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("pg_ctl"),
            "restore ends with what to run next:\n{}",
            stderr(&out)
        );
        restored.configure(&format!(
            "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\n",
            restored.port,
            restored.socket_dir.display()
        ));
        restored.start();
        wait_until("the restored server accepts queries", || {
            restored.try_query_one("SELECT 1").is_some()
        });
        restored
    }
}

fn count_keep(c: &Cluster) -> String {
    c.query_one("SELECT count(*)::text FROM keep")
}

fn pitr_by_time(major: u32, backend: Backend) {
    if !wants_major(major) {
        return;
    }
    let s = story(&format!("pitr-{major}-{backend:?}"), major, backend);
    let restored = s.restore_and_start(
        "restored",
        &["--target-time", &s.time, "--target-action", "promote"],
    );
    restored.wait_promoted(SERVER_WAIT);
    assert_eq!(count_keep(&restored), "1500", "{}", restored.server_log());
    assert_eq!(
        std::fs::read_to_string(restored.pgdata.join("PG_VERSION"))
            .unwrap()
            .trim(),
        major.to_string()
    );
    assert!(
        restored
            .server_log()
            .contains("pgproof wal-fetch: restored")
    );
    // backup-list shows it, in words and in JSON.
    let out = pgproof(
        &[
            "--repo",
            &s.repo.url,
            "--cluster",
            "main",
            "backup-list",
            "--json",
        ],
        &s.repo.env,
        None,
    );
    assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], s.backup.as_str());
    assert_eq!(list[0]["major"], major);
    assert_eq!(
        list[0]["system_identifier"],
        s.cluster.system_identifier().as_str()
    );
}

macro_rules! pitr {
    ($($test:ident: $major:expr, $backend:expr;)*) => {
        $(
            #[test]
            fn $test() {
                pitr_by_time($major, $backend);
            }
        )*
    };
}

pitr! {
    pitr_pg13: 13, Backend::File;
    pitr_pg14: 14, Backend::File;
    pitr_pg15: 15, Backend::File;
    pitr_pg16: 16, Backend::File;
    pitr_pg17: 17, Backend::File;
    pitr_pg18: 18, Backend::File;
    pitr_pg15_s3: 15, Backend::S3;
    pitr_pg17_s3: 17, Backend::S3;
    pitr_pg14_azure: 14, Backend::Azure;
}

#[test]
fn every_kind_of_target() {
    let s = story("targets", 15, Backend::File);
    let lsn_target = s.restore_and_start(
        "by-lsn",
        &["--target-lsn", &s.lsn, "--target-action", "promote"],
    );
    let xid_target = s.restore_and_start(
        "by-xid",
        &["--target-xid", &s.xid, "--target-action", "promote"],
    );
    let name_target = s.restore_and_start(
        "by-name",
        &["--target-name", "before_drop", "--target-action", "promote"],
    );
    let immediate = s.restore_and_start(
        "immediate",
        &["--target-immediate", "--target-action", "promote"],
    );
    for (c, want) in [
        (&lsn_target, "1500"),
        (&xid_target, "1500"),
        (&name_target, "1500"),
        (&immediate, "1000"),
    ] {
        c.wait_promoted(SERVER_WAIT);
        assert_eq!(count_keep(c), want, "{}", c.server_log());
    }
    // psql's format and RFC 3339 are both accepted.
    let rfc = format!("{}:00", s.time.replacen(' ', "T", 1));
    let (_, out) = s.restore("rfc", &["--target-time", &rfc]);
    assert_exit(&out, 0);
}

#[test]
fn the_non_default_port_cluster_is_the_one_backed_up() {
    let scratch = Scratch::new("two-clusters");
    let repo = TestRepo::new(&scratch, Backend::File);
    let other = other_major(15);
    let shared_sock = scratch.dir("shared-sock");
    // The default-port cluster and a second one of another major, sharing a socket directory.
    let mut default_port = Cluster::init(&scratch, "default", 15);
    default_port.socket_dir = shared_sock.clone();
    default_port.port = 5432;
    default_port.configure(&format!(
        "port = 5432\nunix_socket_directories = '{}'",
        shared_sock.display()
    ));
    default_port.start();
    default_port.execute("CREATE TABLE only_in_default (x int)");
    let mut second = Cluster::init(&scratch, "second", other);
    second.socket_dir = shared_sock.clone();
    second.configure(&format!(
        "unix_socket_directories = '{}'",
        shared_sock.display()
    ));
    second.archive_with(&format!("--repo {} --cluster second", repo.url));
    second.start();
    second.execute("CREATE TABLE only_in_second AS SELECT 42 AS answer");

    let env = vec![("PGUSER".to_string(), "postgres".to_string())];
    let before = repo.snapshot();
    // A port setting that reaches the other cluster: refused, both named, nothing stored.
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "second",
            "--pgport",
            "5432",
            "--pghost",
            shared_sock.to_str().unwrap(),
            "backup-push",
            second.pgdata.to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(&default_port.system_identifier())
            && err.contains(&second.system_identifier()),
        "{err}"
    );
    assert!(
        err.contains("--pgport") && err.contains("pg_control"),
        "where each fact came from:\n{err}"
    );
    assert_eq!(
        repo.snapshot(),
        before,
        "a refused backup changed the repository"
    );

    // Only its PGDATA, PGPORT unset: the second cluster, found through its postmaster.pid.
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "second",
            "backup-push",
            second.pgdata.to_str().unwrap(),
            "--fast",
        ],
        &env,
        None,
    );
    assert_exit(&out, 0);
    let dest = scratch.path.join("restored");
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "second",
            "restore",
            dest.to_str().unwrap(),
            "--target-immediate",
        ],
        &[],
        None,
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_to_string(dest.join("PG_VERSION"))
            .unwrap()
            .trim(),
        other.to_string()
    );
    let restored = Cluster::restored(&scratch, "restored", other, dest);
    restored.start();
    wait_until("the restored server answers", || {
        restored.try_query_one("SELECT 1").is_some()
    });
    assert_eq!(
        restored.query_one("SELECT answer::text FROM only_in_second"),
        "42"
    );
}

#[test]
fn restore_refuses_a_non_empty_destination_and_a_corrupt_part() {
    let s = story("refusals", 15, Backend::File);
    let busy = s.scratch.dir("busy");
    std::fs::write(busy.join("something"), "precious").unwrap();
    let out = pgproof(
        &[
            "--repo",
            &s.repo.url,
            "--cluster",
            "main",
            "restore",
            busy.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_exit(&out, 11);
    assert_eq!(
        std::fs::read_to_string(busy.join("something")).unwrap(),
        "precious"
    );
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);

    // Restoring over the running source is refused too.
    let out = pgproof(
        &[
            "--repo",
            &s.repo.url,
            "--cluster",
            "main",
            "restore",
            s.cluster.pgdata.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_exit(&out, 11);

    let part = find_part(s.repo.dir.as_ref().unwrap());
    let mut bytes = std::fs::read(&part).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&part, &bytes).unwrap();
    let dest = s.scratch.path.join("from-corrupt");
    let out = pgproof(
        &[
            "--repo",
            &s.repo.url,
            "--cluster",
            "main",
            "restore",
            dest.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_exit(&out, 6);
    let err = stderr(&out);
    assert!(
        err.contains(part.file_name().unwrap().to_str().unwrap()),
        "the message names the part:\n{err}"
    );
}

/// The largest stored part of any backup.
/// The paths of the files that `strace -y -e trace=fsync` saw synced.
fn synced_paths(trace: &Path) -> std::collections::HashSet<PathBuf> {
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .filter(|line| line.ends_with("= 0"))
        .filter_map(|line| {
            let call = line.split_once("fsync(")?.1;
            let path = call.split_once('<')?.1.rsplit_once(">)")?.0;
            Some(PathBuf::from(path))
        })
        .collect()
}

fn find_part(repo: &Path) -> PathBuf {
    let mut parts: Vec<PathBuf> = files_under(repo)
        .into_iter()
        .filter(|p| file_name(p).starts_with("part-"))
        .collect();
    parts.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    parts.pop().expect("a part is stored")
}

fn other_major(not: u32) -> u32 {
    majors()
        .into_iter()
        .rev()
        .find(|m| *m != not)
        .unwrap_or(not)
}

#[test]
fn tablespaces_are_stored_separately_and_restored_where_asked() {
    let scratch = Scratch::new("tablespace");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "source", 15);
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    let location = scratch.dir("ts-original");
    cluster.execute(&format!(
        "CREATE TABLESPACE extra LOCATION '{}'",
        location.display()
    ));
    cluster.execute("CREATE TABLE far (id int) TABLESPACE extra; INSERT INTO far SELECT generate_series(1, 777);");
    // Files of a few MiB take restore's direct I/O path: a relation, in
    // each tablespace, and a file whose size is no multiple of a block.
    cluster.execute("CREATE TABLE wide AS SELECT g, md5(g::text) || repeat('x', 400) AS t FROM generate_series(1, 6000) g");
    cluster.execute("CREATE TABLE wide_far TABLESPACE extra AS SELECT * FROM wide");
    let odd: Vec<u8> = (0..(3 << 20) + 1234u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(cluster.pgdata.join("odd-size.bin"), &odd).unwrap();
    chown_to_postgres(&cluster.pgdata.join("odd-size.bin"));
    let oid = cluster.query_one("SELECT oid::text FROM pg_tablespace WHERE spcname = 'extra'");
    let env = vec![("PGUSER".to_string(), "postgres".to_string())];
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

    // The original location is in use: restoring there is refused.
    let dest = scratch.path.join("restored");
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "restore",
            dest.to_str().unwrap(),
        ],
        &[],
        None,
    );
    assert_exit(&out, 11);
    assert!(
        stderr(&out).contains(&format!("--tablespace {oid}=")),
        "{}",
        stderr(&out)
    );

    let new_place = scratch.path.join("ts-restored");
    let mapping = format!("{oid}={}", new_place.display());
    // Traced, to see that every file restored, in the data directory and
    // in the tablespace, was synced before restore said it was done, and
    // that with --direct-io large files were written with direct I/O.
    let trace = scratch.path.join("restore.strace");
    let out = pgproof_under(
        &[
            "strace",
            "-f",
            "-qq",
            "-y",
            "-e",
            "trace=fsync,openat",
            "-o",
            trace.to_str().unwrap(),
        ],
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "restore",
            dest.to_str().unwrap(),
            "--tablespace",
            &mapping,
            "--target-immediate",
            "--target-action",
            "promote",
            "--direct-io",
        ],
        &[],
        None,
    );
    assert_exit(&out, 0);
    assert_eq!(
        std::fs::read_link(dest.join("pg_tblspc").join(&oid)).unwrap(),
        new_place
    );
    let traced = std::fs::read_to_string(&trace).unwrap();
    assert!(
        traced
            .lines()
            .any(|l| l.contains("odd-size.bin") && l.contains("O_DIRECT")),
        "large files are written with direct I/O"
    );
    let synced = synced_paths(&trace);
    let restored_files: Vec<PathBuf> = files_under(&dest)
        .into_iter()
        .chain(files_under(&new_place))
        // The tablespace's files, once each: at their own place, not
        // again through the pg_tblspc link.
        .filter(|f| !f.starts_with(dest.join("pg_tblspc")))
        .collect();
    assert!(restored_files.len() > 900, "{}", restored_files.len());
    for file in
        restored_files
            .iter()
            .chain([&dest, &new_place, &dest.join("base"), &dest.join("global")])
    {
        // pg_control is synced under the name it is written as, then
        // renamed into place last (and global/ synced again).
        let written_as = if file.ends_with("global/pg_control") {
            file.with_file_name("pg_control.pgproof-restore")
        } else {
            file.clone()
        };
        assert!(
            synced.contains(&written_as),
            "{} was not synced",
            file.display()
        );
    }
    assert!(
        !dest.join(".pgproof-restore-in-progress").exists()
            && !new_place.join(".pgproof-restore-in-progress").exists(),
        "the markers are gone once the restore is done"
    );
    let restored = Cluster::restored(&scratch, "restored", 15, dest);
    restored.start();
    restored.wait_promoted(SERVER_WAIT);
    assert_eq!(restored.query_one("SELECT count(*)::text FROM far"), "777");
    let digest = "SELECT count(*) || ' ' || md5(string_agg(t, '' ORDER BY g)) FROM";
    assert_eq!(
        restored.query_one(&format!("{digest} wide")),
        cluster.query_one(&format!("{digest} wide"))
    );
    assert_eq!(
        restored.query_one(&format!("{digest} wide_far")),
        cluster.query_one(&format!("{digest} wide"))
    );
    assert!(std::fs::read(restored.pgdata.join("odd-size.bin")).unwrap() == odd);
    assert_eq!(
        restored.query_one(
            "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'"
        ),
        new_place.display().to_string()
    );
}

#[test]
fn a_backup_of_another_system_is_refused() {
    let s = story("foreign-backup", 15, Backend::File);
    let stranger = Cluster::init(&s.scratch, "stranger", 15);
    stranger.start();
    let before = s.repo.snapshot();
    let env = vec![("PGUSER".to_string(), "postgres".to_string())];
    let out = pgproof(
        &[
            "--repo",
            &s.repo.url,
            "--cluster",
            "main",
            "backup-push",
            stranger.pgdata.to_str().unwrap(),
        ],
        &env,
        None,
    );
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(&stranger.system_identifier()) && err.contains(&s.cluster.system_identifier()),
        "{err}"
    );
    assert_eq!(s.repo.snapshot(), before);
}

#[test]
fn pages_failing_their_data_checksum_are_reported_and_recorded() {
    let scratch = Scratch::new("bad-page");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init_with(&scratch, "source", 15, &["--data-checksums"]);
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    cluster.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g",
    );
    cluster.execute("VACUUM FREEZE t");
    cluster.execute("CHECKPOINT");
    cluster.query_one("SELECT count(*)::text FROM t");
    cluster.execute("CHECKPOINT");
    let relpath = cluster.query_one("SELECT pg_relation_filepath('t')");
    let file = cluster.pgdata.join(&relpath);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 * 2 + 4000] ^= 0xFF;
    std::fs::write(&file, &bytes).unwrap();

    let env = vec![("PGUSER".to_string(), "postgres".to_string())];
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
    let err = stderr(&out);
    assert!(
        err.contains(&format!("page 2 of {relpath} fails its data checksum")),
        "{err}"
    );
    let manifest = find_manifest(repo.dir.as_ref().unwrap());
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    assert_eq!(doc["bad_pages"][0]["path"], relpath.as_str());
    assert_eq!(doc["bad_pages"][0]["block"], 2);
    assert_eq!(doc["data_checksums"], true);
}

fn find_manifest(repo: &Path) -> PathBuf {
    files_under(repo)
        .into_iter()
        .find(|p| file_name(p) == "manifest.json")
        .unwrap_or_else(|| panic!("no manifest in {}", repo.display()))
}

/// docs/FORMAT.md tells an operator how to get files out of a part without
/// pgproof and how to check them: `zstd -dc PART | tar -x`, `sha256sum` of
/// the part, `xxhsum -H2` of each file (a relation file's block-tree
/// checksum from its blocks' seeded XXH3-64, as any XXH3 library computes
/// them). A file of several MiB makes the part several compression frames.
#[test]
fn a_part_restores_by_hand_and_every_file_checks_with_xxhsum() {
    let scratch = Scratch::new("by-hand");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init_with(&scratch, "source", 15, &[]);
    cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
    cluster.start();
    cluster.execute(
        "CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 200000) g",
    );
    let relpath = cluster.query_one("SELECT pg_relation_filepath('t')");
    repo.backup(&cluster);
    let manifest = find_manifest(repo.dir.as_ref().unwrap());
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let backup_dir = manifest.parent().unwrap();
    let out_dir = scratch.dir("by-hand");
    for part in doc["parts"].as_array().unwrap() {
        let name = part["name"].as_str().unwrap();
        let path = backup_dir.join(name);
        let sha = std::process::Command::new("sha256sum")
            .arg(&path)
            .output()
            .unwrap();
        let sha = String::from_utf8_lossy(&sha.stdout);
        assert_eq!(
            sha.split_whitespace().next(),
            part["stored_checksum"].as_str(),
            "sha256sum of {name}"
        );
        let root = match part["tablespace"].as_u64() {
            None => out_dir.clone(),
            Some(oid) => out_dir.join(format!("tablespace-{oid}")),
        };
        std::fs::create_dir_all(&root).unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"zstd -dc "$1" | tar -x -C "$2""#)
            .arg("sh")
            .arg(&path)
            .arg(&root)
            .status()
            .unwrap();
        assert!(status.success(), "zstd -dc {name} | tar -x");
    }
    // The table's file (several MiB) is in a part of several frames.
    let table_part = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == relpath.as_str())
        .map(|f| f["part"].as_u64().unwrap() as usize)
        .unwrap();
    let listed = std::process::Command::new("zstd")
        .args(["-lv"])
        .arg(backup_dir.join(doc["parts"][table_part]["name"].as_str().unwrap()))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let frames: u64 = listed
        .lines()
        .find_map(|l| l.trim().strip_prefix("# Zstandard Frames:"))
        .unwrap_or_else(|| panic!("zstd -lv printed no frame count:\n{listed}"))
        .trim()
        .parse()
        .unwrap();
    assert!(frames > 1, "one frame for a part of several MiB:\n{listed}");

    let files = doc["files"].as_array().unwrap();
    assert!(files.len() > 100);
    for f in files {
        let path = f["path"].as_str().expect("UTF-8 names in this cluster");
        let on_disk = match f["tablespace"].as_u64() {
            None => out_dir.join(path),
            Some(oid) => out_dir.join(format!("tablespace-{oid}")).join(path),
        };
        let want = f["checksum"].as_str().unwrap();
        if let Some(tree) = want.strip_prefix("xxh3blocks:") {
            // A relation file's checksum is made of its blocks' seeded
            // XXH3-64 (docs/FORMAT.md); computed here as the document says,
            // with the xxhash library, not pgproof's code.
            let mut fields = tree.split(':');
            let block_size: usize = fields.next().unwrap().parse().unwrap();
            let seed = u64::from_str_radix(fields.next().unwrap(), 16).unwrap();
            let digest = fields.next().unwrap();
            let content = std::fs::read(&on_disk).unwrap();
            let leaves: Vec<u8> = content
                .chunks(block_size)
                .flat_map(|b| xxhash_rust::xxh3::xxh3_64_with_seed(b, seed).to_le_bytes())
                .collect();
            let by_hand = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&leaves));
            assert_eq!(by_hand, digest, "{path}");
            continue;
        }
        let xxh = std::process::Command::new("xxhsum")
            .arg("-H2")
            .arg(&on_disk)
            .output()
            .unwrap();
        assert!(xxh.status.success(), "xxhsum -H2 {path}");
        let xxh = String::from_utf8_lossy(&xxh.stdout);
        assert_eq!(
            Some(want),
            xxh.split_whitespace()
                .next()
                .map(|d| format!("xxh128:{d}"))
                .as_deref(),
            "{path}"
        );
    }
}

/// A part bigger than one upload buffer goes up as an Azure block blob in
/// several blocks (object_store's multipart upload), and comes back whole.
#[test]
fn a_part_of_many_blocks_round_trips_through_azure() {
    let major = 16;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("azure-blocks");
    let repo = TestRepo::new(&scratch, Backend::Azure);
    let cluster = Cluster::archiving_into(&scratch, &repo, major);
    // Random hex compresses about twofold: well past the 5 MiB buffer.
    cluster.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS v FROM generate_series(1, 300000) g",
    );
    let sum = cluster.query_one("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM big");
    let backup = repo.backup(&cluster);
    let out = repo.run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = list[0]["stored_size"].as_u64().unwrap();
    assert!(stored > 12 << 20, "stored {stored} bytes");
    assert_exit(&repo.run(&["verify", "--backup", &backup]), 0);

    let dest = scratch.path.join("restored");
    let out = repo.run(&[
        "restore",
        dest.to_str().unwrap(),
        "--target-immediate",
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);
    let mut restored = Cluster::restored(&scratch, "restored", major, dest);
    restored.env = repo.env.clone();
    restored.start();
    restored.wait_promoted(SERVER_WAIT);
    assert_eq!(
        restored.query_one("SELECT md5(string_agg(v, ',' ORDER BY id)) FROM big"),
        sum
    );
}
