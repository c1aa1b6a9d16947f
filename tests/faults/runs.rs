//! Running pgproof under a time limit, and reading a repository's objects
//! back without pgproof: names parsed, WAL objects decoded and compared with
//! their source segments.

use crate::common::*;
use pgproof::repo::layout::{ClusterName, identity_record, parse_wal_claim, parse_wal_object};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One pgproof run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit status; `None` when it was killed (by the limit or the test).
    pub code: Option<i32>,
    pub stderr: String,
    pub elapsed: Duration,
    /// Still running at the limit, then killed.
    pub hung: bool,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// The lines that explain a failure (error and hint), for reports.
    pub fn reason(&self) -> String {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.contains("error") || l.contains("hint") || l.contains("ERROR"))
            .collect();
        if lines.is_empty() {
            self.stderr.trim().lines().last().unwrap_or("").to_string()
        } else {
            lines.join(" | ")
        }
    }
}

/// Runs `cmd` (stdout discarded), killing it after `limit`; with
/// `kill_after`, SIGKILLs it at that point instead if it still runs.
pub fn run_limited(mut cmd: Command, limit: Duration, kill_after: Option<Duration>) -> Run {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawning pgproof");
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut hung = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        let elapsed = started.elapsed();
        if kill_after.is_some_and(|k| elapsed >= k) {
            let _ = child.kill();
            break child.wait().ok();
        }
        if elapsed >= limit {
            hung = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(if kill_after.is_some() {
            1
        } else {
            10
        }));
    };
    let elapsed = started.elapsed();
    Run {
        code: status.and_then(|s| s.code()),
        stderr: reader.join().unwrap(),
        elapsed,
        hung,
    }
}

/// What a repository prefix holds, by what its names parse as.
#[derive(Debug, Default)]
pub struct Inventory {
    /// WAL objects by WAL file name: their keys.
    pub wal: BTreeMap<String, Vec<String>>,
    pub claims: usize,
    /// Objects whose names parse as nothing pgproof writes.
    pub unknown: Vec<String>,
    /// Filesystem staging files (`<key>#<n>`), invisible to readers.
    pub staging: Vec<String>,
}

fn is_staging(key: &str) -> bool {
    key.rsplit('/')
        .next()
        .unwrap_or("")
        .split_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Sorts the keys of a repository holding cluster `main` into an inventory;
/// its identity record is the one other object expected.
pub fn inventory(keys: &[String]) -> Inventory {
    let mut inv = Inventory::default();
    for key in keys {
        if is_staging(key) {
            inv.staging.push(key.clone());
        } else if let Some(w) = parse_wal_object(key) {
            inv.wal
                .entry(w.name.to_string())
                .or_default()
                .push(key.clone());
        } else if parse_wal_claim(key).is_some() {
            inv.claims += 1;
        } else if *key != identity_record(&ClusterName::new("main").unwrap()) {
            inv.unknown.push(key.clone());
        }
    }
    inv
}

/// Every file under a filesystem repository, as keys relative to it.
pub fn file_keys(dir: &std::path::Path) -> Vec<String> {
    files_under(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

fn s3_store() -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("pgproof-test")
        .with_region("us-east-1")
        .with_endpoint(s3_endpoint())
        .with_allow_http(true)
        .with_access_key_id("testing")
        .with_secret_access_key("testing-secret-never-printed")
        .build()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every object under an S3 test repository's prefix (moto directly), as
/// keys relative to it.
pub fn s3_keys(repo: &TestRepo) -> Vec<String> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let prefix = repo
        .url
        .trim_start_matches("s3://pgproof-test/")
        .to_string();
    let store = s3_store();
    runtime().block_on(async {
        let path = object_store::path::Path::from(prefix.as_str());
        let metas: Vec<_> = store.list(Some(&path)).try_collect().await.unwrap();
        metas
            .into_iter()
            .map(|m| {
                m.location
                    .as_ref()
                    .strip_prefix(&format!("{prefix}/"))
                    .unwrap()
                    .to_string()
            })
            .collect()
    })
}

/// The stored bytes of `key` in the repository.
pub fn object_bytes(repo: &TestRepo, key: &str) -> Vec<u8> {
    if let Some(dir) = &repo.dir {
        return std::fs::read(dir.join(key)).unwrap();
    }
    use object_store::ObjectStoreExt;
    let prefix = repo.url.trim_start_matches("s3://pgproof-test/");
    let store = s3_store();
    runtime().block_on(async {
        let path = object_store::path::Path::from(format!("{prefix}/{key}"));
        store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    })
}

/// Why the WAL object `key` is not exactly `source` (decompressed by the
/// codec its name gives, checksummed against its name); `None` when it is.
pub fn wal_object_problem(repo: &TestRepo, key: &str, source: &PathBuf) -> Option<String> {
    let parsed = parse_wal_object(key)?;
    let stored = object_bytes(repo, key);
    let mut decoded = Vec::new();
    let decoder = parsed.compression.decoder(&stored[..]);
    if let Err(e) = decoder.and_then(|mut d| {
        d.read_to_end(&mut decoded)
            .map_err(|e| pgproof::error::Error::corrupt("decoding").with_source(e))
    }) {
        return Some(format!(
            "{key} ({} bytes) does not decode: {e}",
            stored.len()
        ));
    }
    if parsed.checksum.recompute(&decoded) != parsed.checksum {
        return Some(format!(
            "{key}: content does not match the checksum in its name"
        ));
    }
    if decoded != std::fs::read(source).unwrap() {
        return Some(format!("{key}: content differs from {}", source.display()));
    }
    None
}
