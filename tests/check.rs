//! `pgproof check` against real clusters: it passes on a cluster archiving
//! into the right place, and names what is wrong, with a hint, when
//! archiving is off, when archive_command archives another cluster's
//! prefix, and when the prefix belongs to another system.

mod common;

use common::*;

fn check(repo: &TestRepo, cluster: &Cluster, name: &str) -> std::process::Output {
    let env = repo.pg_env();
    pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            name,
            "--pgdata",
            cluster.pgdata.to_str().unwrap(),
            "check",
            "--archive-timeout",
            "30s",
        ],
        &env,
        None,
    )
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_passes_on_a_cluster_archiving_to_its_prefix() {
    for major in [15, 17] {
        if !wants_major(major) {
            continue;
        }
        let scratch = Scratch::new(&format!("check-ok-{major}"));
        let repo = TestRepo::new(&scratch, Backend::File);
        let cluster = Cluster::init(&scratch, "db", major);
        cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
        cluster.start();
        let out = check(&repo, &cluster, "main");
        let text = stdout(&out);
        assert_exit(&out, 0);
        for step in [
            "ok    settings",
            "ok    repository",
            "ok    cluster",
            "ok    identity",
            "ok    archive_mode",
            "ok    archive_command",
            "ok    archiving: forced segment",
            "check passed",
        ] {
            assert!(text.contains(step), "{step} missing from:\n{text}");
        }
        let err = stderr(&out);
        assert!(
            err.contains(&cluster.system_identifier()) && err.contains("postmaster.pid"),
            "the banner names the cluster and how it was found:\n{err}"
        );
        // The forced segment is really there, and the probe object is gone.
        let files = files_under(repo.dir.as_ref().unwrap());
        assert!(
            files
                .iter()
                .any(|f| file_name(f).starts_with("0000000100000000000000"))
        );
        assert!(!files.iter().any(|f| file_name(f).starts_with("check-")));
    }
}

#[test]
fn check_names_what_is_wrong() {
    if !wants_major(15) {
        return;
    }
    let scratch = Scratch::new("check-wrong");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "db", 15);
    cluster.start();

    // Archiving never configured.
    let out = check(&repo, &cluster, "main");
    let text = stdout(&out);
    assert_exit(&out, 3);
    assert!(
        text.contains("FAIL  archive_mode: archive_mode is off"),
        "{text}"
    );
    assert!(
        text.contains("FAIL  archive_command: archive_command is empty"),
        "{text}"
    );
    assert!(text.contains("hint: set archive_command = '"), "{text}");
    assert!(text.contains("skip  archiving"), "{text}");
    assert!(text.contains("check failed"), "{text}");

    // archive_command archives into another cluster's prefix.
    cluster.stop();
    cluster.archive_with(&format!("--repo {} --cluster other", repo.url));
    cluster.start();
    let out = check(&repo, &cluster, "main");
    let text = stdout(&out);
    assert_exit(&out, 3);
    assert!(text.contains("ok    archive_mode"), "{text}");
    assert!(
        text.contains("archives into cluster other (from flag --cluster)")
            && text.contains("but this check is for cluster main"),
        "{text}"
    );

    // The prefix belongs to another system: another cluster's WAL got there first.
    let other = Cluster::init(&scratch, "other", 15);
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "wal-push",
            "pg_wal/000000010000000000000001",
        ],
        &[],
        Some(&other.pgdata),
    );
    assert_exit(&out, 0);
    cluster.configure(&format!(
        "archive_command = '{} --repo {} --cluster main wal-push %p'",
        pgproof_exe().display(),
        repo.url
    ));
    cluster.execute("SELECT pg_reload_conf()");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = repo.snapshot();
    let out = check(&repo, &cluster, "main");
    let text = stdout(&out);
    assert_exit(&out, 4);
    assert!(
        text.contains("FAIL  identity")
            && text.contains(&other.system_identifier())
            && text.contains(&cluster.system_identifier()),
        "both systems are named:\n{text}"
    );
    assert!(
        text.contains("hint: this cluster needs its own cluster name"),
        "{text}"
    );
    assert!(text.contains("skip  archiving"), "{text}");
    assert_eq!(repo.snapshot(), before, "a failed check changes nothing");
}
