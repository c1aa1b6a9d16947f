//! The clap definitions: their doc comments are the help text, the man
//! pages and the completions.

use clap::{Parser, Subcommand};
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
    /// Repository: file:///path, s3://bucket/prefix or az://container/prefix
    #[arg(long, global = true, env = "PGPROOF_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// Compression of stored files: zstd, zstd:LEVEL, lz4 or none [default: zstd:1]
    #[arg(long, global = true, env = "PGPROOF_COMPRESSION", value_name = "CODEC")]
    pub compression: Option<String>,
    /// The cluster's data directory
    #[arg(long, global = true, env = "PGPROOF_PGDATA", value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Time limit for each network step and each attempt of a storage request, e.g. 30s [default: 60s]
    #[arg(long, global = true, env = "PGPROOF_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// How many times a failed storage request is retried [default: 8]
    #[arg(long, global = true, env = "PGPROOF_RETRIES", value_name = "N")]
    pub retries: Option<usize>,
    /// No storage retry starts this long after a request's first attempt,
    /// e.g. 2m [default: 2m]
    #[arg(
        long,
        global = true,
        env = "PGPROOF_RETRY_DEADLINE",
        value_name = "DURATION"
    )]
    pub retry_deadline: Option<String>,
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
    /// At the end, print how many storage requests the command made (also with -vv)
    #[arg(long, global = true)]
    pub stats: bool,
    /// Progress display: bars (default on a terminal), lines (default otherwise) or off
    #[arg(long, global = true, env = "PGPROOF_PROGRESS", value_name = "HOW",
          value_parser = ["bars", "lines", "off"])]
    pub progress: Option<String>,
    /// Seconds between progress lines when not on a terminal [default: 5s]
    #[arg(
        long,
        global = true,
        env = "PGPROOF_PROGRESS_INTERVAL",
        value_name = "DURATION"
    )]
    pub progress_interval: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum DeleteRule {
    /// Keep the N newest complete backups
    Retain {
        #[arg(value_name = "N")]
        count: usize,
    },
    /// Delete backups started before WHEN: a backup name, or a time (as psql prints it, or RFC 3339)
    Before {
        #[arg(value_name = "WHEN")]
        when: String,
    },
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
        /// Fetch timeline history files only; every segment is "not archived"
        /// (what a restore of an offline backup at its shutdown point sets)
        #[arg(long, hide = true)]
        history_only: bool,
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
        /// Exempt the backup from retention (`delete`); see backup-mark
        #[arg(long)]
        permanent: bool,
        /// Store only what changed since the newest complete backup (a full
        /// when there is none to base it on)
        #[arg(long, conflicts_with = "full")]
        incremental: bool,
        /// Store every file, whatever the backup type setting says
        #[arg(long)]
        full: bool,
        /// The cluster is shut down cleanly: copy it without a server, consistent
        /// at pg_control's checkpoint (refused when a server runs or the
        /// shutdown was not clean)
        #[arg(long)]
        offline: bool,
        /// The type when neither --full nor --incremental is given: full or
        /// incremental [default: the configuration file's backup_type, else full]
        #[arg(long, env = "PGPROOF_BACKUP_TYPE", value_name = "TYPE")]
        backup_type: Option<String>,
        /// With an incremental default: take a full when the newest full is
        /// older than this (7d; 0 never) [default: the configuration file's full_every, else 0]
        #[arg(long, env = "PGPROOF_FULL_EVERY", value_name = "AGE")]
        full_every: Option<String>,
        /// Read the data directory at most this fast, in bytes per second
        /// over all parts together: 50MB (10^6), 10MiB (2^20), 200M, 1GB; 0 or
        /// off for no limit [default: the configuration file's max_rate, else none]
        #[arg(long, env = "PGPROOF_MAX_RATE", value_name = "RATE")]
        max_rate: Option<String>,
    },
    /// Hand the cluster's prefix to its new system after pg_upgrade or a new
    /// initdb; a dry run unless --confirm
    ///
    /// The earlier system's backups and WAL stay in the repository and can
    /// still be restored. Reads only the data directory's pg_control.
    Rebind {
        /// The cluster's data directory [default: the configured one, else $PGDATA]
        pgdata: Option<PathBuf>,
        /// Change the identity record (without it, only show what would change)
        #[arg(long)]
        confirm: bool,
        /// Why, recorded with the new binding
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Turn on archiving of a cluster through pgproof; a dry run unless --confirm
    ///
    /// Proves the cluster's identity, checks that the repository prefix is
    /// empty or this system's, and shows the exact archive_mode and
    /// archive_command (bound to this cluster's name and repository). With
    /// --confirm: ALTER SYSTEM and a reload, then `check`. Exits 15 when
    /// archive_mode waits for a restart that --restart did not ask for.
    Enable {
        /// The cluster's data directory [default: the configured one, else $PGDATA]
        pgdata: Option<PathBuf>,
        /// Change the settings (without it, only show what would change)
        #[arg(long)]
        confirm: bool,
        /// Restart the server when archive_mode needs it (pg_ctlcluster for
        /// a Debian cluster, else pg_ctl as the data directory's owner)
        #[arg(long, requires = "confirm")]
        restart: bool,
        /// Write the cluster's [clusters.NAME] section into FILE, or extend it
        /// [default: the --config file, else /etc/pgproof/pgproof.toml]
        #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
        write_config: Option<Option<PathBuf>>,
        /// How long the check's forced WAL segment may take to reach the repository
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        archive_timeout: String,
    },
    /// Mark a backup permanent (exempt from `delete`), or lift the mark
    BackupMark {
        /// Backup name, as backup-list shows it
        name: String,
        /// Exempt the backup from retention
        #[arg(
            long,
            conflicts_with = "no_permanent",
            required_unless_present = "no_permanent"
        )]
        permanent: bool,
        /// Lift the exemption
        #[arg(long)]
        no_permanent: bool,
    },
    /// Delete old backups and the WAL only they need; a dry run unless --confirm
    ///
    /// The newest complete backup, backups marked permanent, and the WAL from
    /// the oldest kept backup's start on are never deleted.
    Delete {
        #[command(subcommand)]
        rule: DeleteRule,
        /// Delete for real (without it, only show what would be deleted)
        #[arg(long, global = true)]
        confirm: bool,
        /// Print JSON for scripts
        #[arg(long, global = true)]
        json: bool,
        /// Abort unfinished uploads (of killed runs) started longer ago than this [default: 1d]
        #[arg(long, global = true, value_name = "DURATION")]
        unfinished_age: Option<String>,
    },
    /// Read back backups and WAL from storage and check every checksum and WAL continuity
    ///
    /// Exits 0 when everything verifies, 6 when any problem was found (each
    /// one is printed, naming the object), 9 when --backup names no backup.
    Verify {
        /// Verify only this backup and the WAL it needs
        #[arg(long, value_name = "NAME")]
        backup: Option<String>,
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
        /// Write files of 1 MiB and more with direct I/O, where the filesystem
        /// allows (by default every file goes through the page cache, with
        /// writeback started every 8 MiB)
        #[arg(long)]
        direct_io: bool,
    },
    /// Check the whole archiving path of a cluster, end to end
    ///
    /// Settings, repository access, the cluster's identity, the repository's
    /// binding, archive_mode and archive_command, then a forced WAL switch
    /// that must reach the repository. Exits with the status of the first
    /// failed step.
    Check {
        /// How long the forced WAL segment may take to reach the repository
        #[arg(long, default_value = "60s", value_name = "DURATION")]
        archive_timeout: String,
    },
    /// How well a cluster (or, with --all, every cluster in the repository) is protected
    ///
    /// Exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, as monitoring plugins do.
    Status {
        /// Every cluster prefix in the repository, not just the configured cluster
        #[arg(long)]
        all: bool,
        /// Print JSON for scripts
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Print Prometheus text-format metrics
        #[arg(long)]
        prometheus: bool,
        /// WARNING when the newest archived WAL is older ("off" to disable) [default: 1h, or the configuration file's]
        #[arg(long, env = "PGPROOF_WARN_WAL_AGE", value_name = "AGE")]
        warn_wal_age: Option<String>,
        /// CRITICAL when the newest archived WAL is older [default: 6h, or the configuration file's]
        #[arg(long, env = "PGPROOF_CRIT_WAL_AGE", value_name = "AGE")]
        crit_wal_age: Option<String>,
        /// WARNING when the newest complete backup is older [default: 26h, or the configuration file's]
        #[arg(long, env = "PGPROOF_WARN_BACKUP_AGE", value_name = "AGE")]
        warn_backup_age: Option<String>,
        /// CRITICAL when the newest complete backup is older [default: 50h, or the configuration file's]
        #[arg(long, env = "PGPROOF_CRIT_BACKUP_AGE", value_name = "AGE")]
        crit_backup_age: Option<String>,
        /// WARNING when the newest proof is older, or there is none [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_WARN_PROOF_AGE", value_name = "AGE")]
        warn_proof_age: Option<String>,
        /// CRITICAL when the newest proof is older, or there is none [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_CRIT_PROOF_AGE", value_name = "AGE")]
        crit_proof_age: Option<String>,
        /// WARNING when the recovery point (committed work that would be
        /// lost now) is longer [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_WARN_RPO", value_name = "AGE")]
        warn_rpo: Option<String>,
        /// CRITICAL when the recovery point is longer [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_CRIT_RPO", value_name = "AGE")]
        crit_rpo: Option<String>,
        /// WARNING when the estimated recovery time is longer, or unknown
        /// [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_WARN_RTO", value_name = "AGE")]
        warn_rto: Option<String>,
        /// CRITICAL when the estimated recovery time is longer, or unknown [default: off, or the configuration file's]
        #[arg(long, env = "PGPROOF_CRIT_RTO", value_name = "AGE")]
        crit_rto: Option<String>,
    },
    /// The PostgreSQL clusters on this host, and whether each is protected
    ///
    /// From pgproof's configuration, Debian's /etc/postgresql and the running
    /// postmasters. Exits 0 when every cluster is protected, 1 otherwise.
    Clusters {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
        /// A cluster whose newest backup is older than this is stale
        #[arg(long, default_value = "26h", value_name = "AGE")]
        stale_after: String,
    },
    /// Restore a backup into a scratch directory, start PostgreSQL on it, replay
    /// the archive, run checks, and record the proof in the repository
    ///
    /// Exits 0 when every check passed, 12 when one failed (the failed proof
    /// is recorded too). With --all, the newest backup of every cluster in
    /// the repository, one after another: 0 when each is proven, 12 otherwise.
    Prove {
        /// Backup name, or "latest"
        #[arg(long, value_name = "NAME", default_value = "latest")]
        backup: String,
        /// The newest backup of every cluster prefix in the repository
        #[arg(long, conflicts_with = "backup")]
        all: bool,
        /// With --all: no proof starts after this long, and each one's time
        /// limit is cut to what is left, e.g. 2h
        #[arg(long, value_name = "DURATION", requires = "all")]
        budget: Option<String>,
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
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell
    ///
    /// For example: pgproof completions bash > /etc/bash_completion.d/pgproof
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the man page pgproof(1), or write every page into a directory
    ///
    /// With --dir: pgproof.1 and one pgproof-COMMAND.1 per command, e.g.
    /// pgproof man --dir /usr/local/share/man/man1
    Man {
        /// Write pgproof.1 and pgproof-COMMAND.1 here instead of printing pgproof(1)
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Download the segments after NAME into the prefetch spool (started by wal-fetch)
    #[command(hide = true)]
    WalPrefetch { name: String },
}

impl Command {
    pub fn label(&self) -> &'static str {
        match self {
            Command::WalPush { .. } => "wal-push",
            Command::WalFetch { .. } => "wal-fetch",
            Command::WalPrefetch { .. } => "wal-prefetch",
            Command::BackupPush { .. } => "backup-push",
            Command::BackupList { .. } => "backup-list",
            Command::Restore { .. } => "restore",
            Command::Check { .. } => "check",
            Command::Status { .. } => "status",
            Command::Clusters { .. } => "clusters",
            Command::BackupMark { .. } => "backup-mark",
            Command::Rebind { .. } => "rebind",
            Command::Enable { .. } => "enable",
            Command::Delete { .. } => "delete",
            Command::Verify { .. } => "verify",
            Command::Prove { .. } => "prove",
            Command::Completions { .. } => "completions",
            Command::Man { .. } => "man",
        }
    }
}
