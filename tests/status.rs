//! `pgproof status` over a repository holding several clusters: each is
//! reported, and one that stops archiving turns WARNING once its WAL is
//! older than the threshold, while the others stay OK. Exit statuses follow
//! the Nagios convention.

mod common;

use common::*;
use std::time::Duration;

fn archived_and_backed_up(scratch: &Scratch, repo: &TestRepo, name: &str, major: u32) -> Cluster {
    let mut cluster = Cluster::init(scratch, name, major);
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster {name}", repo.url));
    cluster.start();
    let out = pgproof(
        &[
            "--repo",
            &repo.url,
            "--cluster",
            name,
            "backup-push",
            cluster.pgdata.to_str().unwrap(),
            "--fast",
        ],
        &repo.pg_env(),
        None,
    );
    assert_exit(&out, 0);
    cluster
}

fn status(repo: &TestRepo, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--repo", repo.url.as_str()];
    all.extend_from_slice(args);
    pgproof(&all, &repo.env, None)
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_reports_every_cluster_and_flags_the_one_that_stopped_archiving() {
    let (a, b) = (15, 17);
    if !wants_major(a) || !wants_major(b) {
        return;
    }
    let scratch = Scratch::new("status-fleet");
    let repo = TestRepo::new(&scratch, Backend::File);
    let alpha = archived_and_backed_up(&scratch, &repo, "alpha", a);
    let beta = archived_and_backed_up(&scratch, &repo, "beta", b);

    let out = status(&repo, &["status", "--all"]);
    let text = stdout(&out);
    assert_exit(&out, 0);
    assert!(
        text.contains("alpha: OK") && text.contains("beta: OK"),
        "{text}"
    );
    assert!(text.contains(&alpha.system_identifier()), "{text}");
    assert!(text.contains(&beta.system_identifier()), "{text}");
    assert!(text.contains("gaps           none since backup"), "{text}");

    // beta stops archiving; alpha keeps going.
    beta.stop();
    std::thread::sleep(Duration::from_secs(4));
    let last = alpha.write_and_switch(10);
    alpha.wait_archived(&last);
    let thresholds = ["--warn-wal-age", "3s", "--crit-wal-age", "1h"];
    let mut args = vec!["status", "--all"];
    args.extend_from_slice(&thresholds);
    let out = status(&repo, &args);
    let text = stdout(&out);
    assert_exit(&out, 1);
    assert!(text.contains("alpha: OK"), "{text}");
    assert!(
        text.contains("beta: WARNING")
            && text.contains("WARNING: the newest archived WAL is")
            && text.contains("(warning after 3s)"),
        "{text}"
    );

    // The same as JSON, and as one cluster's check.
    args.push("--json");
    let out = status(&repo, &args);
    assert_exit(&out, 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_string(),
                c["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            ("alpha".into(), "OK".into()),
            ("beta".into(), "WARNING".into())
        ]
    );
    assert_eq!(json[1]["major"], b);
    assert_eq!(json[1]["backups"], 1);

    let mut args = vec!["--cluster", "beta", "status", "--crit-wal-age", "3s"];
    args.extend_from_slice(&["--warn-wal-age", "1s"]);
    let out = status(&repo, &args);
    assert_exit(&out, 2);
    assert!(stdout(&out).contains("beta: CRITICAL"), "{}", stdout(&out));

    // Thresholds from the configuration file: a [status] table for every
    // cluster, beta's own section over it, and a flag over both.
    let config = scratch.path.join("pgproof.toml");
    std::fs::write(
        &config,
        "[status]\nwarn_wal_age = \"1h\"\nwarn_backup_age = \"8d\"\ncrit_backup_age = \"15d\"\n\n[clusters.beta.status]\nwarn_wal_age = \"1s\"\ncrit_wal_age = \"3s\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let out = status(&repo, &["--config", config, "status", "--all"]);
    let text = stdout(&out);
    assert_exit(&out, 2);
    assert!(text.contains("alpha: OK"), "{text}");
    assert!(
        text.contains("beta: CRITICAL") && text.contains("(critical after 3s)"),
        "{text}"
    );
    let out = status(
        &repo,
        &[
            "--config",
            config,
            "status",
            "--all",
            "--warn-wal-age",
            "1h",
            "--crit-wal-age",
            "2h",
        ],
    );
    assert_exit(&out, 0);
    std::fs::write(config, "[status]\nwarn_wal_age = \"soon\"\n").unwrap();
    let out = status(&repo, &["--config", config, "status", "--all"]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("status.warn_wal_age in"),
        "{}",
        stderr(&out)
    );

    let out = status(&repo, &["status", "--all", "--prometheus"]);
    let text = stdout(&out);
    assert_exit(&out, 0);
    assert!(text.contains("# TYPE pgproof_status gauge"), "{text}");
    assert!(
        text.contains("pgproof_status{cluster=\"beta\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("pgproof_backups{cluster=\"alpha\"} 1"),
        "{text}"
    );
}

#[test]
fn status_of_a_cluster_with_nothing_archived_is_critical() {
    let scratch = Scratch::new("status-empty");
    let repo = TestRepo::new(&scratch, Backend::File);
    let out = status(&repo, &["--cluster", "ghost", "status"]);
    assert_exit(&out, 2);
    assert!(
        stdout(&out).contains("nothing is archived"),
        "{}",
        stdout(&out)
    );
    let out = status(&repo, &["status", "--all"]);
    assert_exit(&out, 3);
    assert!(
        stderr(&out).contains("holds no cluster"),
        "{}",
        stderr(&out)
    );
}
