//! Retention and verification with real clusters: `delete` dry runs change
//! nothing; `retain 2` keeps the newest two, a permanent one and the WAL
//! they need, removes older WAL and debris, and every kept backup still
//! restores to a point in time; `verify` passes on a healthy repository and
//! names the part or the WAL gap when something is damaged or removed.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SERVER_WAIT: Duration = Duration::from_secs(90);

/// A cluster archiving into a repository, backed up several times with WAL
/// in between; table `t` gets one row per step.
struct Site {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    backups: Vec<String>,
}

impl Site {
    fn new(name: &str, major: u32, backend: Backend) -> Site {
        let scratch = Scratch::new(name);
        let repo = TestRepo::new(&scratch, backend);
        let cluster = Cluster::archiving_into(&scratch, &repo, major);
        cluster.execute("CREATE TABLE t (step int)");
        Site {
            scratch,
            repo,
            cluster,
            backups: Vec::new(),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.repo.run(args)
    }

    /// A row, a WAL switch archived, then a backup (names are whole seconds).
    fn step_and_backup(&mut self, extra: &[&str]) {
        self.step();
        std::thread::sleep(Duration::from_millis(1100));
        let pgdata = self.cluster.pgdata.to_str().unwrap().to_string();
        let mut args = vec!["backup-push", pgdata.as_str(), "--fast"];
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert_exit(&out, 0);
        self.backups
            .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }

    fn step(&self) {
        self.cluster
            .execute("INSERT INTO t SELECT count(*) + 1 FROM t");
        let seg = self.cluster.write_and_switch(200);
        self.cluster.wait_archived(&seg);
    }

    fn repo_dir(&self) -> &Path {
        self.repo.dir.as_deref().unwrap()
    }

    fn binding(&self) -> String {
        let dir = self.repo_dir().join("main/backups");
        let entry = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap();
        entry.file_name().to_string_lossy().into_owned()
    }

    fn list(&self) -> serde_json::Value {
        let out = self.run(&["backup-list", "--json"]);
        assert_exit(&out, 0);
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// WAL segment files (not history, not .backup) in a file repository.
    fn wal_segments(&self) -> Vec<String> {
        files_under(&self.repo_dir().join("main/wal"))
            .iter()
            .map(|p| file_name(p).split('-').next().unwrap().to_string())
            .filter(|n| n.len() == 24)
            .collect()
    }

    fn start_wal(&self, backup: &str) -> String {
        let list = self.list();
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == backup)
            .unwrap_or_else(|| panic!("{backup} is listed"));
        row["start_wal"].as_str().unwrap().to_string()
    }

    fn restore_and_start(&self, dir: &str, args: &[&str]) -> Cluster {
        let dest = self.scratch.path.join(dir);
        let mut all = vec!["restore", dest.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_exit(&out, 0);
        let restored = Cluster::restored(&self.scratch, dir, self.cluster.major, dest);
        let mut restored = restored;
        restored.env = self.repo.env.clone();
        restored.start();
        restored.wait_promoted(SERVER_WAIT);
        restored
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn retain_keeps_the_newest_a_permanent_one_and_their_wal_15() {
    if !wants_major(15) {
        return;
    }
    let mut site = Site::new("retain-15", 15, Backend::File);
    site.step_and_backup(&[]);
    site.step_and_backup(&["--permanent"]);
    site.step_and_backup(&[]);
    site.step_and_backup(&[]);
    site.step();
    let target = site.cluster.query_one("SELECT now()::text");
    std::thread::sleep(Duration::from_millis(1100));
    site.cluster.execute("DELETE FROM t");
    site.step();
    let b = site.backups.clone();

    let list = site.list();
    assert_eq!(list.as_array().unwrap().len(), 4);
    assert_eq!(list[1]["permanent"], true);
    assert_eq!(list[0]["permanent"], false);
    let out = site.run(&["backup-list"]);
    assert!(stdout(&out).contains("permanent"), "{}", stdout(&out));

    // A backup that never completed, older than the newest complete one,
    // and one that may be running now.
    let binding = site.binding();
    let backups_dir = site.repo_dir().join("main/backups").join(&binding);
    let debris = backups_dir.join("20000101T000000Z");
    let running = backups_dir.join("29991231T235959Z");
    for d in [&debris, &running] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("part-0000.tar.zst"), b"half a part").unwrap();
    }

    // Dry runs change nothing, and say what they would do.
    let before = site.repo.snapshot();
    let out = site.run(&["delete", "retain", "2"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("delete backup {}", b[0]))
            && text.contains(&format!("keep   backup {}  permanent", b[1]))
            && text.contains(&format!("keep   backup {}  one of the 2 newest", b[2]))
            && text.contains(&format!("keep   backup {}  newest", b[3]))
            && text.contains("20000101T000000Z")
            && !text.contains("29991231T235959Z")
            && text.contains("delete WAL of")
            && text.ends_with("dry run: nothing was deleted; add --confirm to delete\n"),
        "{text}"
    );
    let out = site.run(&["delete", "before", "2999-01-01 00:00:00+00", "--json"]);
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    let actions: Vec<(&str, &str)> = plan["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("delete", "before"),
            ("keep", "permanent"),
            ("delete", "before"),
            ("keep", "newest"),
        ],
        "the newest complete backup is never deleted"
    );
    let out = site.run(&["delete", "before", &b[2]]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains(&format!(
        "keep   backup {}  not before backup {}",
        b[2], b[2]
    )));
    assert_exit(&site.run(&["delete", "before", "20000101T000000Z"]), 9);
    assert_exit(&site.run(&["delete", "retain", "0"]), 3);
    assert_eq!(site.repo.snapshot(), before, "dry runs deleted nothing");

    // For real.
    let keep_from = site.start_wal(&b[1]);
    let first_start = site.start_wal(&b[0]);
    assert!(site.wal_segments().iter().any(|s| s[8..] < keep_from[8..]));
    let out = site.run(&["delete", "retain", "2", "--confirm"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("deleted "), "{}", stdout(&out));
    let names: Vec<String> = site
        .list()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, b[1..]);
    assert!(!backups_dir.join(&b[0]).exists() && !debris.exists());
    assert!(running.join("part-0000.tar.zst").exists());
    std::fs::remove_dir_all(&running).unwrap();
    let segments = site.wal_segments();
    assert!(
        segments.iter().all(|s| s[8..] >= keep_from[8..]),
        "WAL before {keep_from} is gone: {segments:?}"
    );
    assert!(segments.contains(&keep_from));
    assert!(!segments.contains(&first_start));

    // What is left verifies, and each kept backup still restores to a point in time.
    let out = site.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(stdout(&out).contains("3 backups"), "{}", stdout(&out));
    for (i, name) in b[1..].iter().enumerate() {
        let restored = site.restore_and_start(
            &format!("restored-{i}"),
            &[
                "--backup",
                name,
                "--target-time",
                &target,
                "--target-action",
                "promote",
            ],
        );
        assert_eq!(
            restored.query_one("SELECT count(*)::text FROM t"),
            "5",
            "{}",
            restored.server_log()
        );
        restored.stop();
    }

    // The mark can be lifted, and then retention takes the backup.
    assert_exit(&site.run(&["backup-mark", &b[1], "--no-permanent"]), 0);
    assert_eq!(site.list()[0]["permanent"], false);
    assert_exit(
        &site.run(&["backup-mark", "19990101T000000Z", "--permanent"]),
        9,
    );
    let out = site.run(&["delete", "retain", "2", "--confirm"]);
    assert_exit(&out, 0);
    assert_eq!(site.list().as_array().unwrap().len(), 2);
}

/// Flips one byte in the middle of a file.
fn corrupt(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
    original
}

fn find_file(dir: &Path, pred: impl Fn(&str) -> bool) -> PathBuf {
    files_under(dir)
        .into_iter()
        .find(|p| pred(file_name(p)))
        .unwrap_or_else(|| panic!("no such file under {}", dir.display()))
}

fn relative(site: &Site, path: &Path) -> String {
    path.strip_prefix(site.repo_dir())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn verify_names_the_damaged_part_and_the_wal_gap_17() {
    if !wants_major(17) {
        return;
    }
    let mut site = Site::new("verify-17", 17, Backend::File);
    site.step_and_backup(&["--permanent"]);
    site.step();
    site.step();
    site.step_and_backup(&[]);
    site.step();

    let out = site.run(&["verify"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(
        text.starts_with("verified 2 backups (") && text.ends_with(": 0 problems\n"),
        "{text}"
    );
    let out = site.run(&["verify", "--backup", &site.backups[1]]);
    assert_exit(&out, 0);
    assert!(stdout(&out).starts_with("verified 1 backup ("));
    assert_exit(&site.run(&["verify", "--backup", "20000101T000000Z"]), 9);

    // One byte of a part.
    let backup_dir = site
        .repo_dir()
        .join("main/backups")
        .join(site.binding())
        .join(&site.backups[1]);
    let part = find_file(&backup_dir, |n| n.starts_with("part") && n.contains(".tar"));
    let original = corrupt(&part);
    let out = site.run(&["verify"]);
    assert_exit(&out, 6);
    let text = stdout(&out);
    assert!(
        text.contains(&relative(&site, &part)) && text.ends_with(": 1 problem\n"),
        "{text}"
    );
    std::fs::write(&part, &original).unwrap();

    // A part removed.
    let part = find_file(
        &site
            .repo_dir()
            .join("main/backups")
            .join(site.binding())
            .join(&site.backups[0]),
        |n| n.starts_with("part") && n.contains(".tar"),
    );
    std::fs::rename(&part, site.scratch.path.join("aside")).unwrap();
    let out = site.run(&["verify"]);
    assert_exit(&out, 6);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("part {} of backup", relative(&site, &part)))
            && text.contains("is missing"),
        "{text}"
    );
    std::fs::rename(site.scratch.path.join("aside"), &part).unwrap();

    // A damaged manifest is named too.
    let manifest = backup_dir.join("manifest.json");
    let original = std::fs::read(&manifest).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    std::fs::write(&manifest, text.replacen(": 8192", ": 8193", 1)).unwrap();
    let out = site.run(&["verify"]);
    assert_exit(&out, 6);
    assert!(
        stdout(&out).contains(&relative(&site, &manifest)),
        "{}",
        stdout(&out)
    );
    std::fs::write(&manifest, &original).unwrap();

    // A WAL segment in the middle, between the two backups.
    let first = site.start_wal(&site.backups[0]);
    let second = site.start_wal(&site.backups[1]);
    let segments = site.wal_segments();
    let middle = segments
        .iter()
        .find(|s| s[8..] > first[8..] && s[8..] < second[8..])
        .expect("a segment between the backups")
        .clone();
    let wal_file = find_file(&site.repo_dir().join("main/wal"), |n| {
        n.starts_with(&format!("{middle}-"))
    });
    std::fs::remove_file(&wal_file).unwrap();
    let out = site.run(&["verify"]);
    assert_exit(&out, 6);
    let text = stdout(&out);
    assert!(
        text.contains("WAL gap") && text.contains(&middle) && text.contains(&site.backups[0]),
        "{text}"
    );
    // The later backup does not need it.
    assert_exit(&site.run(&["verify", "--backup", &site.backups[1]]), 0);
}

fn delete_and_verify_over(backend: Backend, major: u32) {
    if !wants_major(major) {
        return;
    }
    let mut site = Site::new(&format!("retain-{backend:?}-{major}"), major, backend);
    site.step_and_backup(&[]);
    site.step_and_backup(&[]);
    site.step();
    let out = site.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("delete backup {}", site.backups[0])),
        "{}",
        stdout(&out)
    );
    let list = site.list();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], site.backups[1].as_str());
    let out = site.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("verified 1 backup ("),
        "{}",
        stdout(&out)
    );
}

#[test]
fn delete_and_verify_over_s3_15() {
    delete_and_verify_over(Backend::S3, 15);
}

#[test]
fn delete_and_verify_over_azure_16() {
    delete_and_verify_over(Backend::Azure, 16);
}

/// A point-in-time restore promoted to timeline 2 and archiving into the same
/// prefix: verify follows the history file across the switch (and names a
/// gap on the new timeline), delete keeps the history file, and the backup
/// taken on timeline 2 still verifies afterwards.
#[test]
fn timelines_are_followed_by_verify_and_delete_15() {
    if !wants_major(15) {
        return;
    }
    let mut site = Site::new("timelines-15", 15, Backend::File);
    site.step_and_backup(&[]);
    site.step();
    let target = site.cluster.query_one("SELECT now()::text");
    std::thread::sleep(Duration::from_millis(1100));
    site.cluster.execute("INSERT INTO t VALUES (100)");
    let last = site.cluster.write_and_switch(200);
    site.cluster.wait_archived(&last);
    site.cluster.stop();

    // The promoted copy archives into the same prefix, on timeline 2.
    let dest = site.scratch.path.join("promoted");
    let out = site.run(&[
        "restore",
        dest.to_str().unwrap(),
        "--target-time",
        &target,
        "--target-action",
        "promote",
    ]);
    assert_exit(&out, 0);
    let mut promoted = Cluster::restored(&site.scratch, "promoted", 15, dest);
    promoted.env = site.repo.env.clone();
    promoted.archive_with(&format!("--repo {} --cluster main", site.repo.url));
    promoted.start();
    promoted.wait_promoted(SERVER_WAIT);
    assert_eq!(promoted.query_one("SELECT count(*)::text FROM t"), "2");
    let seg = promoted.write_and_switch(200);
    assert!(seg.starts_with("00000002"), "{seg}");
    promoted.wait_archived(&seg);
    let wal_dir = site.repo_dir().join("main/wal");
    wait_until("the history file is archived", SERVER_WAIT, || {
        files_under(&wal_dir)
            .iter()
            .any(|p| file_name(p).starts_with("00000002.history-"))
    });
    let out = site.run(&["backup-push", promoted.pgdata.to_str().unwrap(), "--fast"]);
    assert_exit(&out, 0);
    let on_tl2 = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let seg = promoted.write_and_switch(200);
    promoted.wait_archived(&seg);

    let out = site.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("verified 2 backups ("),
        "{}",
        stdout(&out)
    );

    // Timeline 2's copy of the switch segment is what a restore from the first backup reads.
    let switch = site
        .wal_segments()
        .into_iter()
        .find(|s| s.starts_with("00000002"))
        .unwrap();
    let switch_file = find_file(&wal_dir, |n| n.starts_with(&format!("{switch}-")));
    std::fs::rename(&switch_file, site.scratch.path.join("aside")).unwrap();
    let out = site.run(&["verify", "--backup", &site.backups[0]]);
    assert_exit(&out, 6);
    assert!(
        stdout(&out).contains(&format!("{switch} missing")),
        "{}",
        stdout(&out)
    );
    std::fs::rename(site.scratch.path.join("aside"), &switch_file).unwrap();

    let out = site.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains(&format!("keep   backup {on_tl2}  newest")),
        "{}",
        stdout(&out)
    );
    assert!(
        files_under(&wal_dir)
            .iter()
            .any(|p| file_name(p).starts_with("00000002.history-")),
        "history files stay"
    );
    let out = site.run(&["verify"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("verified 1 backup ("),
        "{}",
        stdout(&out)
    );
}
