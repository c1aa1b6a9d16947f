//! The command line: clap definitions (their doc comments are the help
//! text), settings resolution, and the mapping of results to exit statuses.

use crate::commands::{backup_list, backup_push, prove, restore, wal_fetch, wal_push};
use crate::error::Error;
use crate::report::{self, Verbosity};
use crate::settings::{Origin, Overrides, PgdataFallback, Settings, Sourced};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

/// PostgreSQL continuous archiving and point-in-time recovery, bound to the
/// cluster it came from.
#[derive(Debug, Parser)]
#[command(name = "pgproof", version, about, max_term_width = 100)]
pub struct Cli {
    /// Configuration file [default: /etc/pgproof/pgproof.toml when it exists]
    #[arg(long, global = true, env = "PGPROOF_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cluster name: the cluster's prefix in the repository
    #[arg(long, global = true, env = "PGPROOF_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,
    /// Repository: file:///path or s3://bucket/prefix
    #[arg(long, global = true, env = "PGPROOF_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// Compression of stored files: zstd, zstd:LEVEL, lz4 or none [default: zstd:3]
    #[arg(long, global = true, env = "PGPROOF_COMPRESSION", value_name = "CODEC")]
    pub compression: Option<String>,
    /// The cluster's data directory
    #[arg(long, global = true, env = "PGPROOF_PGDATA", value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Time limit for each network step, e.g. 30s or 2m [default: 60s]
    #[arg(long, global = true, env = "PGPROOF_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Socket directory or host of the server, overriding PGDATA/postmaster.pid
    #[arg(long, global = true, env = "PGPROOF_PGHOST", value_name = "HOST")]
    pub pghost: Option<String>,
    /// Port of the server, overriding PGDATA/postmaster.pid
    #[arg(long, global = true, env = "PGPROOF_PGPORT", value_name = "PORT")]
    pub pgport: Option<u16>,
    /// wal-push: how many other files already marked ready to push alongside [default: 4]
    #[arg(long, global = true, env = "PGPROOF_PUSH_AHEAD", value_name = "N")]
    pub push_ahead: Option<usize>,
    /// wal-fetch: how many following segments to download in the background [default: 8]
    #[arg(long, global = true, env = "PGPROOF_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,
    /// Directory of the server binaries (prove); "{major}" stands for the major
    /// [default: /usr/lib/postgresql/<major>/bin, then PATH]
    #[arg(long, global = true, env = "PGPROOF_PG_BINDIR", value_name = "DIR")]
    pub pg_bindir: Option<String>,
    /// Say more (-v), or everything (-vv)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print errors only
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive one WAL file; use as archive_command = 'pgproof wal-push %p'
    WalPush {
        /// Path of the file, relative to the data directory (%p)
        path: PathBuf,
    },
    /// Restore one WAL file; use as restore_command = 'pgproof wal-fetch %f %p'
    ///
    /// Exits 0 with the file in place, 1 when it is not archived, 128 on any
    /// other failure (1 in standby mode, so that a standby retries).
    WalFetch {
        /// File name wanted (%f)
        name: String,
        /// Where to write it, relative to the data directory (%p)
        dest: PathBuf,
    },
    /// Take a base backup of a running cluster
    BackupPush {
        /// The cluster's data directory [default: the configured one, else $PGDATA]
        pgdata: Option<PathBuf>,
        /// Start with an immediate checkpoint rather than a spread one
        #[arg(long)]
        fast: bool,
        /// Parts written at once
        #[arg(long, default_value_t = 2, value_name = "N")]
        jobs: usize,
        /// How long to wait for the archiver to store the backup's WAL
        #[arg(long, default_value = "5m", value_name = "DURATION")]
        archive_timeout: String,
    },
    /// List the complete backups of a cluster, oldest first
    BackupList {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into an empty directory and configure recovery
    #[command(alias = "backup-fetch")]
    Restore {
        /// Destination data directory (must be empty or absent)
        dest: PathBuf,
        /// Backup name, or "latest" [default: the newest that ends before the target]
        #[arg(long, value_name = "NAME")]
        backup: Option<String>,
        /// Recover up to this time (as psql prints it, or RFC 3339)
        #[arg(long, value_name = "TIME", group = "target")]
        target_time: Option<String>,
        /// Recover up to this LSN
        #[arg(long, value_name = "LSN", group = "target")]
        target_lsn: Option<String>,
        /// Recover up to this transaction id
        #[arg(long, value_name = "XID", group = "target")]
        target_xid: Option<String>,
        /// Recover up to this restore point (pg_create_restore_point)
        #[arg(long, value_name = "NAME", group = "target")]
        target_name: Option<String>,
        /// Stop as soon as the backup is consistent
        #[arg(long, group = "target")]
        target_immediate: bool,
        /// What the server does at the target: pause, promote or shutdown
        #[arg(long, value_name = "ACTION")]
        target_action: Option<String>,
        /// Put tablespace OID in DIR instead of its original place (repeatable)
        #[arg(long = "tablespace", value_name = "OID=DIR")]
        tablespaces: Vec<String>,
        /// Parts downloaded at once
        #[arg(long, default_value_t = 2, value_name = "N")]
        jobs: usize,
    },
    /// Restore a backup into a scratch directory, start PostgreSQL on it, replay
    /// the archive, run checks, and record the proof in the repository
    ///
    /// Exits 0 when every check passed, 12 when one failed (the failed proof
    /// is recorded too).
    Prove {
        /// Backup name, or "latest"
        #[arg(long, value_name = "NAME", default_value = "latest")]
        backup: String,
        /// Where to create the scratch directory [default: the system temp directory]
        #[arg(long, env = "PGPROOF_SCRATCH", value_name = "DIR")]
        scratch: Option<PathBuf>,
        /// Keep the scratch directory (restored data and server log) for inspection
        #[arg(long)]
        keep: bool,
        /// Limit for the whole proof: restore, replay and checks
        #[arg(long, default_value = "30m", value_name = "DURATION")]
        time_limit: String,
        /// A query whose first column of its first row is checked
        #[arg(long, value_name = "QUERY")]
        sql: Option<String>,
        /// The text --sql must return [default: any result]
        #[arg(long, value_name = "TEXT", requires = "sql")]
        expect: Option<String>,
        /// Database --sql runs in
        #[arg(
            long,
            value_name = "NAME",
            default_value = "postgres",
            requires = "sql"
        )]
        sql_database: String,
        /// Parts downloaded at once
        #[arg(long, default_value_t = 2, value_name = "N")]
        jobs: usize,
    },
    /// Download the segments after NAME into the prefetch spool (started by wal-fetch)
    #[command(hide = true)]
    WalPrefetch { name: String },
}

impl Command {
    fn label(&self) -> &'static str {
        match self {
            Command::WalPush { .. } => "wal-push",
            Command::WalFetch { .. } => "wal-fetch",
            Command::WalPrefetch { .. } => "wal-prefetch",
            Command::BackupPush { .. } => "backup-push",
            Command::BackupList { .. } => "backup-list",
            Command::Restore { .. } => "restore",
            Command::Prove { .. } => "prove",
        }
    }
}

/// Parses the process arguments, runs the command and returns the exit status.
pub fn main() -> i32 {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        (false, 1) => Verbosity::Verbose,
        _ => Verbosity::Debug,
    };
    let label = cli.command.label();
    report::init_logging(verbosity, label);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgproof {label}: ERROR: cannot start the async runtime: {e}");
            return 70;
        }
    };
    runtime.block_on(dispatch(cli, &matches))
}

async fn dispatch(cli: Cli, matches: &ArgMatches) -> i32 {
    let label = cli.command.label();
    let over = overrides(&cli, matches);
    match &cli.command {
        Command::WalPush { path } => {
            let settings = match Settings::resolve(&over, None, PgdataFallback::WorkingDirectory) {
                Ok(s) => s,
                Err(e) => return fail(label, &e, e.kind().exit_code()),
            };
            let opts = wal_push::WalPushOptions { path: path.clone() };
            match wal_push::run(&settings, &opts).await {
                Ok(()) => 0,
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
        Command::WalFetch { name, dest } => {
            let settings = match Settings::resolve(&over, None, PgdataFallback::WorkingDirectory) {
                Ok(s) => s,
                // Without settings we cannot know whether this is a standby:
                // stopping recovery is the safe answer.
                Err(e) => return fail(label, &e, wal_fetch::EXIT_STOP_RECOVERY),
            };
            let opts = wal_fetch::WalFetchOptions {
                name: name.clone(),
                dest: dest.clone(),
            };
            match wal_fetch::run(&settings, &opts).await {
                Ok(fetched) => fetched.into(),
                Err(e) => fail(label, &e, wal_fetch::failure_exit_code(&settings)),
            }
        }
        Command::BackupPush {
            pgdata,
            fast,
            jobs,
            archive_timeout,
        } => {
            let result = async {
                let settings = Settings::resolve(&over, pgdata.clone(), PgdataFallback::PgdataEnv)?;
                let opts = backup_push::BackupPushOptions {
                    fast: *fast,
                    jobs: *jobs,
                    archive_timeout: crate::settings::parse_duration(archive_timeout)?,
                };
                backup_push::run(&settings, &opts).await
            };
            match result.await {
                Ok(name) => {
                    println!("{name}");
                    0
                }
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
        Command::BackupList { json } => {
            let result = async {
                let settings = Settings::resolve(&over, None, PgdataFallback::PgdataEnv)?;
                backup_list::run(&settings, *json).await
            };
            match result.await {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
        Command::Restore {
            dest,
            backup,
            target_time,
            target_lsn,
            target_xid,
            target_name,
            target_immediate,
            target_action,
            tablespaces,
            jobs,
        } => {
            let result = async {
                let settings = Settings::resolve(&over, None, PgdataFallback::PgdataEnv)?;
                let target = if let Some(t) = target_time {
                    Some(restore::Target::Time(t.clone()))
                } else if let Some(l) = target_lsn {
                    Some(restore::Target::Lsn(l.clone()))
                } else if let Some(x) = target_xid {
                    Some(restore::Target::Xid(x.clone()))
                } else if let Some(n) = target_name {
                    Some(restore::Target::Name(n.clone()))
                } else if *target_immediate {
                    Some(restore::Target::Immediate)
                } else {
                    None
                };
                let mut map = Vec::new();
                for t in tablespaces {
                    let (oid, dir) = t
                        .split_once('=')
                        .and_then(|(o, d)| Some((o.parse::<u32>().ok()?, PathBuf::from(d))))
                        .ok_or_else(|| {
                            Error::config(format!("--tablespace {t:?} is not OID=DIR"))
                        })?;
                    map.push((oid, dir));
                }
                let opts = restore::RestoreOptions {
                    dest: crate::commands::absolute(dest)?,
                    backup: backup.clone(),
                    target,
                    target_action: target_action.clone(),
                    tablespace_map: map,
                    jobs: *jobs,
                };
                restore::run(&settings, &opts).await
            };
            match result.await {
                Ok(()) => 0,
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
        Command::Prove {
            backup,
            scratch,
            keep,
            time_limit,
            sql,
            expect,
            sql_database,
            jobs,
        } => {
            let result = async {
                let mut over = over.clone();
                over.scratch = scratch.clone().map(|s| {
                    let source = matches
                        .subcommand_matches("prove")
                        .and_then(|m| m.value_source("scratch"));
                    let origin = match source {
                        Some(ValueSource::EnvVariable) => Origin::Env("PGPROOF_SCRATCH"),
                        _ => Origin::Flag("--scratch"),
                    };
                    Sourced::new(s, origin)
                });
                let settings = Settings::resolve(&over, None, PgdataFallback::PgdataEnv)?;
                let opts = prove::ProveOptions {
                    backup: Some(backup.clone()),
                    keep: *keep,
                    time_limit: crate::settings::parse_duration(time_limit)?,
                    sql: sql.clone(),
                    expect: expect.clone(),
                    sql_database: sql_database.clone(),
                    jobs: *jobs,
                };
                prove::run(&settings, &opts).await
            };
            match result.await {
                Ok(verdict) => {
                    println!("{verdict}");
                    0
                }
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
        Command::WalPrefetch { name } => {
            let result = async {
                let settings = Settings::resolve(&over, None, PgdataFallback::WorkingDirectory)?;
                wal_fetch::run_prefetcher(&settings, name).await
            };
            match result.await {
                Ok(()) => 0,
                Err(e) => fail(label, &e, e.kind().exit_code()),
            }
        }
    }
}

fn fail(label: &str, err: &Error, code: i32) -> i32 {
    tracing::error!("{err}");
    if let Some(hint) = err.hint() {
        tracing::error!("hint: {hint}");
    }
    // If logging is filtered out entirely (-q still shows errors), nothing is lost.
    let _ = label;
    code
}

fn origin(matches: &ArgMatches, id: &'static str, flag: &'static str, env: &'static str) -> Origin {
    match matches.value_source(id) {
        Some(ValueSource::EnvVariable) => Origin::Env(env),
        _ => Origin::Flag(flag),
    }
}

fn overrides(cli: &Cli, m: &ArgMatches) -> Overrides {
    let sourced =
        |v: Option<String>, id, flag, env| v.map(|v| Sourced::new(v, origin(m, id, flag, env)));
    Overrides {
        config: cli
            .config
            .clone()
            .map(|v| Sourced::new(v, origin(m, "config", "--config", "PGPROOF_CONFIG"))),
        cluster: sourced(
            cli.cluster.clone(),
            "cluster",
            "--cluster",
            "PGPROOF_CLUSTER",
        ),
        repo: sourced(cli.repo.clone(), "repo", "--repo", "PGPROOF_REPO"),
        compression: sourced(
            cli.compression.clone(),
            "compression",
            "--compression",
            "PGPROOF_COMPRESSION",
        ),
        pgdata: cli
            .pgdata
            .clone()
            .map(|v| Sourced::new(v, origin(m, "pgdata", "--pgdata", "PGPROOF_PGDATA"))),
        timeout: sourced(
            cli.timeout.clone(),
            "timeout",
            "--timeout",
            "PGPROOF_TIMEOUT",
        ),
        host: cli
            .pghost
            .clone()
            .map(|v| Sourced::new(v, origin(m, "pghost", "--pghost", "PGPROOF_PGHOST"))),
        port: cli
            .pgport
            .map(|v| Sourced::new(v, origin(m, "pgport", "--pgport", "PGPROOF_PGPORT"))),
        push_ahead: cli.push_ahead,
        prefetch: cli.prefetch,
        pg_bindir: sourced(
            cli.pg_bindir.clone(),
            "pg_bindir",
            "--pg-bindir",
            "PGPROOF_PG_BINDIR",
        ),
        scratch: None,
    }
}
