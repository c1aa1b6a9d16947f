//! Test harness: real PostgreSQL clusters created with initdb, run as an
//! unprivileged user (PostgreSQL refuses root, and CI runs as root), each on
//! its own port and socket directory under a scratch directory that user can
//! reach; the pgproof binary copied where that user can execute it; the moto
//! S3 server started by scripts/test.sh.
//!
//! Environment:
//! - `PGPROOF_TEST_PG_ROOT`: where `<major>/bin` holds each major's server
//!   binaries (scripts/install-test-deps.sh fills /opt/pgproof-test/pg).
//! - `PGPROOF_TEST_MAJORS`: which majors to test (default: all of 13 to 18, and
//!   a missing one fails; naming fewer is a developer's explicit quick run).
//! - `PGPROOF_TEST_S3_ENDPOINT`: the moto server (scripts/test.sh sets it).
//! - `PGPROOF_TEST_KEEP=1`: keep scratch directories for inspection.

#![allow(dead_code)]

pub mod fault_proxy;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SCRATCH_ROOT: &str = "/tmp/pgproof-tests";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the postgres user exists");
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id");
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    (uid, gid)
}

/// Sends `signal` to a child the test spawned (and has not reaped, so its
/// pid is still its own).
pub fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .expect("signalling a child of the test");
}

/// Gives a path to the unprivileged user when tests run as root.
pub fn chown_to_postgres(path: &Path) {
    if is_root() {
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

pub fn chown_tree(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// A command run as the unprivileged user when the tests run as root.
pub fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A directory for one test, reachable by the unprivileged user, removed
/// when dropped unless PGPROOF_TEST_KEEP is set.
pub struct Scratch {
    pub path: PathBuf,
}

static SCRATCH_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        std::fs::create_dir_all(SCRATCH_ROOT).unwrap();
        std::fs::set_permissions(SCRATCH_ROOT, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = PathBuf::from(SCRATCH_ROOT).join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        chown_to_postgres(&path);
        Scratch { path }
    }

    /// A subdirectory owned by the unprivileged user.
    pub fn dir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir_all(&p).unwrap();
        chown_to_postgres(&p);
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("PGPROOF_TEST_KEEP").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The pgproof binary, copied where the unprivileged user can run it
/// (the checkout may sit under a directory only root can enter).
pub fn pgproof_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let built = PathBuf::from(env!("CARGO_BIN_EXE_pgproof"));
        let dir = PathBuf::from(SCRATCH_ROOT).join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        remove_copies_of_finished_runs(&dir);
        let dest = dir.join(format!("pgproof-{}", std::process::id()));
        let tmp = dir.join(format!(".pgproof-{}.tmp", std::process::id()));
        std::fs::copy(&built, &tmp).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        dest
    })
}

/// Each test process leaves a copy of the binary (a few hundred MB in a
/// debug build); those of processes that have ended are removed.
fn remove_copies_of_finished_runs(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .trim_start_matches('.')
            .strip_prefix("pgproof-")
            .map(|rest| rest.trim_end_matches(".tmp"))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

pub fn pg_root() -> PathBuf {
    PathBuf::from(
        std::env::var("PGPROOF_TEST_PG_ROOT").unwrap_or_else(|_| "/opt/pgproof-test/pg".into()),
    )
}

pub fn pg_bin(major: u32) -> PathBuf {
    let candidates = [
        pg_root().join(major.to_string()).join("bin"),
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
    ];
    candidates
        .iter()
        .find(|p| p.join("postgres").exists())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL {major} binaries under {}: run scripts/install-test-deps.sh",
                pg_root().display()
            )
        })
}

/// The majors to test: every supported one, unless PGPROOF_TEST_MAJORS
/// names fewer for a developer's quick local run. Without that explicit
/// choice a missing major is a failure (`pg_bin` panics naming it), never a
/// silent skip: a suite that passes by skipping proves nothing.
pub fn majors() -> Vec<u32> {
    if let Ok(list) = std::env::var("PGPROOF_TEST_MAJORS") {
        return list
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
    }
    (13..=18).collect()
}

pub fn wants_major(major: u32) -> bool {
    let wanted = majors().contains(&major);
    if !wanted {
        eprintln!("PostgreSQL {major} not selected by PGPROOF_TEST_MAJORS; skipping");
    }
    wanted
}

pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Avoid handing the same port twice within this process.
        let previous = NEXT.swap(port as usize, Ordering::SeqCst);
        if previous != port as usize {
            return port;
        }
    }
}

/// A real PostgreSQL cluster.
pub struct Cluster {
    pub major: u32,
    pub pgdata: PathBuf,
    pub port: u16,
    pub socket_dir: PathBuf,
    pub bin: PathBuf,
    pub log: PathBuf,
    /// Environment given to the server (and so to archive_command).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// initdb into `<scratch>/<name>` with its own socket directory and port.
    pub fn init(scratch: &Scratch, name: &str, major: u32) -> Cluster {
        Self::init_with(scratch, name, major, &[])
    }

    pub fn init_with(scratch: &Scratch, name: &str, major: u32, initdb_args: &[&str]) -> Cluster {
        let bin = pg_bin(major);
        let pgdata = scratch.path.join(name);
        let socket_dir = scratch.dir(&format!("{name}-sock"));
        let log = scratch.path.join(format!("{name}.log"));
        let out = as_postgres(bin.join("initdb"))
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .args(initdb_args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb {major} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            major,
            pgdata,
            port: free_port(),
            socket_dir,
            bin,
            log,
            env: Vec::new(),
        };
        cluster.configure(&format!(
            "port = {}\nunix_socket_directories = '{}'\nlisten_addresses = ''\nfsync = off\nwal_level = replica\nmax_wal_senders = 2\nlog_min_messages = info\n",
            cluster.port,
            cluster.socket_dir.display()
        ));
        cluster
    }

    /// A new cluster of `major`, started, archiving through pgproof into
    /// `repo`'s cluster prefix `main`.
    pub fn archiving_into(scratch: &Scratch, repo: &TestRepo, major: u32) -> Cluster {
        let mut cluster = Cluster::init(scratch, "source", major);
        cluster.env = repo.env.clone();
        cluster.archive_with(&format!("--repo {} --cluster main", repo.url));
        cluster.start();
        cluster
    }

    /// A cluster on a data directory pgproof restored: its own port and
    /// socket directory, archiving off. Not started.
    pub fn restored(scratch: &Scratch, name: &str, major: u32, pgdata: PathBuf) -> Cluster {
        Cluster::restored_archiving(scratch, name, major, pgdata, false)
    }

    /// Like `restored`; with `archive`, archiving stays as the backup had it.
    pub fn restored_archiving(
        scratch: &Scratch,
        name: &str,
        major: u32,
        pgdata: PathBuf,
        archive: bool,
    ) -> Cluster {
        let cluster = Cluster {
            major,
            pgdata,
            port: free_port(),
            socket_dir: scratch.dir(&format!("{name}-sock")),
            bin: pg_bin(major),
            log: scratch.path.join(format!("{name}.log")),
            env: Vec::new(),
        };
        cluster.configure(&format!(
            "port = {}\nunix_socket_directories = '{}'\n{}",
            cluster.port,
            cluster.socket_dir.display(),
            if archive { "" } else { "archive_mode = off" }
        ));
        cluster
    }

    pub fn configure(&self, lines: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.pgdata.join("postgresql.conf"))
            .unwrap();
        writeln!(f, "{lines}").unwrap();
    }

    /// Turns on archiving through pgproof with the given global arguments.
    pub fn archive_with(&self, pgproof_args: &str) {
        self.configure(&format!(
            "archive_mode = on\narchive_command = '{} {pgproof_args} wal-push %p'\n",
            pgproof_exe().display()
        ));
    }

    pub fn start(&self) {
        let mut cmd = as_postgres(self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"]);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    pub fn stop(&self) {
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "connecting to PostgreSQL {} on port {}: {e}",
                    self.major, self.port
                )
            })
    }

    /// Runs statements and returns the first column of the first row of the last one, as text.
    pub fn query_one(&self, sql: &str) -> String {
        let mut c = self.client();
        let messages = c.simple_query(sql).unwrap();
        messages
            .iter()
            .rev()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Like `query_one`, but `None` while the server refuses connections.
    pub fn try_query_one(&self, sql: &str) -> Option<String> {
        let mut c = postgres::Config::new()
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .connect(postgres::NoTls)
            .ok()?;
        let messages = c.simple_query(sql).ok()?;
        messages.iter().rev().find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_string()),
            _ => None,
        })
    }

    pub fn execute(&self, sql: &str) {
        self.client().batch_execute(sql).unwrap();
    }

    /// Writes some data and switches to a new segment; returns the name of
    /// the segment that was completed.
    pub fn write_and_switch(&self, rows: u32) -> String {
        self.execute(&format!(
            "CREATE TABLE IF NOT EXISTS filler (id serial, payload text); INSERT INTO filler (payload) SELECT md5(g::text) FROM generate_series(1, {rows}) g;"
        ));
        self.query_one("SELECT pg_walfile_name(pg_switch_wal())")
    }

    /// Waits until the archiver has archived `segment` (or fails the test).
    pub fn wait_archived(&self, segment: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let row = self.query_one("SELECT coalesce(last_archived_wal, '') || ' ' || failed_count || ' ' || coalesce(last_failed_wal, '') FROM pg_stat_archiver");
            let last = row.split(' ').next().unwrap_or("");
            if !last.is_empty() && last >= segment {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{segment} was not archived in time (archiver: {row})\n{}",
                    self.server_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// From pg_control, so it works whether or not the server runs.
    /// Waits until the server has ended recovery (promoted), for at most `limit`.
    pub fn wait_promoted(&self, limit: Duration) {
        wait_until(
            &format!("{} is promoted", self.pgdata.display()),
            limit,
            || {
                self.try_query_one("SELECT pg_is_in_recovery()::text")
                    .as_deref()
                    == Some("false")
            },
        )
    }

    pub fn system_identifier(&self) -> String {
        pgproof::pg::control::ControlFile::read(&self.pgdata)
            .expect("pg_control is readable")
            .system_identifier
            .to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Where a test's repository lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    File,
    S3,
    /// Azurite, started by scripts/test.sh.
    Azure,
}

/// A repository for one test: its URL and the environment pgproof needs.
pub struct TestRepo {
    pub url: String,
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
}

pub fn s3_endpoint() -> String {
    std::env::var("PGPROOF_TEST_S3_ENDPOINT")
        .expect("PGPROOF_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts the moto S3 server")
}

pub fn s3_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing-secret-never-printed"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", s3_endpoint().as_str()),
        ("AWS_ALLOW_HTTP", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The environment that points object_store's Azure client at Azurite's
/// well-known development account.
pub fn azure_env() -> Vec<(String, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
        ("AZURITE_BLOB_STORAGE_URL".into(), azurite_endpoint()),
    ]
}

pub fn azurite_endpoint() -> String {
    std::env::var("PGPROOF_TEST_AZURITE_ENDPOINT")
        .expect("PGPROOF_TEST_AZURITE_ENDPOINT is not set: run the tests through scripts/test.sh, which starts Azurite")
}

impl TestRepo {
    pub fn new(scratch: &Scratch, backend: Backend) -> TestRepo {
        // Object stores: one prefix per test in the shared bucket.
        let prefix = scratch.path.file_name().unwrap().to_string_lossy();
        let remote = |scheme: &str, env| TestRepo {
            url: format!("{scheme}://pgproof-test/{prefix}"),
            env,
            dir: None,
        };
        match backend {
            Backend::File => {
                let dir = scratch.dir("repo");
                TestRepo {
                    url: format!("file://{}", dir.display()),
                    env: Vec::new(),
                    dir: Some(dir),
                }
            }
            Backend::S3 => remote("s3", s3_env()),
            Backend::Azure => remote("az", azure_env()),
        }
    }

    /// The repository's environment, connecting as `postgres`: what a
    /// command that talks to a test server needs (tests run as root).
    pub fn pg_env(&self) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        env.push(("PGUSER".into(), "postgres".into()));
        env
    }

    /// pgproof on this repository's cluster prefix `main`, with `pg_env`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--repo", self.url.as_str(), "--cluster", "main"];
        all.extend_from_slice(args);
        pgproof(&all, &self.pg_env(), None)
    }

    /// `restore` of cluster prefix `main` into `dest`, with `extra` arguments.
    pub fn restore(&self, dest: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["restore", dest.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `backup-push --fast` of `cluster` into cluster prefix `main`, which
    /// must succeed; the backup's name.
    pub fn backup(&self, cluster: &Cluster) -> String {
        let out = self.run(&["backup-push", cluster.pgdata.to_str().unwrap(), "--fast"]);
        assert_exit(&out, 0);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The manifests in a file repository, one per complete backup.
    pub fn manifests(&self) -> Vec<PathBuf> {
        files_under(self.dir.as_ref().expect("a file repository"))
            .into_iter()
            .filter(|p| file_name(p) == "manifest.json")
            .collect()
    }

    /// The manifest of `backup` in a file repository, as JSON.
    pub fn manifest(&self, backup: &str) -> serde_json::Value {
        let path = self
            .manifests()
            .into_iter()
            .find(|p| p.parent().and_then(|d| d.file_name()) == Some(backup.as_ref()))
            .expect("the backup has a manifest");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// Every object in a file repository, with a digest of its content.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let dir = self
            .dir
            .as_ref()
            .expect("snapshots are of file repositories");
        let mut out = BTreeMap::new();
        for p in files_under(dir) {
            let bytes = std::fs::read(&p).unwrap();
            out.insert(
                p.strip_prefix(dir).unwrap().display().to_string(),
                format!("{}:{:x}", bytes.len(), crc(&bytes)),
            );
        }
        out
    }
}

fn crc(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// `prove` of the newest backup with `major`'s binaries (15 is the
/// default the tests find on PATH) in a scratch directory of its own.
pub fn prove_args(scratch: &Scratch, major: u32) -> Vec<String> {
    let mut args = Vec::new();
    if major != 15 {
        args.push("--pg-bindir".to_string());
        args.push(
            pg_root()
                .join(major.to_string())
                .join("bin")
                .display()
                .to_string(),
        );
    }
    args.extend(["prove".to_string(), "--scratch".to_string()]);
    args.push(scratch.dir("prove-scratch").display().to_string());
    args
}

/// Runs pgproof with the given arguments and environment, never reading
/// a host-wide configuration file.
pub fn pgproof(args: &[&str], env: &[(String, String)], cwd: Option<&Path>) -> Output {
    pgproof_under(&[], args, env, cwd)
}

/// Runs pgproof as the last argument of `wrapper` (for example strace).
pub fn pgproof_under(
    wrapper: &[&str],
    args: &[&str],
    env: &[(String, String)],
    cwd: Option<&Path>,
) -> Output {
    let mut cmd = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(pgproof_exe());
            c
        }
        None => Command::new(pgproof_exe()),
    };
    cmd.args(args);
    scrub_env(&mut cmd, env);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.output().unwrap()
}

/// pgproof as a command to spawn (to run several at once, or to kill),
/// with the same environment as `pgproof`; as the unprivileged user when
/// `as_pg_user` (tests run as root).
pub fn pgproof_command(args: &[&str], env: &[(String, String)], as_pg_user: bool) -> Command {
    let mut cmd = if as_pg_user {
        as_postgres(pgproof_exe())
    } else {
        Command::new(pgproof_exe())
    };
    cmd.args(args);
    scrub_env(&mut cmd, env);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// Only the given environment reaches pgproof: none of the test run's own
/// pgproof, AWS or PGDATA settings, no host-wide configuration file.
fn scrub_env(cmd: &mut Command, env: &[(String, String)]) {
    for (k, _) in std::env::vars() {
        if k.starts_with("PGPROOF_")
            || k.starts_with("AWS_")
            || k.starts_with("AZURE")
            || k == "PGDATA"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env(
        "PGPROOF_TEST_S3_ENDPOINT",
        std::env::var("PGPROOF_TEST_S3_ENDPOINT").unwrap_or_default(),
    );
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Every file below `dir`, recursively, sorted; none when `dir` is absent.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The file name of a path, as text.
pub fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// Polls `done` until it holds, failing the test after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Asserts an exit status, showing pgproof's output when it differs.
#[track_caller]
pub fn assert_exit(out: &Output, expected: i32) {
    assert_eq!(
        code(out),
        expected,
        "unexpected exit status; stderr:\n{}\nstdout:\n{}",
        stderr(out),
        String::from_utf8_lossy(&out.stdout)
    );
}
