//! `pgproof prove [--backup NAME]`: restore a backup into a scratch
//! directory, start PostgreSQL on it, let it replay the archive to its end,
//! check what came up, record the proof in the repository, clean up.
//!
//! Phases: select the backup and find the server binaries of its major
//! (failures here record nothing: nothing about the backup was tried);
//! then restore, start, replay, checks, each a `ProofCheck`; the proof is
//! recorded whatever happened, the server stopped and the scratch directory
//! removed (guards, so also on early returns).

mod all;
mod archive_end;
mod checks;
mod request;
mod scratch;
mod server;

use super::cluster::open_repository;
use super::interrupt::interruption;
use super::restore::{self, RestoreOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::binaries::{self, Binaries};
use crate::pg::lsn::Lsn;
use crate::pg::standby_params::StandbyParams;
use crate::pg::walname::Segment;
use crate::repo::manifest::Manifest;
use crate::repo::proof::{Proof, ProofCheck, ProofTimings};
use crate::report;
use crate::settings::Settings;
pub use all::{AllOutcome, run_all};
use checks::check;
pub use request::{ProveRequest, invoke};
use scratch::{Scratch, ServerUser};
use server::{ProvingServer, Recovery};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ProveOptions {
    /// Backup name, or "latest" (the default).
    pub backup: Option<String>,
    /// Keep the scratch directory for inspection.
    pub keep: bool,
    /// Limit for the whole proof: restore, replay and checks.
    pub time_limit: Duration,
    /// The operator's query, its expected result, and the database it runs in.
    pub sql: Option<String>,
    pub expect: Option<String>,
    pub sql_database: String,
    /// Parts downloaded at once.
    pub jobs: usize,
}

/// What one attempt found, filled in as it goes.
struct Attempt {
    checks: Vec<ProofCheck>,
    server_version: String,
    replayed_to_lsn: Option<Lsn>,
    replayed_to_wal: Option<String>,
    restore_took: Option<Duration>,
    recovery_took: Option<Duration>,
}

impl Attempt {
    /// The phases measured, once recovery ended.
    fn timings(&self, manifest: &Manifest) -> Option<ProofTimings> {
        let (restore, recovery, replayed_to) = (
            self.restore_took?,
            self.recovery_took?,
            self.replayed_to_lsn?,
        );
        let millis = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        Some(ProofTimings {
            restore_secs: millis(restore),
            restored_bytes: manifest.size,
            recovery_secs: millis(recovery),
            replayed_bytes: replayed_to.0.saturating_sub(manifest.start_lsn.0),
        })
    }

    fn push(&mut self, c: ProofCheck) {
        if c.passed {
            tracing::info!("check {}: passed ({})", c.name, c.detail);
        } else {
            tracing::error!("check {}: FAILED: {}", c.name, c.detail);
        }
        self.checks.push(c);
    }
}

/// Everything an attempt works with.
struct Context<'a> {
    settings: &'a Settings,
    repo: &'a crate::repo::Repository,
    opts: &'a ProveOptions,
    manifest: &'a Manifest,
    binaries: &'a Binaries,
    user: &'a ServerUser,
    scratch: &'a Scratch,
    deadline: Instant,
}

impl Context<'_> {
    /// A query's limit: the network timeout, within what is left of the time limit.
    fn step_timeout(&self) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.settings.timeout.min(left).max(Duration::from_secs(1))
    }
}

/// Returns the verdict line on success; a `ProofFailed` error naming the
/// failed check otherwise. The proof is recorded either way.
pub async fn run(settings: &Settings, opts: &ProveOptions) -> Result<String> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let deadline = started + opts.time_limit;
    let repo = open_repository(settings)?;
    let backups = repo.backups().await?;
    let selection = restore::select::Selection {
        name: opts.backup.clone(),
        ..Default::default()
    };
    let manifest = restore::select::choose(&backups, &selection, &repo.describe())?;
    let setting = settings
        .pg_bindir
        .as_ref()
        .map(|s| (s.value.clone(), s.origin.to_string()));
    let binaries = binaries::find(
        manifest.major,
        setting.as_ref().map(|(v, o)| (v.as_str(), o.as_str())),
    )?;
    let user = ServerUser::choose(manifest.owner_uid, manifest.owner_gid)?;
    let parent = settings
        .scratch
        .as_ref()
        .map(|s| s.value.clone())
        .unwrap_or_else(std::env::temp_dir);
    let scratch = Scratch::create(
        &super::absolute(&parent)?,
        settings.cluster.value.as_str(),
        &user,
        opts.keep,
    )?;
    tracing::info!(
        "proving backup {} of {} (system {}, PostgreSQL {}, {} to {}) in {}, with {} ({}) running as {}, {}; time limit {}",
        manifest.name,
        repo.describe(),
        manifest.system_identifier,
        manifest.major,
        manifest.start_lsn,
        manifest.stop_lsn,
        scratch.root.display(),
        binaries.bindir.display(),
        binaries.found_by,
        user.describe(),
        user.why,
        report::duration(opts.time_limit)
    );
    let mut attempt = Attempt {
        checks: Vec::new(),
        server_version: binaries.version.clone(),
        replayed_to_lsn: None,
        replayed_to_wal: None,
        restore_took: None,
        recovery_took: None,
    };
    let ctx = Context {
        settings,
        repo: &repo,
        opts,
        manifest: &manifest,
        binaries: &binaries,
        user: &user,
        scratch: &scratch,
        deadline,
    };
    // Interrupted (a scheduler's timeout, a Ctrl-C): the attempt is dropped,
    // its guard stops the server, and the interruption is recorded.
    let interrupted = tokio::select! {
        () = prove(&ctx, &mut attempt) => None,
        signal = interruption() => Some(signal),
    };
    if let Some(signal) = interrupted {
        attempt.push(check(
            "interrupted",
            false,
            format!("pgproof received {signal}; the proving server was stopped"),
        ));
    }

    let succeeded = !attempt.checks.is_empty() && attempt.checks.iter().all(|c| c.passed);
    let proof = Proof {
        format: crate::repo::identity::FORMAT_VERSION,
        backup: manifest.name.clone(),
        binding: manifest.binding.clone(),
        system_identifier: manifest.system_identifier,
        started_at,
        finished_at: chrono::Utc::now(),
        duration_secs: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        pgproof_version: env!("CARGO_PKG_VERSION").to_string(),
        server_version: attempt.server_version.clone(),
        replayed_to_lsn: attempt.replayed_to_lsn,
        replayed_to_wal: attempt.replayed_to_wal.clone(),
        succeeded,
        checks: attempt.checks.clone(),
        timings: attempt.timings(&manifest),
    };
    let key = repo
        .record_proof(&proof)
        .await
        .map_err(|e| e.context("recording the proof"))?;
    tracing::info!("recorded the proof as {key}");
    if opts.keep {
        tracing::info!(
            "the scratch directory stays for inspection: {} (server log: {})",
            scratch.root.display(),
            scratch.log_file().display()
        );
    }
    drop(scratch);

    let took = report::duration(started.elapsed());
    if succeeded {
        return Ok(format!(
            "backup {} of {} proven: restored {} files ({}), replayed to {}{}, {} checks passed in {took}",
            manifest.name,
            settings.cluster.value,
            manifest.files.len(),
            report::bytes(manifest.size),
            attempt
                .replayed_to_lsn
                .map(|l| l.to_string())
                .unwrap_or_else(|| "?".into()),
            attempt
                .replayed_to_wal
                .map(|w| format!(" ({w})"))
                .unwrap_or_default(),
            attempt.checks.len()
        ));
    }
    let failed = attempt
        .checks
        .iter()
        .find(|c| !c.passed)
        .cloned()
        .unwrap_or_else(|| check("proof", false, "no check ran"));
    let hint = match failed.name.as_str() {
        "restore" => "the stored backup could not be restored as it is; prove or restore an older backup, and take a new one".to_string(),
        "start" | "replay" => format!(
            "the server log's last lines are above; when WAL is missing, the segments from {} to {} (at least) must be in the archive for this backup to be usable",
            manifest.start_wal, manifest.stop_wal
        ),
        "archive end" => "WAL after the last segment replayed is missing from the archive or unreadable, so recovery past it is impossible: find out why it was not archived, and take a new backup so that later changes are covered".to_string(),
        _ => "run again with --keep to inspect the restored cluster".to_string(),
    };
    Err(Error::new(
        ErrorKind::ProofFailed,
        format!(
            "backup {} of {} NOT proven: {} failed: {} (after {took}; the failed proof is recorded as {key})",
            manifest.name, settings.cluster.value, failed.name, failed.detail
        ),
    )
    .with_hint(hint))
}

/// Restore, start, replay, check. Stops at the first phase that fails;
/// once the server is up every check runs, so the proof says all it can.
async fn prove(ctx: &Context<'_>, a: &mut Attempt) {
    let m = ctx.manifest;
    let restore_started = Instant::now();
    let restore_opts = RestoreOptions {
        dest: ctx.scratch.data_dir(),
        backup: Some(m.name.clone()),
        target: None,
        target_action: None,
        // Never into the source's tablespace directories.
        tablespace_map: m
            .tablespaces
            .iter()
            .map(|t| (t.oid, ctx.scratch.tablespace_dir(t.oid)))
            .collect(),
        jobs: ctx.opts.jobs,
        // The copy runs with fsync off and is removed afterwards: nothing
        // needs to reach the disk before the server reads it back.
        write_mode: restore::WriteMode::Buffered,
        durable: false,
    };
    let remaining = ctx.deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(remaining, restore::restore(ctx.settings, &restore_opts)).await {
        Ok(Ok(_)) => {
            let took = restore_started.elapsed();
            a.restore_took = Some(took);
            a.push(check(
                "restore",
                true,
                format!(
                    "{} files ({}) restored and their checksums verified in {}",
                    m.files.len(),
                    report::bytes(m.size),
                    report::duration(took)
                ),
            ))
        }
        Ok(Err(e)) => {
            let detail = match e.hint() {
                Some(h) => format!("{e} ({h})"),
                None => e.to_string(),
            };
            return a.push(check("restore", false, detail));
        }
        Err(_) => {
            return a.push(check(
                "restore",
                false,
                format!(
                    "the time limit ({}) ran out while restoring",
                    report::duration(ctx.opts.time_limit)
                ),
            ));
        }
    }

    let newest_archived = archive_end::newest_segments(ctx.repo, &m.binding).await;
    let recovery_started = Instant::now();
    let mut server = match start(ctx) {
        Ok(s) => s,
        Err(e) => return a.push(check("start", false, e.to_string())),
    };
    let mut users: Vec<String> = Vec::new();
    for u in [
        std::env::var("PGUSER").ok().filter(|u| !u.is_empty()),
        ctx.user.name.clone(),
        Some("postgres".to_string()),
    ]
    .into_iter()
    .flatten()
    {
        if !users.contains(&u) {
            users.push(u);
        }
    }
    let recovered = server
        .wait_for_end_of_recovery(&users, ctx.deadline, ctx.step_timeout())
        .await;
    let tail = server.log_tail(200);
    let restored_from_log;
    let (conn, user, dbname) = match recovered {
        Recovery::Failed {
            check: name,
            detail,
            consistent_after,
        } => {
            for line in &tail[tail.len().saturating_sub(15)..] {
                tracing::error!("server log: {line}");
            }
            server.stop().await;
            if let Some(after) = consistent_after {
                a.push(started_check(after));
            }
            return a.push(check(name, false, detail));
        }
        Recovery::Ended {
            connection,
            user,
            dbname,
            consistent_after,
            replayed_to,
        } => {
            a.recovery_took = Some(recovery_started.elapsed());
            a.replayed_to_lsn = replayed_to;
            restored_from_log = server::last_restored_segment(&tail);
            // The record ending replay may end exactly at a segment boundary.
            a.replayed_to_wal = restored_from_log.clone().or_else(|| {
                replayed_to.map(|l| {
                    let last_byte = Lsn(l.0.saturating_sub(1));
                    Segment::containing(m.timeline, last_byte, m.wal_segment_size as u64)
                        .to_string()
                })
            });
            a.push(started_check(consistent_after));
            a.push(check(
                "replay",
                true,
                format!(
                    "archive replayed to {}{}, recovery ended",
                    replayed_to
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "?".into()),
                    a.replayed_to_wal
                        .as_ref()
                        .map(|w| format!(" (last segment restored: {w})"))
                        .unwrap_or_default()
                ),
            ));
            (connection, user, dbname)
        }
    };

    a.push(match &newest_archived {
        Ok(newest) => archive_end::reached_the_end(newest, restored_from_log.as_deref()),
        Err(e) => check(
            "archive end",
            false,
            format!("could not list the archive: {e}"),
        ),
    });
    match conn.identity().await {
        Ok(id) => {
            a.server_version = id.version.clone();
            a.push(checks::system_identifier(
                id.system_identifier,
                m.system_identifier,
            ));
        }
        Err(e) => a.push(check("system identifier", false, e.to_string())),
    }
    let (catalogs, databases) = checks::catalogs(&conn, ctx.step_timeout()).await;
    a.push(catalogs);
    for c in checks::connect_each(&server.endpoint, &user, &databases, ctx.step_timeout()).await {
        a.push(c);
    }
    a.push(
        checks::amcheck(
            ctx.binaries,
            &conn,
            &user,
            &dbname,
            ctx.deadline,
            ctx.step_timeout(),
        )
        .await,
    );
    if let Some(query) = &ctx.opts.sql {
        a.push(
            checks::sql(
                &server.endpoint,
                &user,
                &ctx.opts.sql_database,
                query,
                ctx.opts.expect.as_deref(),
                ctx.step_timeout(),
            )
            .await,
        );
    }
    drop(conn);
    server.stop().await;
}

fn started_check(consistent_after: Duration) -> ProofCheck {
    check(
        "start",
        true,
        format!(
            "consistent and accepting connections after {}",
            report::duration(consistent_after)
        ),
    )
}

/// Configuration files, ownership and the server process.
fn start(ctx: &Context<'_>) -> Result<ProvingServer> {
    let data = ctx.scratch.data_dir();
    if ctx.user.switch && ctx.user.uid != ctx.manifest.owner_uid {
        ctx.scratch.chown_tree(&data, ctx.user)?;
        for t in &ctx.manifest.tablespaces {
            ctx.scratch
                .chown_tree(&ctx.scratch.tablespace_dir(t.oid), ctx.user)?;
        }
    }
    let conf = ctx.scratch.conf_dir();
    ctx.scratch.write_private(
        &conf.join("postgresql.conf"),
        "# pgproof prove: the proving server's settings are on its command line\n",
        ctx.user,
    )?;
    // Only the private socket directory reaches this server.
    ctx.scratch
        .write_private(&conf.join("pg_hba.conf"), "local all all trust\n", ctx.user)?;
    ctx.scratch
        .write_private(&conf.join("pg_ident.conf"), "", ctx.user)?;
    let params = StandbyParams::read(&data)?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding", std::path::Path::new("pgproof"), e))?;
    // --pgdata: wal-fetch must use this data directory, not one the
    // configuration file gives the source cluster.
    let mut args = ctx.settings.wal_fetch_args();
    args.extend(["--pgdata".to_string(), data.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let restore_command = crate::pg::recovery::wal_fetch_command(&exe.display().to_string(), &args);
    let settings = server::server_settings(
        ctx.manifest.major,
        ctx.scratch,
        server::free_port()?,
        &restore_command,
        &params,
    );
    let mut env = Vec::new();
    if let Some(file) = &ctx.settings.config_file {
        env.push(("PGPROOF_CONFIG".to_string(), absolute_display(file)));
    }
    ProvingServer::start(ctx.binaries, ctx.scratch, ctx.user, &settings, &env)
}

fn absolute_display(path: &std::path::Path) -> String {
    super::absolute(path)
        .unwrap_or_else(|_| PathBuf::from(path))
        .display()
        .to_string()
}
