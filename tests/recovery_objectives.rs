//! `status` shows the recovery point and the recovery time: the point from
//! the archive and, when it can reach the cluster's server, from how much
//! flushed WAL is not archived yet; the time scaled from the newest proof's
//! measured restore and recovery. Both carry thresholds, and JSON and
//! Prometheus carry both.

mod common;

use common::*;
use std::time::Duration;

fn status(repo: &TestRepo, cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "--repo",
        repo.url.as_str(),
        "--cluster",
        "objectives",
        "--pgdata",
        cluster.pgdata.to_str().unwrap(),
        "status",
    ];
    all.extend_from_slice(args);
    pgproof(&all, &repo.pg_env(), None)
}

fn json(out: &std::process::Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    v[0].clone()
}

#[test]
fn status_measures_the_recovery_point_and_estimates_the_recovery_time() {
    let major = 16;
    if !wants_major(major) {
        return;
    }
    let scratch = Scratch::new("objectives");
    let repo = TestRepo::new(&scratch, Backend::File);
    let mut cluster = Cluster::init(&scratch, "objectives", major);
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster objectives", repo.url));
    cluster.start();
    cluster.execute(
        "CREATE TABLE t AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 50000) g",
    );
    let pgdata = cluster.pgdata.to_str().unwrap().to_string();
    let in_prefix = |args: &[&str]| {
        let mut all = vec!["--repo", repo.url.as_str(), "--cluster", "objectives"];
        all.extend_from_slice(args);
        pgproof(&all, &repo.pg_env(), None)
    };
    assert_exit(&in_prefix(&["backup-push", &pgdata, "--fast"]), 0);
    let last = cluster.write_and_switch(10);
    cluster.wait_archived(&last);

    // No proof yet: the recovery time is unknown, and an RTO objective says so.
    let out = status(&repo, &cluster, &["--json"]);
    assert_exit(&out, 0);
    let s = json(&out);
    assert!(s["recovery_time"].is_null(), "{s}");
    let out = status(&repo, &cluster, &["--warn-rto", "1h"]);
    assert_exit(&out, 1);
    assert!(
        stdout_of(&out).contains("the recovery time is unknown: no backup was proven"),
        "{}",
        stdout_of(&out)
    );

    let bindir = format!("{}/{{major}}/bin", pg_root().display());
    let prove_dir = scratch.dir("prove-scratch");
    let out = in_prefix(&[
        "--pg-bindir",
        &bindir,
        "prove",
        "--scratch",
        prove_dir.to_str().unwrap(),
    ]);
    assert_exit(&out, 0);

    // Everything flushed is archived right after a switch only if nothing
    // was written since; write, so that the server is ahead of the archive.
    cluster.execute("INSERT INTO t SELECT g, 'after' FROM generate_series(1, 1000) g");
    std::thread::sleep(Duration::from_secs(2));
    let out = status(&repo, &cluster, &["--json"]);
    assert_exit(&out, 0);
    let s = json(&out);
    let rp = &s["recovery_point"];
    let unarchived = rp["unarchived_bytes"].as_u64().unwrap_or(0);
    assert!(unarchived > 0, "{s}");
    assert!(rp["seconds"].as_u64().unwrap() >= 2, "{s}");
    assert!(
        rp["measured_from"]
            .as_str()
            .unwrap()
            .contains("the server at"),
        "{s}"
    );
    let flush = rp["server_flush_lsn"].as_str().unwrap().to_string();
    let behind = cluster.query_one(&format!(
        "SELECT pg_current_wal_flush_lsn() >= '{flush}'::pg_lsn"
    ));
    assert_eq!(
        behind, "t",
        "status reported flush LSN {flush} beyond the server's"
    );

    // The estimate is scaled from the proof, which measured both phases.
    let rt = &s["recovery_time"];
    assert!(rt["estimate_seconds"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        rt["estimate_seconds"].as_u64().unwrap(),
        rt["restore_seconds"].as_u64().unwrap() + rt["replay_seconds"].as_u64().unwrap()
    );
    assert!(rt["wal_bytes"].as_u64().unwrap() > 0, "{s}");
    assert!(rt["backup_bytes"].as_u64().unwrap() > 10 << 20, "{s}");
    let proofs = repo.snapshot();
    assert!(
        proofs.keys().any(|k| k.contains("/proofs/")),
        "no proof stored: {proofs:?}"
    );

    // Thresholds in the configuration file and flags.
    let config = scratch.dir("config").join("pgproof.toml");
    std::fs::write(&config, "[status]\nwarn_rpo = \"1s\"\ncrit_rto = \"2h\"\n").unwrap();
    let out = status(&repo, &cluster, &["--config", config.to_str().unwrap()]);
    let text = stdout_of(&out);
    assert_exit(&out, 1);
    assert!(text.contains("WARNING: the recovery point is"), "{text}");
    assert!(text.contains("recovery point "), "{text}");
    assert!(text.contains("not archived yet"), "{text}");
    assert!(text.contains("recovery time  about"), "{text}");
    let out = status(&repo, &cluster, &["--crit-rto", "1s"]);
    assert_exit(&out, 2);
    assert!(
        stdout_of(&out).contains("a restore to now would take about"),
        "{}",
        stdout_of(&out)
    );
    let out = status(&repo, &cluster, &["--prometheus"]);
    let metrics = stdout_of(&out);
    for family in [
        "pgproof_recovery_point_seconds{cluster=\"objectives\"}",
        "pgproof_recovery_point_unarchived_bytes{cluster=\"objectives\"}",
        "pgproof_recovery_time_estimate_seconds{cluster=\"objectives\"}",
    ] {
        assert!(metrics.contains(family), "{family}: {metrics}");
    }

    // Once a switch archives what was flushed, nothing committed is at risk.
    let last = cluster.write_and_switch(0);
    cluster.wait_archived(&last);
    let out = status(&repo, &cluster, &["--json", "--warn-rpo", "1s"]);
    let s = json(&out);
    let idle = s["recovery_point"]["unarchived_bytes"].as_u64().unwrap();
    // A checkpoint or a background record may land after the switch.
    if idle == 0 {
        assert_eq!(s["recovery_point"]["seconds"], 0, "{s}");
        assert_exit(&out, 0);
    }

    // The server stopped: the point comes from the archive alone, and says why.
    cluster.stop();
    std::thread::sleep(Duration::from_secs(2));
    let out = status(&repo, &cluster, &["--json"]);
    let s = json(&out);
    let rp = &s["recovery_point"];
    assert!(rp["unarchived_bytes"].is_null(), "{s}");
    assert!(rp["seconds"].as_u64().unwrap() >= 2, "{s}");
    let from = rp["measured_from"].as_str().unwrap();
    assert!(
        from.contains("the archive alone") && from.contains("not running"),
        "{s}"
    );
    // A bad objective names where it was written.
    let out = status(&repo, &cluster, &["--warn-rpo", "soon"]);
    assert_exit(&out, 3);
    assert!(stderr(&out).contains("--warn-rpo"), "{}", stderr(&out));
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
