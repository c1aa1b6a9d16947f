//! `prove --all`: the newest backup of every cluster in a repository,
//! mixed majors, one after another within a budget; a cluster without a
//! backup is reported not proven without stopping the others, and status
//! shows the proofs.

mod common;

use common::*;
use std::process::Output;

fn in_prefix(repo: &TestRepo, prefix: &str, args: &[&str]) -> Output {
    let mut all = vec!["--repo", repo.url.as_str(), "--cluster", prefix];
    all.extend_from_slice(args);
    pgproof(&all, &repo.pg_env(), None)
}

fn archiving_cluster(scratch: &Scratch, repo: &TestRepo, prefix: &str, major: u32) -> Cluster {
    let mut cluster = Cluster::init(scratch, prefix, major);
    cluster.env = repo.env.clone();
    cluster.archive_with(&format!("--repo {} --cluster {prefix}", repo.url));
    cluster.start();
    cluster.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    let last = cluster.write_and_switch(10);
    cluster.wait_archived(&last);
    cluster
}

#[test]
fn every_cluster_of_a_repository_is_proven_in_turn() {
    let majors: Vec<u32> = [15, 17].into_iter().filter(|m| wants_major(*m)).collect();
    if majors.len() < 2 {
        return;
    }
    let scratch = Scratch::new("prove-all");
    let repo = TestRepo::new(&scratch, Backend::File);
    let a = archiving_cluster(&scratch, &repo, "alpha", majors[0]);
    let b = archiving_cluster(&scratch, &repo, "bravo", majors[1]);
    // WAL, but no backup yet: nothing to prove.
    let c = archiving_cluster(&scratch, &repo, "charlie", majors[0]);
    for (prefix, cluster) in [("alpha", &a), ("bravo", &b)] {
        let out = in_prefix(
            &repo,
            prefix,
            &["backup-push", cluster.pgdata.to_str().unwrap(), "--fast"],
        );
        assert_exit(&out, 0);
    }
    let bindir = format!("{}/{{major}}/bin", pg_root().display());
    let scratch_dir = scratch.dir("prove-scratch");
    let prove_all = |extra: &[&str]| {
        let mut args = vec![
            "--repo",
            repo.url.as_str(),
            "--pg-bindir",
            bindir.as_str(),
            "prove",
            "--all",
            "--scratch",
            scratch_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        pgproof(&args, &repo.pg_env(), None)
    };

    // A budget too small for anything: nothing is proven, and it says so.
    let out = prove_all(&["--budget", "1ms"]);
    assert_exit(&out, 12);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("0 of 3 cluster(s) proven"), "{said}");

    let out = prove_all(&[]);
    assert_exit(&out, 12);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let line = |prefix: &str| {
        said.lines()
            .find(|l| l.contains(&format!(" of {prefix} ")) || l.starts_with(&format!("{prefix}:")))
            .unwrap_or_else(|| panic!("no line for {prefix}:\n{said}"))
            .to_string()
    };
    assert!(line("alpha").contains("proven:"), "{said}");
    assert!(line("bravo").contains("proven:"), "{said}");
    assert!(line("charlie").contains("NOT proven"), "{said}");
    assert!(said.contains("2 of 3 cluster(s) proven"), "{said}");
    assert!(
        stderr(&out).contains("1 of 3 cluster(s) not proven"),
        "{}",
        stderr(&out)
    );

    let out = pgproof(
        &["--repo", repo.url.as_str(), "status", "--all", "--json"],
        &[],
        None,
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let proof_of = |prefix: &str| {
        status
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["cluster"] == prefix)
            .map(|s| s["newest_proof"]["succeeded"].clone())
            .unwrap()
    };
    assert_eq!(proof_of("alpha"), serde_json::Value::Bool(true), "{status}");
    assert_eq!(proof_of("bravo"), serde_json::Value::Bool(true), "{status}");
    assert_eq!(proof_of("charlie"), serde_json::Value::Null, "{status}");

    // --all and a backup name are two different requests.
    let out = prove_all(&["--backup", "latest"]);
    assert_exit(&out, 2);
    for cluster in [a, b, c] {
        cluster.stop();
    }
}
