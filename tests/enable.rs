//! `pgproof enable` against real clusters: from a fresh initdb to a passing
//! check and a backup through the configuration file it wrote; a dry run
//! changes nothing; a prefix bound to another system is refused before
//! anything changes.

mod common;

use common::*;
use std::path::Path;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn auto_conf(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.pgdata.join("postgresql.auto.conf")).unwrap_or_default()
}

fn enable(
    repo: &TestRepo,
    config: &Path,
    cluster: &Cluster,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "--repo",
        repo.url.as_str(),
        "--cluster",
        "main",
        "--config",
        config.to_str().unwrap(),
        "enable",
        cluster.pgdata.to_str().unwrap(),
        "--archive-timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    pgproof(&args, &repo.pg_env(), None)
}

#[test]
fn from_a_fresh_cluster_to_a_passing_check() {
    for major in [14, 17] {
        if !wants_major(major) {
            continue;
        }
        let scratch = Scratch::new(&format!("enable-{major}"));
        let repo = TestRepo::new(&scratch, Backend::File);
        let cluster = Cluster::init(&scratch, "db", major);
        cluster.start();
        let config = scratch.path.join("pgproof.toml");
        let before = auto_conf(&cluster);

        // A dry run shows the exact settings and changes nothing.
        let out = enable(&repo, &config, &cluster, &["--write-config"]);
        assert_exit(&out, 0);
        let text = stdout(&out);
        let expected = format!(
            "archive_command = '{} --config {} --cluster main wal-push %p'",
            pgproof_exe().display(),
            config.display()
        );
        assert!(text.contains(&expected), "{expected} missing from:\n{text}");
        assert!(text.contains("archive_mode = 'on'"), "{text}");
        assert!(text.contains("[clusters.main]"), "{text}");
        assert!(
            text.contains("nothing changed; run again with --confirm"),
            "{text}"
        );
        assert_eq!(
            auto_conf(&cluster),
            before,
            "postgresql.auto.conf is untouched"
        );
        assert_eq!(cluster.query_one("SHOW archive_mode"), "off");
        assert!(!config.exists(), "no configuration file is written");
        assert!(
            repo.snapshot().is_empty(),
            "nothing is written to the repository"
        );

        // Confirmed without --restart: set, but waiting for a restart.
        let out = enable(&repo, &config, &cluster, &["--confirm", "--write-config"]);
        assert_exit(&out, 15);
        let text = stdout(&out);
        assert!(
            text.contains("takes effect only when the server restarts")
                && text.contains("pg_ctl")
                && text.contains("restart"),
            "{text}"
        );
        assert!(auto_conf(&cluster).contains("archive_mode = 'on'"));
        assert_eq!(cluster.query_one("SHOW archive_mode"), "off");
        let written = std::fs::read_to_string(&config).unwrap();
        assert!(written.contains("[clusters.main]"), "{written}");
        assert!(
            written.contains(&format!("repo = \"{}\"", repo.url)),
            "{written}"
        );

        // Again with --restart: the section agrees and is left alone, the
        // server restarts, the check passes.
        let out = enable(
            &repo,
            &config,
            &cluster,
            &["--confirm", "--restart", "--write-config"],
        );
        let text = stdout(&out);
        assert_exit(&out, 0);
        assert!(
            text.contains("already has a [clusters.main] section that agrees"),
            "{text}"
        );
        assert!(text.contains("ok    archiving: forced segment"), "{text}");
        assert!(text.contains("check passed"), "{text}");
        assert!(
            text.contains("backup-push") && text.contains("prove"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
        assert_eq!(cluster.query_one("SHOW archive_mode"), "on");
        assert!(
            cluster.server_log().contains("pgproof wal-push: archived"),
            "the restarted server logs where it did before"
        );

        // The configuration it wrote is all backup-push needs.
        let out = pgproof(
            &[
                "--config",
                config.to_str().unwrap(),
                "--cluster",
                "main",
                "backup-push",
                cluster.pgdata.to_str().unwrap(),
                "--fast",
                "--archive-timeout",
                "60s",
            ],
            &[("PGUSER".into(), "postgres".into())],
            None,
        );
        assert_exit(&out, 0);
    }
}

#[test]
fn a_prefix_of_another_system_is_refused_and_nothing_changes() {
    for major in [14, 17] {
        if wants_major(major) {
            refuses_a_foreign_prefix(major);
        }
    }
}

fn refuses_a_foreign_prefix(major: u32) {
    let scratch = Scratch::new(&format!("enable-foreign-{major}"));
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "db", major);
    cluster.start();
    let other = Cluster::init(&scratch, "other", major);
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
    let config = scratch.path.join("pgproof.toml");
    let before = (auto_conf(&cluster), repo.snapshot());

    let out = enable(
        &repo,
        &config,
        &cluster,
        &["--confirm", "--restart", "--write-config"],
    );
    assert_exit(&out, 4);
    let err = stderr(&out);
    assert!(
        err.contains(&other.system_identifier()) && err.contains(&cluster.system_identifier()),
        "both systems are named:\n{err}"
    );
    assert_eq!((auto_conf(&cluster), repo.snapshot()), before);
    assert_eq!(cluster.query_one("SHOW archive_mode"), "off");
    assert!(!config.exists());
}

#[test]
fn restart_needs_confirm() {
    let out = pgproof(&["--cluster", "main", "enable", "--restart"], &[], None);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--confirm"), "{}", stderr(&out));
}

#[test]
fn a_cluster_archiving_elsewhere_is_switched_by_a_reload() {
    if !wants_major(17) {
        return;
    }
    let scratch = Scratch::new("enable-reload");
    let repo = TestRepo::new(&scratch, Backend::File);
    let cluster = Cluster::init(&scratch, "db", 17);
    let elsewhere = scratch.dir("elsewhere");
    cluster.configure(&format!(
        "archive_mode = on\narchive_command = 'cp %p {}/%f'\n",
        elsewhere.display()
    ));
    cluster.start();
    let config = scratch.path.join("pgproof.toml");

    // A configuration file the archiver could not read is refused before
    // the server's settings change.
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::PermissionsExt;
        let secret = scratch.path.join("root-only.toml");
        std::fs::write(&secret, format!("repo = \"{}\"\n", repo.url)).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = auto_conf(&cluster);
        let out = enable(&repo, &secret, &cluster, &["--confirm"]);
        assert_exit(&out, 3);
        assert!(
            stderr(&out).contains("cannot read the configuration file"),
            "{}",
            stderr(&out)
        );
        assert_eq!(auto_conf(&cluster), before);
        std::fs::remove_file(&secret).unwrap();
    }

    // No configuration file: the repository goes on the command line.
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            "main",
            "--timeout",
            "45s",
            "enable",
            cluster.pgdata.to_str().unwrap(),
            "--confirm",
        ],
        &repo.pg_env(),
        None,
    );
    let text = stdout(&out);
    assert_exit(&out, 0);
    let expected = format!(
        "archive_command = '{} --cluster main --repo {} --timeout 45s wal-push %p'",
        pgproof_exe().display(),
        repo.url
    );
    assert!(text.contains(&expected), "{expected} missing from:\n{text}");
    assert!(
        text.contains("warning: the archive_command in use") && text.contains("cp %p"),
        "replacing another archiver is said:\n{text}"
    );
    assert!(!text.contains("restart"), "a reload is enough:\n{text}");
    assert!(text.contains("check passed"), "{text}");
    assert!(!config.exists());
}
