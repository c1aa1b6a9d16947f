//! Shell completions and man pages come from the command line's own
//! definitions: every command is in them, hidden ones are not, and a
//! directory that cannot be written is a clear error.

mod common;

use common::*;

#[test]
fn completions_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let out = pgproof(&["completions", shell], &[], None);
        assert_exit(&out, 0);
        let script = String::from_utf8_lossy(&out.stdout);
        for command in [
            "wal-push",
            "backup-push",
            "restore",
            "prove",
            "target-time",
            "offline",
        ] {
            assert!(
                script.contains(command),
                "{shell} completion lacks {command}"
            );
        }
    }
    let out = pgproof(&["completions", "cmd.exe"], &[], None);
    assert_exit(&out, 2);
}

#[test]
fn man_pages_are_written_one_per_command() {
    let out = pgproof(&["man"], &[], None);
    assert_exit(&out, 0);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH pgproof"),
        "{page}"
    );
    assert!(
        page.contains("backup\\-push"),
        "pgproof(1) lists the commands"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = pgproof(&["man", "--dir", out_dir.to_str().unwrap()], &[], None);
    assert_exit(&out, 0);
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in [
        "pgproof.1",
        "pgproof-restore.1",
        "pgproof-wal-fetch.1",
        "pgproof-backup-push.1",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("prefetch")),
        "a hidden command got a page: {names:?}"
    );
    let restore = std::fs::read_to_string(out_dir.join("pgproof-restore.1")).unwrap();
    assert!(restore.contains("target\\-time"), "{restore}");
    assert!(
        restore.contains("pgproof restore"),
        "its synopsis names the command as typed"
    );

    // A file where the directory should be.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let out = pgproof(
        &["man", "--dir", blocked.join("man1").to_str().unwrap()],
        &[],
        None,
    );
    assert_exit(&out, 10);
    assert!(stderr(&out).contains("not-a-dir"), "{}", stderr(&out));
}
