//! `pgproof clusters` on a host with two clusters of different majors, one
//! set up with pgproof (configured, archiving, backed up) and one that
//! nobody set up: the first is protected, the second stands out.

mod common;

use common::*;

#[test]
fn clusters_tells_the_protected_from_the_unprotected() {
    if !wants_major(15) || !wants_major(17) {
        return;
    }
    let scratch = Scratch::new("clusters");
    let repo = TestRepo::new(&scratch, Backend::File);
    let mut protected = Cluster::init(&scratch, "protected", 15);
    protected.env = repo.env.clone();
    let config = scratch.path.join("pgproof.toml");
    std::fs::write(
        &config,
        format!(
            "repo = \"{}\"\n[clusters.orders]\npgdata = \"{}\"\n",
            repo.url,
            protected.pgdata.display()
        ),
    )
    .unwrap();
    chown_to_postgres(&config);
    // The archiver finds its cluster by its data directory in the
    // configuration file. Its settings live in an included directory, as
    // Debian's conf.d: read from files, they count only if includes are
    // followed.
    let conf_d = protected.pgdata.join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(
        conf_d.join("archiving.conf"),
        format!(
            "archive_mode = on\narchive_command = '{} --config {} wal-push %p'\n",
            pgproof_exe().display(),
            config.display()
        ),
    )
    .unwrap();
    chown_tree(&conf_d);
    protected.configure("include_dir = 'conf.d'");
    protected.start();
    let env = repo.pg_env();
    let out = pgproof(
        &[
            "--config",
            config.to_str().unwrap(),
            "backup-push",
            protected.pgdata.to_str().unwrap(),
            "--fast",
        ],
        &env,
        None,
    );
    assert_exit(&out, 0);

    let forgotten = Cluster::init(&scratch, "forgotten", 17);
    forgotten.start();

    let out = pgproof(
        &["--config", config.to_str().unwrap(), "clusters", "--json"],
        &env,
        None,
    );
    // Other clusters may run on this host; this one is unprotected, so the exit is 1.
    assert_exit(&out, 1);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |c: &Cluster| {
        let want = std::fs::canonicalize(&c.pgdata).unwrap();
        all.as_array()
            .unwrap()
            .iter()
            .find(|e| e["pgdata"].as_str() == Some(want.to_str().unwrap()))
            .unwrap_or_else(|| panic!("{} not listed in {all:#}", want.display()))
            .clone()
    };
    let p = find(&protected);
    assert_eq!(p["protected"], true, "{p:#}");
    assert_eq!(p["major"], 15);
    assert_eq!(p["port"], protected.port);
    assert_eq!(p["running"], true);
    assert_eq!(p["configured_as"], "orders");
    assert_eq!(p["settings_from"], "server", "{p:#}");
    assert!(
        p["archives_to"]
            .as_str()
            .unwrap()
            .starts_with("orders in file://")
    );
    assert!(p["newest_backup"].is_string());
    let f = find(&forgotten);
    assert_eq!(f["protected"], false, "{f:#}");
    assert_eq!(f["major"], 17);
    assert_eq!(f["port"], forgotten.port);
    assert!(f["configured_as"].is_null());
    let problems = f["problems"].to_string();
    assert!(problems.contains("archive_mode is off"), "{problems}");

    let out = pgproof(
        &["--config", config.to_str().unwrap(), "clusters"],
        &env,
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let canon = |c: &Cluster| {
        std::fs::canonicalize(&c.pgdata)
            .unwrap()
            .display()
            .to_string()
    };
    assert!(
        text.contains(&format!("protected    {}", canon(&protected))),
        "{text}"
    );
    assert!(
        text.contains(&format!("UNPROTECTED  {}", canon(&forgotten))),
        "{text}"
    );

    // Stopped, the protected cluster is still found (from the configuration)
    // and judged from its configuration files.
    protected.stop();
    let out = pgproof(
        &["--config", config.to_str().unwrap(), "clusters", "--json"],
        &env,
        None,
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["configured_as"] == "orders")
        .unwrap()
        .clone();
    assert_eq!(p["running"], false);
    assert_eq!(p["protected"], true, "{p:#}");
    assert_eq!(p["settings_from"], "configuration files");
}
