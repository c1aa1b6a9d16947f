//! Bad stored data, one problem at a time: a manifest of a newer format, or
//! corrupt, is reported by name while every command goes on with the other
//! backups (restore skips it loudly, delete keeps it and the WAL it may
//! need); a stored WAL object that decompresses beyond what a segment can
//! hold is refused as corrupt instead of filling memory.

mod common;

use common::*;
use pgproof::codec::{Compression, ContentChecksum};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A PostgreSQL 15 cluster archiving into a file repository, with `backups`
/// taken one after another (WAL switched and archived before each).
struct Site {
    scratch: Scratch,
    repo: TestRepo,
    cluster: Cluster,
    backups: Vec<String>,
}

impl Site {
    fn new(name: &str) -> Site {
        let scratch = Scratch::new(name);
        let repo = TestRepo::new(&scratch, Backend::File);
        let cluster = Cluster::archiving_into(&scratch, &repo, 15);
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

    fn archive_a_segment(&self) {
        let seg = self.cluster.write_and_switch(200);
        self.cluster.wait_archived(&seg);
    }

    fn backup(&mut self) {
        self.archive_a_segment();
        // Backup names are whole seconds.
        std::thread::sleep(Duration::from_millis(1100));
        let pgdata = self.cluster.pgdata.to_str().unwrap().to_string();
        let out = self.run(&["backup-push", &pgdata, "--fast"]);
        assert_exit(&out, 0);
        self.backups
            .push(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }

    fn binding(&self) -> String {
        format!("15-{}", self.cluster.system_identifier())
    }

    fn manifest(&self, backup: &str) -> PathBuf {
        self.repo.dir.as_ref().unwrap().join(format!(
            "main/backups/{}/{backup}/manifest.json",
            self.binding()
        ))
    }

    fn wal_files(&self) -> Vec<PathBuf> {
        files_under(&self.repo.dir.as_ref().unwrap().join("main/wal"))
    }
}

fn out_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(out))
}

#[test]
fn damaged_manifests_are_reported_by_name_and_the_other_backups_still_serve() {
    let mut s = Site::new("damaged-manifests");
    for _ in 0..4 {
        s.backup();
    }
    s.archive_a_segment();
    let [b1, b2, b3, b4] = <[String; 4]>::try_from(s.backups.clone()).unwrap();

    // b2: a newer format, with a valid document checksum.
    let text = std::fs::read(s.manifest(&b2)).unwrap();
    let mut doc: serde_json::Value = pgproof::repo::document::decode(&text, "manifest").unwrap();
    doc["format"] = 99.into();
    std::fs::write(
        s.manifest(&b2),
        pgproof::repo::document::encode(&doc).unwrap(),
    )
    .unwrap();
    // b4, the newest: not JSON any more.
    let text = std::fs::read(s.manifest(&b4)).unwrap();
    std::fs::write(s.manifest(&b4), &text[..text.len() / 2]).unwrap();

    // backup-list: warns, lists the good ones, marks the damaged ones.
    let out = s.run(&["backup-list"]);
    assert_exit(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    for good in [&b1, &b3] {
        assert!(stdout.contains(good.as_str()), "{stdout}");
    }
    let line_of = |name: &str| {
        stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line_of(&b2).contains("DAMAGED") && line_of(&b2).contains("format 99"),
        "{stdout}"
    );
    assert!(line_of(&b4).contains("DAMAGED"), "{stdout}");
    assert_eq!(stdout.matches("DAMAGED").count(), 2, "{stdout}");
    let err = stderr(&out);
    assert!(err.contains(&b2) && err.contains(&b4), "{err}");
    let out = s.run(&["backup-list", "--json"]);
    assert_exit(&out, 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    let row = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap().clone();
    assert!(row(&b1)["damaged"].is_null() && row(&b3)["damaged"].is_null());
    assert!(row(&b2)["damaged"].as_str().unwrap().contains("format 99"));
    assert!(row(&b4)["damaged"].is_string());

    // status: a warning naming each, the newest good backup judged.
    let out = s.run(&["status"]);
    assert_exit(&out, 1);
    let text = out_text(&out);
    assert!(text.contains(&b2) && text.contains(&b4), "{text}");
    assert!(text.contains(&format!("newest backup  {b3}")), "{text}");

    // verify: each named, the others verified, non-zero.
    let out = s.run(&["verify"]);
    assert_exit(&out, 6);
    let text = out_text(&out);
    assert!(text.contains(&b2) && text.contains("format 99"), "{text}");
    assert!(text.contains(&b4), "{text}");
    assert!(text.contains("verified 2 backups"), "{text}");
    assert!(text.contains(": 2 problems"), "{text}");

    // restore: by name, the damaged one fails naming it; unnamed, the newest
    // good one is restored and the newer damaged one skipped loudly.
    for (name, status) in [(&b4, 6), (&b2, 3)] {
        let dest = s.scratch.path.join(format!("restore-{name}"));
        let out = s.run(&["restore", dest.to_str().unwrap(), "--backup", name]);
        assert_exit(&out, status);
        assert!(stderr(&out).contains(name.as_str()), "{}", stderr(&out));
        assert!(!dest.join("PG_VERSION").exists());
    }
    let dest = s.scratch.path.join("restore-latest");
    let out = s.run(&["restore", dest.to_str().unwrap()]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains(&format!("SKIPPED backup {b4}")), "{err}");
    assert!(err.contains(&format!("restoring backup {b3}")), "{err}");
    assert!(!err.contains(&format!("SKIPPED backup {b2}")), "{err}");

    // delete: the damaged ones are kept and named, never debris. b1, a good
    // backup beyond `retain 1`, stays: a damaged backup may be an
    // incremental resting on it. So b1 is the oldest kept backup, and only
    // the WAL before its start goes.
    let before = s.repo.snapshot();
    let wal_before = s.wal_files();
    let out = s.run(&["delete", "retain", "1"]);
    assert_exit(&out, 0);
    let text = out_text(&out);
    for damaged in [&b2, &b4] {
        assert!(
            text.contains(&format!("keep   backup {damaged}  DAMAGED")),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "keep   backup {b1}  needed by damaged backup {b2}"
        )),
        "{text}"
    );
    assert!(!text.contains("debris"), "{text}");
    assert_eq!(
        s.repo.snapshot(),
        before,
        "a dry run changed the repository"
    );
    let out = s.run(&["delete", "retain", "1", "--json"]);
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["damaged"].as_array().unwrap().len(), 2, "{plan}");
    assert!(plan["wal"][0]["held_by_damaged"].is_null(), "{plan}");
    let b1_start = row(&b1)["start_wal"].as_str().unwrap().to_string();

    let out = s.run(&["delete", "retain", "1", "--confirm"]);
    assert_exit(&out, 0);
    for kept in [&b1, &b2, &b3, &b4] {
        assert!(s.manifest(kept).exists(), "{kept} was deleted");
    }
    let after = s.wal_files();
    for p in &wal_before {
        let name = file_name(p);
        if name.len() >= 24 && name[..24] >= b1_start[..] {
            assert!(after.contains(p), "{} was deleted", p.display());
        }
    }
    assert!(after.len() < wal_before.len(), "the WAL before b1 stays");
    // What is left still verifies, apart from the two damaged manifests.
    let out = s.run(&["verify"]);
    assert_exit(&out, 6);
    let text = out_text(&out);
    assert!(text.contains("verified 2 backups"), "{text}");
    assert!(text.contains(": 2 problems"), "{text}");
    assert!(!text.contains("gap"), "{text}");
}

/// Stores `content` as the object of `name` the way wal-push names it.
fn plant(dir: &Path, name: &str, content: &[u8], compression: Compression) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!(
        "{name}-{}.{}",
        ContentChecksum::of(content).to_hex(),
        compression.extension()
    ));
    std::fs::write(&path, compression.compress(content).unwrap()).unwrap();
    path
}

#[test]
fn wal_objects_beyond_the_size_bound_are_refused_as_corrupt() {
    let s = Site::new("wal-bound");
    s.archive_a_segment();
    let dir = s
        .repo
        .dir
        .as_ref()
        .unwrap()
        .join(format!("main/wal/{}/0000000100000000", s.binding()));
    // 64 MiB of zeros compress to a few KiB: a bomb for a 16 MiB segment.
    let bomb = "0000000100000000000000F0";
    plant(
        &dir,
        bomb,
        &vec![0u8; 64 << 20],
        Compression::Zstd { level: 1 },
    );
    // Stored uncompressed and too large to be a segment: refused unread.
    let oversized = "0000000100000000000000F1";
    plant(&dir, oversized, &vec![7u8; 17 << 20], Compression::None);

    let dest = s.scratch.dir("out").join("RECOVERYXLOG");
    let out = s.run(&["wal-fetch", bomb, dest.to_str().unwrap()]);
    assert_exit(&out, 128);
    let err = stderr(&out);
    assert!(
        err.contains("corrupt") && err.contains("decompresses to more than 16777216 bytes"),
        "{err}"
    );
    assert!(!dest.exists());
    let out = s.run(&["wal-fetch", oversized, dest.to_str().unwrap()]);
    assert_exit(&out, 128);
    let err = stderr(&out);
    assert!(err.contains("corrupt") && err.contains(oversized), "{err}");
    assert!(!dest.exists());

    let out = s.run(&["verify"]);
    assert_exit(&out, 6);
    let text = out_text(&out);
    assert!(text.contains(bomb) && text.contains(oversized), "{text}");
}
