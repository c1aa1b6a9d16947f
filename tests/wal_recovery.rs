//! PostgreSQL itself driving `pgproof wal-fetch` as its restore_command: a
//! base backup taken with PostgreSQL 15's pg_basebackup (without WAL) is
//! recovered entirely from the archive; a damaged segment stops recovery
//! instead of ending it early, and once repaired recovery completes.

mod common;

use common::*;
use std::time::Duration;

/// How long a restored server may take to come up or promote.
const SERVER_WAIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    common::wait_until(what, SERVER_WAIT, done)
}

#[test]
fn recovery_replays_the_archive_and_stops_on_a_damaged_segment() {
    let scratch = Scratch::new("recovery");
    let repo = TestRepo::new(&scratch, Backend::File);
    let source = Cluster::init(&scratch, "source", 15);
    source.archive_with(&format!("--repo {} --cluster src", repo.url));
    source.start();
    source.execute("CREATE TABLE before_backup AS SELECT g AS id FROM generate_series(1, 1000) g;");

    let backup = scratch.dir("backup");
    let out = as_postgres(source.bin.join("pg_basebackup"))
        .arg("-h")
        .arg(&source.socket_dir)
        .args([
            "-p",
            &source.port.to_string(),
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&backup)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_basebackup: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    source.execute("CREATE TABLE after_backup AS SELECT g AS id FROM generate_series(1, 2000) g;");
    let first = source.write_and_switch(100);
    source.execute("CREATE TABLE later AS SELECT g AS id FROM generate_series(1, 3000) g;");
    let second = source.write_and_switch(100);
    source.wait_archived(&second);
    source.stop();

    // Damage the segment holding `later`.
    let victim = files_under(&repo.dir.as_ref().unwrap().join("src/wal"))
        .into_iter()
        .find(|p| file_name(p).starts_with(&format!("{second}-")))
        .expect("the second segment is stored");
    let original = std::fs::read(&victim).unwrap();
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xFF;
    std::fs::write(&victim, &damaged).unwrap();

    // The restored server: same binaries, new port and socket, WAL only from pgproof.
    let restored = Cluster {
        major: 15,
        pgdata: backup.clone(),
        port: free_port(),
        socket_dir: scratch.dir("restored-sock"),
        bin: source.bin.clone(),
        log: scratch.path.join("restored.log"),
        env: Vec::new(),
    };
    restored.configure(&format!(
        "port = {}\nunix_socket_directories = '{}'\narchive_mode = off\nhot_standby = off\nrestore_command = '{} --repo {} --cluster src wal-fetch %f %p'\n",
        restored.port,
        restored.socket_dir.display(),
        pgproof_exe().display(),
        repo.url
    ));
    std::fs::write(backup.join("recovery.signal"), "").unwrap();
    chown_tree(&backup);
    std::fs::set_permissions(&backup, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();

    // Recovery must stop at the damaged segment rather than promote without it.
    let mut start = as_postgres(restored.bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&restored.pgdata)
        .arg("-l")
        .arg(&restored.log)
        .args(["-w", "-t", "60", "start"]);
    // pg_ctl's own status says little here (it returns once a standby-like
    // postmaster is up): what counts is that the server stops.
    let _ = start.output().unwrap();
    wait_until(
        "the server gives up on the damaged segment and stops",
        || !restored.pgdata.join("postmaster.pid").exists(),
    );
    let log = restored.server_log();
    assert!(
        log.contains(&format!("restored log file \"{first}\" from archive")),
        "{log}"
    );
    assert!(
        log.contains("corrupt"),
        "pgproof's reason is in the server log:\n{log}"
    );
    assert!(
        !log.contains("selected new timeline ID"),
        "recovery ended early:\n{log}"
    );

    // Repaired, recovery resumes and reaches the end of the archive.
    std::fs::write(&victim, &original).unwrap();
    restored.start();
    restored.wait_promoted(SERVER_WAIT);
    assert_eq!(
        restored.query_one("SELECT count(*) FROM before_backup"),
        "1000"
    );
    assert_eq!(
        restored.query_one("SELECT count(*) FROM after_backup"),
        "2000"
    );
    assert_eq!(restored.query_one("SELECT count(*) FROM later"), "3000");
    assert!(
        restored
            .server_log()
            .contains("pgproof wal-fetch: restored")
    );
}
