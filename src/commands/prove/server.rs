//! The proving server: PostgreSQL started on the restored data directory,
//! made independent of the source host, watched until archive recovery
//! ends, and stopped.
//!
//! Every setting that could reach outside the scratch directory is given on
//! the command line, which wins over the restored `postgresql.auto.conf`
//! (the backup's `postgresql.conf`, if it has one, is not read at all):
//! no archiving into the repository, no listening on the network, a private
//! socket directory, no preloaded libraries that may be missing here, no
//! SSL files, no external pid file, no commands run at the end of recovery,
//! no primary to stream from, no recovery target left over from an earlier
//! restore of the source.

use super::scratch::{Scratch, ServerUser};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::binaries::Binaries;
use crate::pg::lsn::Lsn;
use crate::pg::recovery;
use crate::pg::server::{Connection, Endpoint};
use crate::pg::standby_params::StandbyParams;
use crate::pg::version::Major;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often progress is reported while the server recovers.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Settings for the proving server, in the order they are given.
pub fn server_settings(
    major: Major,
    scratch: &Scratch,
    port: u16,
    restore_command: &str,
    params: &StandbyParams,
) -> Vec<(String, String)> {
    let conf = scratch.conf_dir();
    let path = |p: PathBuf| p.display().to_string();
    let mut s: Vec<(&str, String)> = vec![
        ("config_file", path(conf.join("postgresql.conf"))),
        ("hba_file", path(conf.join("pg_hba.conf"))),
        ("ident_file", path(conf.join("pg_ident.conf"))),
        ("port", port.to_string()),
        ("listen_addresses", String::new()),
        ("unix_socket_directories", path(scratch.socket_dir())),
        ("unix_socket_group", String::new()),
        ("unix_socket_permissions", "0700".into()),
        ("archive_mode", "off".into()),
        ("restore_command", restore_command.to_string()),
        ("archive_cleanup_command", String::new()),
        ("recovery_end_command", String::new()),
        ("primary_conninfo", String::new()),
        ("primary_slot_name", String::new()),
        ("hot_standby", "on".into()),
        ("shared_preload_libraries", String::new()),
        ("session_preload_libraries", String::new()),
        ("local_preload_libraries", String::new()),
        ("ssl", "off".into()),
        ("external_pid_file", String::new()),
        ("logging_collector", "off".into()),
        ("log_destination", "stderr".into()),
        ("log_min_messages", "warning".into()),
        // The log is read for progress and for why the server stopped.
        ("lc_messages", "C".into()),
        ("shared_buffers", "128MB".into()),
        ("huge_pages", "try".into()),
        ("synchronous_standby_names", String::new()),
        // A throwaway copy: durability buys nothing and costs time.
        ("fsync", "off".into()),
        ("cluster_name", "pgproof-prove".into()),
    ];
    // No recovery target left over from an earlier restore of the source.
    s.extend(recovery::no_target_settings());
    if major.number() <= 14 {
        s.push(("stats_temp_directory", "pg_stat_tmp".into()));
    }
    if major.number() <= 15 {
        s.push(("promote_trigger_file", String::new()));
    }
    // Hot standby refuses settings below the primary's, which pg_control keeps.
    s.extend(params.settings());
    s.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A free TCP port number: PostgreSQL uses the port number in its socket
/// file name and shared memory key even when it listens on no TCP address.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::new(ErrorKind::LocalIo, "finding a free port").with_source(e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::new(ErrorKind::LocalIo, "finding a free port").with_source(e))
}

pub struct ProvingServer {
    child: Child,
    pub endpoint: Endpoint,
    pub log: PathBuf,
    stopped: bool,
}

impl ProvingServer {
    pub fn start(
        binaries: &Binaries,
        scratch: &Scratch,
        user: &ServerUser,
        settings: &[(String, String)],
        env: &[(String, String)],
    ) -> Result<ProvingServer> {
        let log = scratch.log_file();
        let out = std::fs::File::create(&log).map_err(|e| Error::io("creating", &log, e))?;
        let err = out.try_clone().map_err(|e| Error::io("opening", &log, e))?;
        let mut cmd = Command::new(binaries.postgres());
        cmd.arg("-D").arg(scratch.data_dir());
        let mut port = 0;
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
            if k == "port" {
                port = v.parse().unwrap_or(0);
            }
        }
        // The source's connection and data directory settings must not leak in.
        for var in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGPROOF_PGDATA",
            "PGPROOF_PGHOST",
            "PGPROOF_PGPORT",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&scratch.root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if user.switch {
            // std drops the supplementary groups before setuid.
            cmd.uid(user.uid).gid(user.gid);
        }
        let child = cmd.spawn().map_err(|e| {
            Error::new(
                ErrorKind::Postgres,
                format!("cannot start {}", binaries.postgres().display()),
            )
            .with_source(e)
        })?;
        tracing::info!(
            "started PostgreSQL ({}) as {} on {}/.s.PGSQL.{port} (pid {}); log: {}",
            binaries.version,
            user.describe(),
            scratch.socket_dir().display(),
            child.id(),
            log.display()
        );
        Ok(ProvingServer {
            child,
            endpoint: Endpoint {
                host: scratch.socket_dir().display().to_string(),
                port,
            },
            log,
            stopped: false,
        })
    }

    /// The exit status, if the postmaster has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fast shutdown, then immediate, then kill, each bounded.
    pub async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        for (signal, wait) in [
            (Signal::SIGINT, Duration::from_secs(60)),
            (Signal::SIGQUIT, Duration::from_secs(10)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if self.exited().is_some() {
                break;
            }
            self.signal(signal);
            let deadline = Instant::now() + wait;
            while self.exited().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        self.stopped = true;
    }

    /// Our own child: its pid cannot be reused before we reap it. A
    /// postmaster that already exited is not an error.
    fn signal(&self, signal: Signal) {
        let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal);
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        log_tail(&self.log, n)
    }
}

impl Drop for ProvingServer {
    fn drop(&mut self) {
        // Reached on an early return or a panic: never leave a server behind.
        if !self.stopped && self.exited().is_none() {
            self.signal(Signal::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.exited().is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let mut bytes = Vec::new();
    if f.read_to_end(&mut bytes).is_ok() {
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The newest WAL segment PostgreSQL reports having restored from the archive.
pub fn last_restored_segment(lines: &[String]) -> Option<String> {
    lines.iter().rev().find_map(|l| {
        let rest = l.split_once("restored log file \"")?.1;
        let name = rest.split('"').next()?;
        (name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())).then(|| name.to_string())
    })
}

/// The lines of a log that say why a server stopped (not the connections
/// it refused while starting), with wal-fetch's reasons for failing.
pub fn fatal_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| {
            l.contains("FATAL:")
                || l.contains("PANIC:")
                // Why restore_command failed, in its own words.
                || (l.starts_with("pgproof wal-fetch: ERROR:") && !l.contains("hint:"))
        })
        .filter(|l| !l.contains("the database system is "))
        .cloned()
        .collect()
}

/// How waiting for the end of archive recovery ended.
pub enum Recovery {
    /// Promoted after replaying the archive to its end.
    Ended {
        connection: Box<Connection>,
        user: String,
        dbname: String,
        consistent_after: Duration,
        replayed_to: Option<Lsn>,
    },
    /// The server accepted no connection (`start`) or did not finish
    /// recovery (`replay`) in time, or exited; with the reason.
    Failed {
        check: &'static str,
        detail: String,
        /// When it had become consistent, if it had.
        consistent_after: Option<Duration>,
    },
}

impl ProvingServer {
    /// Polls until the server has left recovery, reporting progress; gives
    /// up when the postmaster exits or the deadline passes.
    pub async fn wait_for_end_of_recovery(
        &mut self,
        users: &[String],
        deadline: Instant,
        timeout: Duration,
    ) -> Recovery {
        let started = Instant::now();
        let mut user_at = 0usize;
        let mut dbname = "postgres";
        let mut connected: Option<(Connection, Duration)> = None;
        let mut last_report = Instant::now();
        let mut last_error = String::new();
        let mut last_attempt: Option<Instant> = None;
        // When the log first said so; the first connection may come later,
        // or never, when replay fails soon after.
        let mut consistent_at: Option<Duration> = None;
        loop {
            let tail = self.log_tail(200);
            if consistent_at.is_none()
                && tail
                    .iter()
                    .any(|l| l.contains("consistent recovery state reached"))
            {
                consistent_at = Some(started.elapsed());
            }
            let consistent = match (connected.as_ref().map(|(_, d)| *d), consistent_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A failure before consistency is the start's; after it, the replay's.
            let check = if consistent.is_some() {
                "replay"
            } else {
                "start"
            };
            if let Some(status) = self.exited() {
                let tail = self.log_tail(200);
                let fatal = fatal_lines(&tail);
                let why = if fatal.is_empty() {
                    tail[tail.len().saturating_sub(5)..].join(" | ")
                } else {
                    fatal.join(" | ")
                };
                return Recovery::Failed {
                    check,
                    consistent_after: consistent,
                    detail: format!("the server exited ({status}) during recovery: {why}"),
                };
            }
            if Instant::now() >= deadline {
                return Recovery::Failed {
                    check,
                    consistent_after: consistent,
                    detail: format!(
                        "the time limit ran out after {} ({}){}",
                        crate::report::duration(started.elapsed()),
                        if consistent.is_some() {
                            "the server was still replaying WAL"
                        } else {
                            "the server never reached a consistent state"
                        },
                        if last_error.is_empty() {
                            String::new()
                        } else {
                            format!("; last connection error: {last_error}")
                        }
                    ),
                };
            }
            // Every refused connection costs a FATAL line in the server's log:
            // connect once it says it is ready, or now and then in case it
            // says so in words this does not know.
            let try_now = connected.is_none()
                && (last_attempt.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY)
                    || self
                        .log_tail(50)
                        .iter()
                        .any(|l| l.contains("ready to accept")));
            if try_now {
                last_attempt = Some(Instant::now());
                let user = &users[user_at];
                match crate::pg::server::connect_to(&self.endpoint, user, dbname, timeout).await {
                    Ok(c) => connected = Some((c, started.elapsed())),
                    Err(e) => {
                        let text = e.to_string();
                        if text.contains("role") && text.contains("does not exist") {
                            if user_at + 1 < users.len() {
                                user_at += 1;
                            } else {
                                last_error = text;
                            }
                        } else if text.contains("database") && text.contains("does not exist") {
                            // Someone dropped it: template1 is always there.
                            dbname = "template1";
                            last_error = text;
                        } else {
                            last_error = text;
                        }
                    }
                }
            }
            if let Some((conn, consistent_after)) = &connected {
                match conn
                    .client
                    .query_one(
                        "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, \
                                pg_is_in_recovery() AND pg_is_wal_replay_paused()",
                        &[],
                    )
                    .await
                {
                    Ok(row) => {
                        let in_recovery: bool = row.get(0);
                        let lsn: Option<String> = row.get(1);
                        let lsn = lsn.and_then(|l| l.parse::<Lsn>().ok());
                        if !in_recovery {
                            let (connection, connected_after) =
                                connected.take().expect("connected");
                            return Recovery::Ended {
                                connection: Box::new(connection),
                                user: users[user_at].clone(),
                                dbname: dbname.to_string(),
                                consistent_after: consistent.unwrap_or(connected_after),
                                replayed_to: lsn,
                            };
                        }
                        let paused: bool = row.get(2);
                        if paused {
                            // From 14, settings below the primary's pause recovery for good.
                            let tail = self.log_tail(200);
                            let why: Vec<&String> = tail
                                .iter()
                                .filter(|l| {
                                    l.contains("WARNING:")
                                        || l.contains("DETAIL:")
                                        || l.contains("FATAL:")
                                })
                                .collect();
                            return Recovery::Failed {
                                check: "replay",
                                consistent_after: Some(*consistent_after),
                                detail: format!(
                                    "recovery paused at {}: {}",
                                    lsn.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                                    why.iter()
                                        .map(|l| l.as_str())
                                        .collect::<Vec<_>>()
                                        .join(" | ")
                                ),
                            };
                        }
                        if last_report.elapsed() >= PROGRESS_EVERY {
                            last_report = Instant::now();
                            tracing::info!(
                                "replaying archived WAL: consistent after {}, replayed to {} ({} so far)",
                                crate::report::duration(*consistent_after),
                                lsn.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                                crate::report::duration(started.elapsed())
                            );
                        }
                    }
                    Err(e) => {
                        // Promotion does not end sessions; a lost one is reopened.
                        last_error = e.to_string();
                        connected = None;
                    }
                }
            } else if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                let restored = last_restored_segment(&self.log_tail(200));
                tracing::info!(
                    "waiting for a consistent state: {} ({} so far)",
                    restored
                        .map(|s| format!("WAL restored up to {s}"))
                        .unwrap_or_else(|| "no WAL restored yet".into()),
                    crate::report::duration(started.elapsed())
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restored_segments_and_fatal_lines_from_a_log() {
        let log: Vec<String> = [
            "2026-11-25 20:00:00 UTC [1] LOG:  restored log file \"000000010000000000000002\" from archive",
            "pgproof wal-fetch: restored 000000010000000000000003 from file:///r/main (16.0 MiB) in 3 ms",
            "2026-11-25 20:00:01 UTC [1] LOG:  restored log file \"000000010000000000000003\" from archive",
            "2026-11-25 20:00:01 UTC [1] LOG:  restored log file \"00000002.history\" from archive",
            "2026-11-25 20:00:01 UTC [2] FATAL:  the database system is starting up",
            "pgproof wal-fetch: ERROR: stored object x is corrupt: it does not decompress",
            "pgproof wal-fetch: ERROR: hint: the copy in the repository is damaged; it was not used",
            "2026-11-25 20:00:02 UTC [1] FATAL:  WAL ends before end of online backup",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            last_restored_segment(&log).as_deref(),
            Some("000000010000000000000003")
        );
        assert_eq!(fatal_lines(&log).len(), 2);
    }

    #[test]
    fn nothing_reaches_outside_the_scratch_directory() {
        let scratch = Scratch::at(PathBuf::from("/nonexistent/pgproof-prove-x-1"));
        let params = StandbyParams {
            max_connections: 300,
            max_worker_processes: 8,
            max_wal_senders: 10,
            max_prepared_transactions: 0,
            max_locks_per_transaction: 64,
        };
        for major in [13, 15, 17] {
            let s = server_settings(
                Major::new(major).unwrap(),
                &scratch,
                5999,
                "pgproof wal-fetch %f %p",
                &params,
            );
            let get = |k: &str| s.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(get("archive_mode"), Some("off"));
            assert_eq!(get("listen_addresses"), Some(""));
            assert_eq!(get("shared_preload_libraries"), Some(""));
            assert_eq!(get("max_connections"), Some("300"));
            assert_eq!(
                get("unix_socket_directories"),
                Some("/nonexistent/pgproof-prove-x-1/socket")
            );
            assert_eq!(get("recovery_target_time"), Some(""));
            assert_eq!(get("recovery_target_timeline"), Some("latest"));
            assert_eq!(get("stats_temp_directory").is_some(), major <= 14);
            assert_eq!(get("promote_trigger_file").is_some(), major <= 15);
        }
    }
}
