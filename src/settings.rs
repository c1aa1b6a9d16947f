//! Settings: flags, then `PGPROOF_*` environment variables, then a TOML file
//! (`--config`, `PGPROOF_CONFIG`, or /etc/pgproof/pgproof.toml) that can
//! describe several clusters by name. Every resolved value remembers where
//! it came from, so that commands can say so.

use crate::codec::Compression;
use crate::error::{Error, Result};
use crate::repo::ClusterName;
use crate::storage::{DEFAULT_TIMEOUT, RepoUrl, RetryPolicy};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/pgproof/pgproof.toml";

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    /// Derived from the surroundings, described in words.
    Derived(String),
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "${var}"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Derived(how) => f.write_str(how),
            Origin::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    pub value: T,
    pub origin: Origin,
}

impl<T> Sourced<T> {
    pub fn new(value: T, origin: Origin) -> Self {
        Sourced { value, origin }
    }
}

/// The configuration file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub repo: Option<String>,
    pub compression: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<usize>,
    pub retry_deadline: Option<String>,
    pub push_ahead: Option<usize>,
    pub prefetch: Option<usize>,
    /// Server binaries for commands that start PostgreSQL; may hold `{major}`.
    pub pg_bindir: Option<String>,
    /// prove: where its scratch directory is created.
    pub scratch: Option<PathBuf>,
    /// backup-push without --full or --incremental: `full` or `incremental`.
    pub backup_type: Option<String>,
    /// With `backup_type = "incremental"`: a full when the newest is older.
    pub full_every: Option<String>,
    /// backup-push: bytes per second read at most (`50MB`, `0`).
    #[serde(default, deserialize_with = "text_or_number")]
    pub max_rate: Option<String>,
    /// `status` thresholds for every cluster.
    pub status: Option<StatusThresholdsConfig>,
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
}

/// A `[status]` or `[clusters.NAME.status]` table: `status` thresholds,
/// each an age (`90m`, `26h`, `8d`) or `off`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusThresholdsConfig {
    pub warn_wal_age: Option<String>,
    pub crit_wal_age: Option<String>,
    pub warn_backup_age: Option<String>,
    pub crit_backup_age: Option<String>,
    pub warn_proof_age: Option<String>,
    pub crit_proof_age: Option<String>,
    /// The recovery point: how much committed work would be lost now.
    pub warn_rpo: Option<String>,
    pub crit_rpo: Option<String>,
    /// The recovery time estimated from the newest proof.
    pub warn_rto: Option<String>,
    pub crit_rto: Option<String>,
}

/// The threshold keys, in the order every list of thresholds follows (the
/// flags are the same names with `-`).
pub const STATUS_THRESHOLD_KEYS: [&str; STATUS_THRESHOLDS] = [
    "warn_wal_age",
    "crit_wal_age",
    "warn_backup_age",
    "crit_backup_age",
    "warn_proof_age",
    "crit_proof_age",
    "warn_rpo",
    "crit_rpo",
    "warn_rto",
    "crit_rto",
];

/// How many status thresholds there are (warning and critical of each figure).
pub const STATUS_THRESHOLDS: usize = 10;

impl StatusThresholdsConfig {
    /// The values, in `STATUS_THRESHOLD_KEYS` order.
    pub fn values(&self) -> [Option<&str>; STATUS_THRESHOLDS] {
        [
            self.warn_wal_age.as_deref(),
            self.crit_wal_age.as_deref(),
            self.warn_backup_age.as_deref(),
            self.crit_backup_age.as_deref(),
            self.warn_proof_age.as_deref(),
            self.crit_proof_age.as_deref(),
            self.warn_rpo.as_deref(),
            self.crit_rpo.as_deref(),
            self.warn_rto.as_deref(),
            self.crit_rto.as_deref(),
        ]
    }
}

/// The configuration file's status thresholds: the `[status]` table and
/// each cluster section's own, and the file's path.
pub struct StatusThresholdsFile {
    pub all: StatusThresholdsConfig,
    pub clusters: BTreeMap<String, StatusThresholdsConfig>,
    pub path: Option<PathBuf>,
}

pub fn status_thresholds(over: &Overrides) -> Result<StatusThresholdsFile> {
    let (file, path) = load_file(over.config.as_ref())?;
    Ok(StatusThresholdsFile {
        all: file.status.unwrap_or_default(),
        clusters: file
            .clusters
            .into_iter()
            .filter_map(|(name, section)| section.status.map(|s| (name, s)))
            .collect(),
        path,
    })
}

/// One `[clusters.NAME]` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub pgdata: Option<PathBuf>,
    pub repo: Option<String>,
    pub compression: Option<String>,
    /// Socket directory or host name, overriding postmaster.pid.
    pub host: Option<String>,
    /// Port, overriding postmaster.pid.
    pub port: Option<u16>,
    /// Server binaries of this cluster's major; may hold `{major}`.
    pub pg_bindir: Option<String>,
    pub backup_type: Option<String>,
    pub full_every: Option<String>,
    #[serde(default, deserialize_with = "text_or_number")]
    pub max_rate: Option<String>,
    /// `status` thresholds for this cluster, over the `[status]` table's.
    pub status: Option<StatusThresholdsConfig>,
}

impl FileConfig {
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig> {
        toml::from_str(text).map_err(|e| {
            Error::config(format!(
                "configuration file {} is not valid: {}",
                path.display(),
                e.message()
            ))
            .with_hint("see the configuration reference in the README")
        })
    }
}

/// Raw values from flags or the environment, before merging with the file.
/// Each carries the origin clap reported.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<Sourced<PathBuf>>,
    pub cluster: Option<Sourced<String>>,
    pub repo: Option<Sourced<String>>,
    pub compression: Option<Sourced<String>>,
    pub pgdata: Option<Sourced<PathBuf>>,
    pub timeout: Option<Sourced<String>>,
    pub retries: Option<usize>,
    pub retry_deadline: Option<Sourced<String>>,
    pub host: Option<Sourced<String>>,
    pub port: Option<Sourced<u16>>,
    pub push_ahead: Option<usize>,
    pub prefetch: Option<usize>,
    pub pg_bindir: Option<Sourced<String>>,
    pub scratch: Option<Sourced<PathBuf>>,
}

/// How the data directory is looked for when no setting names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgdataFallback {
    /// archive_command and restore_command run in PGDATA: the working
    /// directory, when it is a data directory, comes before the
    /// configuration file's `pgdata`.
    WorkingDirectory,
    /// Interactive commands: the `PGDATA` environment variable.
    PgdataEnv,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster: Sourced<ClusterName>,
    pub repo: Sourced<RepoUrl>,
    pub compression: Sourced<Compression>,
    pub pgdata: Option<Sourced<PathBuf>>,
    /// Socket directory or host overriding postmaster.pid.
    pub host: Option<Sourced<String>>,
    /// Port overriding postmaster.pid.
    pub port: Option<Sourced<u16>>,
    /// Each network step's time limit; also each storage request's attempt.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub push_ahead: usize,
    pub prefetch: usize,
    /// Where to look first for the server binaries (`{major}` is replaced).
    pub pg_bindir: Option<Sourced<String>>,
    /// prove: the directory its scratch directory is created in.
    pub scratch: Option<Sourced<PathBuf>>,
    /// The configuration file's `backup_type` and `full_every` (the
    /// cluster's section over the top level); backup-push's flags and
    /// environment come first.
    pub backup_type: Option<Sourced<String>>,
    pub full_every: Option<Sourced<String>>,
    /// The configuration file's `max_rate`, unparsed, like `backup_type`.
    pub max_rate: Option<Sourced<String>>,
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// The global arguments of the `wal-fetch` a restore_command runs for
    /// this cluster: its repository and cluster name, and `storage_args`.
    pub fn wal_fetch_args(&self) -> Vec<String> {
        let mut args = vec![
            "--repo".to_string(),
            self.repo.value.to_string(),
            "--cluster".to_string(),
            self.cluster.value.to_string(),
        ];
        args.extend(self.storage_args());
        args
    }

    /// The storage flags a pgproof started for this cluster by PostgreSQL
    /// (restore_command) needs to behave as this one: each that is not
    /// the default, as shell words.
    pub fn storage_args(&self) -> Vec<String> {
        let defaults = RetryPolicy::default();
        let mut args = Vec::new();
        let format = |d: Duration| humantime::format_duration(d).to_string();
        if self.timeout != DEFAULT_TIMEOUT {
            args.extend(["--timeout".to_string(), format(self.timeout)]);
        }
        if self.retry.retries != defaults.retries {
            args.extend(["--retries".to_string(), self.retry.retries.to_string()]);
        }
        if self.retry.deadline != defaults.deadline {
            args.extend(["--retry-deadline".to_string(), format(self.retry.deadline)]);
        }
        args
    }
}

pub const DEFAULT_PUSH_AHEAD: usize = 4;
pub const DEFAULT_PREFETCH: usize = 8;

impl Settings {
    /// Merges flags/environment with the configuration file. `pgdata_arg` is
    /// a command's own PGDATA argument, which wins over everything.
    pub fn resolve(
        over: &Overrides,
        pgdata_arg: Option<PathBuf>,
        fallback: PgdataFallback,
    ) -> Result<Settings> {
        let loaded = load_file(over.config.as_ref())?;
        Settings::resolve_with(over, loaded, pgdata_arg, fallback)
    }

    /// Like `resolve`, with the configuration file already read (or, for
    /// `enable --write-config`, one that is still to be created).
    pub fn resolve_with(
        over: &Overrides,
        (file, config_file): (FileConfig, Option<PathBuf>),
        pgdata_arg: Option<PathBuf>,
        fallback: PgdataFallback,
    ) -> Result<Settings> {
        let file_origin = || Origin::File(config_file.clone().unwrap_or_default());

        let mut pgdata: Option<Sourced<PathBuf>> = pgdata_arg
            .map(|p| Sourced::new(p, Origin::Derived("command argument".into())))
            .or_else(|| over.pgdata.clone());

        let (cluster_name, section) =
            choose_cluster(over, &file, pgdata.as_ref(), fallback, &file_origin)?;

        // PostgreSQL runs archive_command and restore_command in the data
        // directory it serves: that beats the configuration file, which may
        // describe the cluster a restored copy came from.
        if pgdata.is_none() && fallback == PgdataFallback::WorkingDirectory {
            pgdata = fallback_pgdata(fallback);
        }
        if pgdata.is_none()
            && let Some(p) = section.as_ref().and_then(|s| s.pgdata.clone())
        {
            pgdata = Some(Sourced::new(p, file_origin()));
        }
        if pgdata.is_none() {
            pgdata = fallback_pgdata(fallback);
        }

        let repo = repository(
            over.repo
                .clone()
                .or_else(|| {
                    section
                        .as_ref()
                        .and_then(|s| s.repo.clone())
                        .map(|r| Sourced::new(r, file_origin()))
                })
                .or_else(|| file.repo.clone().map(|r| Sourced::new(r, file_origin()))),
        )?;

        let compression_text = over
            .compression
            .clone()
            .or_else(|| {
                section
                    .as_ref()
                    .and_then(|s| s.compression.clone())
                    .map(|c| Sourced::new(c, file_origin()))
            })
            .or_else(|| {
                file.compression
                    .clone()
                    .map(|c| Sourced::new(c, file_origin()))
            });
        let compression = match compression_text {
            Some(c) => Sourced::new(
                c.value
                    .parse::<Compression>()
                    .map_err(|e| e.context(format!("compression from {}", c.origin)))?,
                c.origin,
            ),
            None => Sourced::new(Compression::default(), Origin::Default),
        };

        let timeout = timeout(
            over.timeout
                .clone()
                .or_else(|| file.timeout.clone().map(|t| Sourced::new(t, file_origin()))),
        )?;
        let retry = retry_policy(over, &file, timeout, &file_origin)?;

        Ok(Settings {
            cluster: cluster_name,
            repo,
            compression,
            pgdata,
            host: over.host.clone().or_else(|| {
                section
                    .as_ref()
                    .and_then(|s| s.host.clone())
                    .map(|h| Sourced::new(h, file_origin()))
            }),
            port: over.port.clone().or_else(|| {
                section
                    .as_ref()
                    .and_then(|s| s.port)
                    .map(|p| Sourced::new(p, file_origin()))
            }),
            timeout,
            retry,
            push_ahead: over
                .push_ahead
                .or(file.push_ahead)
                .unwrap_or(DEFAULT_PUSH_AHEAD),
            prefetch: over.prefetch.or(file.prefetch).unwrap_or(DEFAULT_PREFETCH),
            pg_bindir: over
                .pg_bindir
                .clone()
                .or_else(|| {
                    section
                        .as_ref()
                        .and_then(|s| s.pg_bindir.clone())
                        .map(|b| Sourced::new(b, file_origin()))
                })
                .or_else(|| {
                    file.pg_bindir
                        .clone()
                        .map(|b| Sourced::new(b, file_origin()))
                }),
            scratch: over
                .scratch
                .clone()
                .or_else(|| file.scratch.clone().map(|s| Sourced::new(s, file_origin()))),
            backup_type: section
                .as_ref()
                .and_then(|s| s.backup_type.clone())
                .or_else(|| file.backup_type.clone())
                .map(|t| Sourced::new(t, file_origin())),
            full_every: section
                .as_ref()
                .and_then(|s| s.full_every.clone())
                .or_else(|| file.full_every.clone())
                .map(|t| Sourced::new(t, file_origin())),
            max_rate: section
                .as_ref()
                .and_then(|s| s.max_rate.clone())
                .or_else(|| file.max_rate.clone())
                .map(|t| Sourced::new(t, file_origin())),
            config_file,
        })
    }
}

/// What commands over a whole repository (`status --all`) need: the
/// repository and time limit, with no cluster chosen.
#[derive(Debug, Clone)]
pub struct RepositorySettings {
    pub repo: Sourced<RepoUrl>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub config_file: Option<PathBuf>,
}

impl RepositorySettings {
    /// The repository from flags/environment, else the configuration file's
    /// top-level `repo`, else the one repository all its sections share.
    pub fn resolve(over: &Overrides) -> Result<RepositorySettings> {
        let (file, config_file) = load_file(over.config.as_ref())?;
        let file_origin = || Origin::File(config_file.clone().unwrap_or_default());
        let shared_section_repo = {
            let repos: std::collections::BTreeSet<&String> = file
                .clusters
                .values()
                .filter_map(|c| c.repo.as_ref())
                .collect();
            (repos.len() == 1)
                .then(|| repos.into_iter().next().cloned())
                .flatten()
        };
        let repo = repository(
            over.repo
                .clone()
                .or_else(|| file.repo.clone().map(|r| Sourced::new(r, file_origin())))
                .or_else(|| shared_section_repo.map(|r| Sourced::new(r, file_origin()))),
        )?;
        let timeout = timeout(
            over.timeout
                .clone()
                .or_else(|| file.timeout.clone().map(|t| Sourced::new(t, file_origin()))),
        )?;
        let retry = retry_policy(over, &file, timeout, &file_origin)?;
        Ok(RepositorySettings {
            repo,
            timeout,
            retry,
            config_file,
        })
    }
}

/// The clusters the configuration file describes, by name, and the file's path.
pub fn configured_clusters(
    over: &Overrides,
) -> Result<(BTreeMap<String, ClusterConfig>, Option<PathBuf>)> {
    let (file, path) = load_file(over.config.as_ref())?;
    Ok((file.clusters, path))
}

/// A key that takes text or a bare number (`max_rate = 0`), as text, so
/// that its own parser, not TOML's type error, says what is wrong with it.
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum TextOrNumber {
        Text(String),
        Integer(i64),
        Float(f64),
    }
    Ok(Option::<TextOrNumber>::deserialize(d)?.map(|v| match v {
        TextOrNumber::Text(t) => t,
        TextOrNumber::Integer(n) => n.to_string(),
        TextOrNumber::Float(x) => x.to_string(),
    }))
}

/// The repository URL chosen, parsed; an error naming where a bad one came from.
fn repository(text: Option<Sourced<String>>) -> Result<Sourced<RepoUrl>> {
    let text = text.ok_or_else(|| {
        Error::config("no repository is configured").with_hint(
            "set --repo or PGPROOF_REPO (file:///path, s3://bucket/prefix or az://container/prefix), or `repo` in the configuration file",
        )
    })?;
    let url = text
        .value
        .parse::<RepoUrl>()
        .map_err(|e| e.context(format!("repository from {}", text.origin)))?;
    Ok(Sourced::new(url, text.origin))
}

fn timeout(text: Option<Sourced<String>>) -> Result<Duration> {
    match text {
        Some(t) => {
            parse_duration(&t.value).map_err(|e| e.context(format!("timeout from {}", t.origin)))
        }
        None => Ok(DEFAULT_TIMEOUT),
    }
}

/// Storage retries: `--retries` and `--retry-deadline` over the file's
/// `retries` and `retry_deadline`; each attempt has `timeout`.
fn retry_policy(
    over: &Overrides,
    file: &FileConfig,
    timeout: Duration,
    file_origin: &dyn Fn() -> Origin,
) -> Result<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let deadline = match over.retry_deadline.clone().or_else(|| {
        file.retry_deadline
            .clone()
            .map(|t| Sourced::new(t, file_origin()))
    }) {
        Some(t) => parse_duration(&t.value)
            .map_err(|e| e.context(format!("retry deadline from {}", t.origin)))?,
        None => defaults.deadline,
    };
    Ok(RetryPolicy {
        attempt_timeout: timeout,
        retries: over.retries.or(file.retries).unwrap_or(defaults.retries),
        deadline,
    })
}

/// The configuration file flags or the environment name (else the default
/// one when it exists), parsed, and its path.
pub fn load_file(explicit: Option<&Sourced<PathBuf>>) -> Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.value.clone(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_PATH);
            if !default.exists() {
                return Ok((FileConfig::default(), None));
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::config(format!("cannot read configuration file {}", path.display()))
            .with_source(e)
            .with_hint(match explicit {
                Some(s) => format!("it was named by {}", s.origin),
                None => "it must be readable by the user running pgproof".to_string(),
            })
    })?;
    Ok((FileConfig::parse(&text, &path)?, Some(path)))
}

fn choose_cluster(
    over: &Overrides,
    file: &FileConfig,
    pgdata: Option<&Sourced<PathBuf>>,
    fallback: PgdataFallback,
    file_origin: &dyn Fn() -> Origin,
) -> Result<(Sourced<ClusterName>, Option<ClusterConfig>)> {
    if let Some(name) = &over.cluster {
        let cluster = ClusterName::new(&name.value)
            .map_err(|e| e.context(format!("cluster from {}", name.origin)))?;
        return Ok((
            Sourced::new(cluster, name.origin.clone()),
            file.clusters.get(&name.value).cloned(),
        ));
    }
    // The data directory in use picks its section: archive_command runs in
    // PGDATA, so one file can serve every cluster on the host.
    let in_use = pgdata
        .map(|p| p.value.clone())
        .or_else(|| fallback_pgdata(fallback).map(|p| p.value));
    if let Some(dir) = in_use.as_deref() {
        let dir = canonical(dir);
        let matching: Vec<_> = file
            .clusters
            .iter()
            .filter(|(_, c)| c.pgdata.as_deref().is_some_and(|p| canonical(p) == dir))
            .collect();
        if let [(name, section)] = matching.as_slice() {
            let origin = Origin::Derived(format!(
                "the section whose pgdata is {} in {}",
                dir.display(),
                file_origin()
            ));
            return Ok((
                Sourced::new(ClusterName::new(name)?, origin),
                Some((*section).clone()),
            ));
        }
    }
    if file.clusters.len() == 1 {
        let (name, section) = file.clusters.iter().next().expect("one entry");
        let origin = Origin::Derived(format!("the only cluster in {}", file_origin()));
        return Ok((
            Sourced::new(ClusterName::new(name)?, origin),
            Some(section.clone()),
        ));
    }
    Err(Error::config("no cluster name is set").with_hint(
        "set --cluster or PGPROOF_CLUSTER; it names the cluster's prefix in the repository (or describe the cluster, with its pgdata, in the configuration file)",
    ))
}

fn fallback_pgdata(fallback: PgdataFallback) -> Option<Sourced<PathBuf>> {
    match fallback {
        PgdataFallback::WorkingDirectory => std::env::current_dir()
            .ok()
            .filter(|d| d.join("PG_VERSION").is_file())
            .map(|d| Sourced::new(d, Origin::Derived("the working directory".into()))),
        PgdataFallback::PgdataEnv => std::env::var_os("PGDATA")
            .filter(|v| !v.is_empty())
            .map(|v| Sourced::new(PathBuf::from(v), Origin::Env("PGDATA"))),
    }
}

/// The path with symbolic links resolved, or as given when it does not exist.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Like `parse_duration`, and also zero (`0`, `0s`): an age threshold
/// that everything passes.
pub fn parse_age(text: &str) -> Result<Duration> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() => Ok(d),
        _ if text.trim() == "0" => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}

/// `90s`, `5m`, `1h30m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let parsed = match t.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(t),
    };
    match parsed {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(Error::config(format!("{text:?} is not a duration"))
            .with_hint("write e.g. 30s, 5m or 1h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgproof.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn with_config(path: &Path) -> Overrides {
        Overrides {
            config: Some(Sourced::new(path.to_path_buf(), Origin::Flag("--config"))),
            ..Default::default()
        }
    }

    #[test]
    fn flags_win_over_the_file() {
        let (_d, path) = write_config(
            "repo = \"file:///a\"\ncompression = \"lz4\"\n[clusters.main]\npgdata = \"/nonexistent/x\"\n",
        );
        let mut over = with_config(&path);
        over.repo = Some(Sourced::new(
            "s3://bucket/p".into(),
            Origin::Env("PGPROOF_REPO"),
        ));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(
            s.repo.value,
            RepoUrl::S3 {
                bucket: "bucket".into(),
                prefix: "p".into()
            }
        );
        assert_eq!(s.repo.origin, Origin::Env("PGPROOF_REPO"));
        assert_eq!(s.compression.value, Compression::Lz4);
        assert_eq!(s.cluster.value.as_str(), "main");
        assert_eq!(s.pgdata.unwrap().value, PathBuf::from("/nonexistent/x"));
    }

    #[test]
    fn retries_come_from_flags_then_the_file_and_travel_to_restore_command() {
        let (_d, path) = write_config(
            "repo = \"file:///a\"\nretries = 3\nretry_deadline = \"5m\"\n[clusters.main]\npgdata = \"/nonexistent/x\"\n",
        );
        let mut over = with_config(&path);
        over.timeout = Some(Sourced::new("7s".into(), Origin::Flag("--timeout")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.retry.retries, 3);
        assert_eq!(s.retry.deadline, Duration::from_secs(300));
        assert_eq!(s.retry.attempt_timeout, Duration::from_secs(7));
        assert_eq!(
            s.storage_args(),
            [
                "--timeout",
                "7s",
                "--retries",
                "3",
                "--retry-deadline",
                "5m"
            ]
        );
        assert_eq!(
            s.wal_fetch_args()[4..],
            s.storage_args()[..],
            "restore_command's wal-fetch gets the same storage flags"
        );
        assert_eq!(s.wal_fetch_args()[..2], ["--repo", "file:///a"]);
        over.retries = Some(8);
        over.retry_deadline = Some(Sourced::new("2m".into(), Origin::Flag("--retry-deadline")));
        over.timeout = None;
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert!(s.storage_args().is_empty(), "{:?}", s.storage_args());
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_age("1d").unwrap(), Duration::from_secs(86400));
        assert!(parse_age("soon").is_err());
    }

    #[test]
    fn the_data_directory_picks_its_section() {
        let (_d, path) = write_config(
            "repo = \"file:///r\"\n[clusters.old]\npgdata = \"/srv/pg13\"\nport = 5433\n[clusters.new]\npgdata = \"/srv/pg17\"\nrepo = \"s3://b/new\"\n",
        );
        let over = with_config(&path);
        let s =
            Settings::resolve(&over, Some("/srv/pg13".into()), PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.cluster.value.as_str(), "old");
        assert_eq!(s.port.map(|p| p.value), Some(5433));
        let s =
            Settings::resolve(&over, Some("/srv/pg17".into()), PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.cluster.value.as_str(), "new");
        assert_eq!(s.repo.value.to_string(), "s3://b/new");
        let err = Settings::resolve(&over, Some("/srv/other".into()), PgdataFallback::PgdataEnv)
            .unwrap_err();
        assert!(err.to_string().contains("no cluster name"), "{err}");
    }

    #[test]
    fn server_binaries_and_scratch_place() {
        let (_d, path) = write_config(
            "repo = \"file:///r\"\npg_bindir = \"/opt/pg/{major}/bin\"\nscratch = \"/srv/scratch\"\n[clusters.old]\npg_bindir = \"/opt/pg13/bin\"\n[clusters.new]\n",
        );
        let mut over = with_config(&path);
        over.cluster = Some(Sourced::new("old".into(), Origin::Flag("--cluster")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.pg_bindir.unwrap().value, "/opt/pg13/bin");
        assert_eq!(s.scratch.unwrap().value, PathBuf::from("/srv/scratch"));
        over.cluster = Some(Sourced::new("new".into(), Origin::Flag("--cluster")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.pg_bindir.unwrap().value, "/opt/pg/{major}/bin");
        over.pg_bindir = Some(Sourced::new("/x".into(), Origin::Env("PGPROOF_PG_BINDIR")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        let b = s.pg_bindir.unwrap();
        assert_eq!(
            (b.value.as_str(), b.origin),
            ("/x", Origin::Env("PGPROOF_PG_BINDIR"))
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let (_d, path) = write_config("repo = \"file:///r\"\nreppo = 1\n");
        let err =
            Settings::resolve(&with_config(&path), None, PgdataFallback::PgdataEnv).unwrap_err();
        assert!(err.to_string().contains("reppo"), "{err}");

        let over = Overrides {
            cluster: Some(Sourced::new("main".into(), Origin::Flag("--cluster"))),
            repo: Some(Sourced::new("file:///r".into(), Origin::Flag("--repo"))),
            compression: Some(Sourced::new(
                "brotli".into(),
                Origin::Env("PGPROOF_COMPRESSION"),
            )),
            ..Default::default()
        };
        let err = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap_err();
        assert!(err.to_string().contains("PGPROOF_COMPRESSION"), "{err}");

        let err = Settings::resolve(
            &Overrides {
                cluster: over.cluster.clone(),
                ..Default::default()
            },
            None,
            PgdataFallback::PgdataEnv,
        )
        .unwrap_err();
        assert!(err.hint().unwrap().contains("PGPROOF_REPO"));

        let missing = with_config(Path::new("/nonexistent/pgproof.toml"));
        assert!(Settings::resolve(&missing, None, PgdataFallback::PgdataEnv).is_err());
    }

    #[test]
    fn max_rate_comes_from_the_section_then_the_top_level() {
        let (_d, path) = write_config(
            "repo = \"file:///r\"\nmax_rate = \"50MB\"\n[clusters.old]\nmax_rate = 0\n[clusters.new]\n",
        );
        let mut over = with_config(&path);
        over.cluster = Some(Sourced::new("old".into(), Origin::Flag("--cluster")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        let rate = s.max_rate.unwrap();
        assert_eq!(
            (rate.value.as_str(), rate.origin),
            ("0", Origin::File(path.clone()))
        );
        over.cluster = Some(Sourced::new("new".into(), Origin::Flag("--cluster")));
        let s = Settings::resolve(&over, None, PgdataFallback::PgdataEnv).unwrap();
        assert_eq!(s.max_rate.unwrap().value, "50MB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
