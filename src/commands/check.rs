//! `pgproof check`: the whole archiving path, end to end, one step a line.
//! Settings load; the repository answers and takes a write; the cluster is
//! found and the server reached is proven to be it; the repository prefix
//! belongs to it; archiving is on and `archive_command` calls pgproof for
//! this cluster and repository; then a forced WAL switch must arrive.
//!
//! A step that fails prints its hint; the steps that depend on it are
//! skipped, the others still run, so one run shows everything to fix.

use super::archiver;
use super::cluster::{LocalCluster, VerifiedServer, announce, open_repository};
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::walname::WalFileName;
use crate::repo::Repository;
use crate::repo::identity::Binding;
use crate::repo::wal::WalListings;
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings, parse_duration};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// How long the forced segment may take to reach the repository.
    pub archive_timeout: Duration,
}

/// Prints each step as it completes and remembers the first failure.
struct Steps {
    passed: usize,
    failed: Vec<Error>,
}

impl Steps {
    fn pass(&mut self, step: &str, detail: impl std::fmt::Display) {
        println!("  ok    {step}: {detail}");
        self.passed += 1;
    }

    fn fail(&mut self, step: &str, err: Error) {
        println!("  FAIL  {step}: {err}");
        if let Some(hint) = err.hint() {
            println!("        hint: {hint}");
        }
        self.failed.push(err);
    }

    fn skip(&mut self, step: &str, why: &str) {
        println!("  skip  {step}: {why}");
    }

    fn record<T>(&mut self, step: &str, r: Result<T>, detail: impl Fn(&T) -> String) -> Option<T> {
        match r {
            Ok(v) => {
                self.pass(step, detail(&v));
                Some(v)
            }
            Err(e) => {
                self.fail(step, e);
                None
            }
        }
    }
}

/// `pgproof check`: each step is printed as it completes; the first failed
/// step's status is the command's. Settings that do not resolve are a
/// failed first step, reported as the others are.
pub async fn invoke(over: &Overrides, archive_timeout: &str) -> Outcome {
    let result = async {
        let opts = CheckOptions {
            archive_timeout: parse_duration(archive_timeout)?,
        };
        run(
            Settings::resolve(over, None, PgdataFallback::PgdataEnv),
            &opts,
        )
        .await
    };
    Outcome::of(result.await.map(|()| String::new()))
}

pub async fn run(settings: Result<Settings>, opts: &CheckOptions) -> Result<()> {
    let mut steps = Steps {
        passed: 0,
        failed: Vec::new(),
    };
    let settings = steps.record("settings", settings, |s| {
        format!(
            "cluster {} (from {}), repository {} (from {}), data directory {}{}",
            s.cluster.value,
            s.cluster.origin,
            s.repo.value,
            s.repo.origin,
            s.pgdata
                .as_ref()
                .map(|p| format!("{} (from {})", p.value.display(), p.origin))
                .unwrap_or_else(|| "not set".into()),
            s.config_file
                .as_ref()
                .map(|f| format!(", configuration file {}", f.display()))
                .unwrap_or_default()
        )
    });
    let Some(settings) = settings else {
        return finish(steps, None);
    };

    let repo = match open_repository(&settings) {
        Ok(r) => steps.record("repository", probe_repository(&r).await.map(|()| r), |r| {
            format!("{} is reachable and writable", r.describe())
        }),
        Err(e) => {
            steps.fail("repository", e);
            None
        }
    };

    let server = match LocalCluster::open(&settings) {
        Ok(local) => match local.connect_verified(&settings).await {
            Ok(server) => {
                if let Some(repo) = &repo {
                    announce(&settings, &local, &server, repo);
                }
                steps.pass(
                    "cluster",
                    format!(
                        "{} reached at {} is this cluster (system identifier, data directory and major agree)",
                        local.describe(),
                        server.reached
                    ),
                );
                Some((local, server))
            }
            Err(e) => {
                steps.fail("cluster", e);
                None
            }
        },
        Err(e) => {
            steps.fail("cluster", e);
            None
        }
    };

    let bound = match (&repo, &server) {
        (Some(repo), Some((local, _))) => {
            steps.record("identity", check_binding(repo, local).await, |b| match b {
                Some(b) => format!(
                    "{} belongs to system {} (PostgreSQL {}), bound {}",
                    repo.describe(),
                    b.system_identifier,
                    b.major,
                    b.bound_at.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!(
                    "{} is empty; the first WAL pushed binds it to this cluster",
                    repo.describe()
                ),
            })
        }
        _ => {
            steps.skip("identity", "needs the repository and the cluster");
            None
        }
    };

    let archiving = match &server {
        Some((local, server)) => {
            let mode = steps.record("archive_mode", archive_mode(server).await, |m| {
                format!("archive_mode = {m}")
            });
            let command = steps.record(
                "archive_command",
                archive_command(&settings, local, server).await,
                |c| c.clone(),
            );
            mode.is_some() && command.is_some()
        }
        None => {
            steps.skip("archive_mode", "needs the cluster");
            steps.skip("archive_command", "needs the cluster");
            false
        }
    };

    match (&repo, &server, bound.is_some() && archiving) {
        (Some(repo), Some((local, server)), true) => {
            let r = switch_and_wait(repo, local, server, opts.archive_timeout).await;
            steps.record("archiving", r, |(name, took)| {
                format!(
                    "forced segment {name} reached {} in {}",
                    repo.describe(),
                    report::duration(*took)
                )
            });
        }
        _ => steps.skip(
            "archiving",
            "a forced WAL switch needs every step above to pass",
        ),
    }
    finish(steps, Some(&settings))
}

fn finish(steps: Steps, settings: Option<&Settings>) -> Result<()> {
    let total = steps.passed + steps.failed.len();
    match steps.failed.into_iter().next() {
        None => {
            println!(
                "check passed: {} steps; cluster {} is archived to {}",
                total,
                settings
                    .map(|s| s.cluster.value.to_string())
                    .unwrap_or_default(),
                settings
                    .map(|s| s.repo.value.to_string())
                    .unwrap_or_default()
            );
            Ok(())
        }
        Some(first) => {
            let failed = total - steps.passed;
            println!("check failed: {failed} of {total} steps");
            Err(Error::new(
                first.kind(),
                format!(
                    "{failed} of {total} steps failed; the first: {}",
                    first.message()
                ),
            ))
        }
    }
}

/// Writes, reads back and removes a small object under the cluster's prefix.
async fn probe_repository(repo: &Repository) -> Result<()> {
    let token = format!(
        "{}-{}",
        hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    );
    repo.probe(&token).await
}

pub(crate) async fn check_binding(
    repo: &Repository,
    local: &LocalCluster,
) -> Result<Option<Binding>> {
    let Some(record) = repo.load_record().await? else {
        return Ok(None);
    };
    let current = record.current().clone();
    if current.is_system(local.control.system_identifier, local.control.major) {
        return Ok(Some(current));
    }
    Err(Error::identity(format!(
        "{} belongs to system {} (PostgreSQL {}, bound from {}:{}), not to this cluster (system {}, PostgreSQL {}, {})",
        repo.describe(),
        current.system_identifier,
        current.major,
        current.host,
        current.pgdata,
        local.control.system_identifier,
        local.control.major,
        local.pgdata.display()
    ))
    .with_hint("this cluster needs its own cluster name: set --cluster / PGPROOF_CLUSTER / a configuration section, and use the same name in archive_command; if it is the same cluster after pg_upgrade or a new initdb, run `pgproof rebind` for its data directory"))
}

async fn show(server: &VerifiedServer, setting: &str) -> Result<String> {
    let row = server
        .connection
        .client
        .query_one("SELECT current_setting($1)", &[&setting])
        .await
        .map_err(|e| {
            server
                .connection
                .query_error(&format!("reading {setting}"), e)
        })?;
    Ok(row.get(0))
}

async fn archive_mode(server: &VerifiedServer) -> Result<String> {
    let mode = show(server, "archive_mode").await?;
    if mode == "on" || mode == "always" {
        return Ok(mode);
    }
    Err(Error::config(format!("archive_mode is {mode}"))
        .with_hint("set archive_mode = on in postgresql.conf and restart the server"))
}

/// Checks that archive_command calls `pgproof wal-push %p`, and that the
/// settings it will run with (its flags, the server's environment, the
/// configuration file, with PGDATA as the working directory) name this
/// cluster and repository.
async fn archive_command(
    settings: &Settings,
    local: &LocalCluster,
    server: &VerifiedServer,
) -> Result<String> {
    let hint = format!(
        "set archive_command = '{} --cluster {} wal-push %p' (with PGPROOF_REPO={} in the server's environment, or --repo, or a configuration file), then reload",
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "pgproof".into()),
        settings.cluster.value,
        settings.repo.value
    );
    if server.identity.major() >= 15 {
        let library = show(server, "archive_library").await?;
        if !library.is_empty() {
            return Err(Error::config(format!(
                "archive_library is {library:?}, so archive_command is not used"
            ))
            .with_hint(format!("reset archive_library; {hint}")));
        }
    }
    let command = show(server, "archive_command").await?;
    let call =
        archiver::parse(&command).map_err(|why| Error::config(why).with_hint(hint.clone()))?;
    let environment = archiver::postmaster_environment(&local.pgdata);
    let theirs = archiver::settings(&call, &local.pgdata, environment.as_deref()).map_err(|e| {
        let hint = e.hint().map(str::to_string).unwrap_or_else(|| hint.clone());
        Error::config(format!(
            "archive_command {command:?} cannot find its settings: {}",
            e.message()
        ))
        .with_hint(hint)
    })?;
    let unseen = if environment.is_none() {
        " (the server's environment could not be read; PGPROOF_* variables set there are not accounted for)"
    } else {
        ""
    };
    if theirs.cluster.value != settings.cluster.value || theirs.repo.value != settings.repo.value {
        return Err(Error::config(format!(
            "archive_command {command:?} archives into cluster {} (from {}) of {} (from {}), but this check is for cluster {} of {}{unseen}",
            theirs.cluster.value,
            theirs.cluster.origin,
            theirs.repo.value,
            theirs.repo.origin,
            settings.cluster.value,
            settings.repo.value
        ))
        .with_hint(format!("make them agree: {hint}")));
    }
    if !archiver::program_runs(&call.program) {
        return Err(Error::config(format!(
            "archive_command runs {}, which is not an executable file on PATH or at that path",
            call.program
        ))
        .with_hint(hint));
    }
    Ok(format!(
        "{command:?} archives cluster {} (from {}) into {} (from {}){unseen}",
        theirs.cluster.value, theirs.cluster.origin, theirs.repo.value, theirs.repo.origin
    ))
}

/// Forces a segment switch and waits for that segment in the repository.
async fn switch_and_wait(
    repo: &Repository,
    local: &LocalCluster,
    server: &VerifiedServer,
    timeout: Duration,
) -> Result<(String, Duration)> {
    if server.identity.in_recovery {
        return Err(Error::new(
            ErrorKind::Refused,
            "the server is a standby; a WAL switch can only be forced on the primary",
        )
        .with_hint("run check on the primary"));
    }
    let client = &server.connection.client;
    // A switch with no WAL written since the last one is a no-op: write a record first.
    client
        .query_one("SELECT pg_create_restore_point('pgproof check')", &[])
        .await
        .map_err(|e| server.connection.query_error("writing a restore point", e))?;
    let row = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .map_err(|e| server.connection.query_error("forcing a WAL switch", e))?;
    let name_text: String = row.get(0);
    let name = WalFileName::parse(&name_text)?;
    tracing::info!(
        "forced a switch out of {name_text}; waiting up to {} for it to reach {}",
        report::duration(timeout),
        repo.describe()
    );
    let binding = Binding::id_for(local.control.system_identifier, local.control.major);
    let started = Instant::now();
    loop {
        let mut listings = WalListings::new(repo, &binding);
        if listings.find(name).await?.is_some() {
            return Ok((name_text, started.elapsed()));
        }
        if started.elapsed() > timeout {
            let failure = client
                .query_opt(
                    "SELECT last_failed_wal, last_failed_time::text, failed_count::text FROM pg_stat_archiver WHERE last_failed_wal IS NOT NULL",
                    &[],
                )
                .await
                .ok()
                .flatten()
                .map(|r| {
                    format!(
                        "; the archiver last failed on {} at {} ({} failures so far)",
                        r.get::<_, String>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2)
                    )
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "{name_text} did not reach {} within {}{failure}",
                    repo.describe(),
                    report::duration(timeout)
                ),
            )
            .with_hint("PostgreSQL's log shows the archive_command's errors (lines starting with `pgproof wal-push:`)"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
