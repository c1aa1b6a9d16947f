//! `pgproof status [--all]`: how well each cluster in a repository is
//! protected. For each cluster prefix: its identity, the newest archived
//! WAL and its age, gaps in the archive since the oldest backup, the newest
//! complete backup and its age, the newest proof, and a verdict from the
//! operator's thresholds. Read-only; works from any host that can read the
//! repository.

pub mod objectives;
mod render;
mod request;
mod server_view;
pub mod verdict;

use crate::error::{Error, ErrorKind, Result};
use crate::repo::wal_dirs::WalArchive;
use crate::repo::{ClusterName, Repository, Root};
use crate::settings::{
    RepositorySettings, STATUS_THRESHOLD_KEYS, STATUS_THRESHOLDS, Settings, StatusThresholdsFile,
};
use chrono::{DateTime, Utc};
use objectives::{RecoveryPoint, RecoveryTime, ServerView};
pub use request::{StatusRequest, invoke};
use serde::Serialize;
use std::time::Duration;
pub use verdict::{ThresholdLayer, ThresholdRules, Thresholds, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// One cluster, or every prefix with an identity record when `None`.
    pub cluster: Option<ClusterName>,
    pub format: Format,
    pub thresholds: ThresholdRules,
    /// The one cluster's settings, when its server may be asked how much
    /// flushed WAL is not archived yet (not with `--all`).
    pub server: Option<Settings>,
}

/// Everything status knows of one cluster prefix.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub repository: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    pub system_identifier: Option<String>,
    pub major: Option<u32>,
    pub binding: Option<String>,
    pub wal: Option<WalStatus>,
    /// Missing WAL between the oldest complete backup and the newest segment.
    pub gaps: Vec<String>,
    pub backups: usize,
    pub oldest_backup: Option<String>,
    pub newest_backup: Option<BackupStatus>,
    pub newest_proof: Option<ProofStatus>,
    /// Backups whose manifest cannot be used, each described.
    pub damaged_backups: Vec<String>,
    /// Committed work that would be lost now (none without archived WAL).
    pub recovery_point: Option<RecoveryPoint>,
    /// A restore to the newest archived WAL, estimated from the newest
    /// successful proof that measured its phases (none without one).
    pub recovery_time: Option<RecoveryTime>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalStatus {
    pub newest: String,
    pub stored_at: DateTime<Utc>,
    pub age_seconds: u64,
    /// The stored WAL files a restore of the oldest backup reads, from its
    /// start to the newest segment (0 without a backup).
    pub files: usize,
    pub stored_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackupStatus {
    pub name: String,
    pub stopped_at: DateTime<Utc>,
    pub age_seconds: u64,
    pub size: u64,
    pub stored_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProofStatus {
    pub backup: String,
    pub succeeded: bool,
    pub finished_at: DateTime<Utc>,
    pub age_seconds: u64,
}

pub struct StatusReport {
    pub text: String,
    /// The worst verdict: the exit status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    pub verdict: Verdict,
}

pub async fn run(settings: &RepositorySettings, opts: &StatusOptions) -> Result<StatusReport> {
    let root = Root::open(&settings.repo.value, settings.retry)?;
    let names = match &opts.cluster {
        Some(name) => vec![name.clone()],
        None => root.cluster_prefixes().await?,
    };
    if names.is_empty() && opts.cluster.is_none() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} holds no cluster", settings.repo.value),
        )
        .with_hint("clusters appear once their first WAL segment or backup is stored"));
    }
    let now = Utc::now();
    let mut statuses = Vec::new();
    for name in names {
        let repo = root.cluster(name.clone());
        let thresholds = opts.thresholds.for_cluster(name.as_str());
        let status = match cluster_status(&repo, now, &thresholds, opts.server.as_ref()).await {
            Ok(s) => s,
            Err(e) => unknown(&repo, &e),
        };
        statuses.push(status);
    }
    let verdict = statuses
        .iter()
        .map(|s| s.verdict)
        .max()
        .unwrap_or(Verdict::Ok);
    let text = match opts.format {
        Format::Text => render::text(&statuses, opts.cluster.is_none()),
        Format::Json => serde_json::to_string_pretty(&statuses).expect("statuses serialize") + "\n",
        Format::Prometheus => render::prometheus(&statuses),
    };
    Ok(StatusReport { text, verdict })
}

/// The thresholds from flags and environment (`given`, in
/// `STATUS_THRESHOLD_KEYS` order) and from the configuration file. A value
/// that is neither an age nor `off` is an error naming where it was written.
pub fn threshold_rules(
    given: [Option<&str>; STATUS_THRESHOLDS],
    file: &StatusThresholdsFile,
) -> Result<ThresholdRules> {
    let in_file = file
        .path
        .as_ref()
        .map(|p| format!(" in {}", p.display()))
        .unwrap_or_default();
    let mut clusters = std::collections::BTreeMap::new();
    for (name, section) in &file.clusters {
        let layer = threshold_layer(section.values(), &|key| {
            format!("clusters.{name}.status.{key}{in_file}")
        })?;
        clusters.insert(name.clone(), layer);
    }
    let rules = ThresholdRules {
        given: threshold_layer(given, &|key| format!("--{}", key.replace('_', "-")))?,
        file: threshold_layer(file.all.values(), &|key| format!("status.{key}{in_file}"))?,
        clusters,
    };
    // A warning that could never come before its critical is a mistake
    // (typically a raised warning left with the default critical): say so
    // rather than page at the critical age first.
    let judged = std::iter::once(None).chain(rules.clusters.keys().map(|n| Some(n.as_str())));
    for name in judged {
        let t = rules.for_cluster(name.unwrap_or(""));
        for (what, warning, critical) in [
            ("wal_age", t.wal_warning, t.wal_critical),
            ("backup_age", t.backup_warning, t.backup_critical),
            ("proof_age", t.proof_warning, t.proof_critical),
            ("rpo", t.rpo_warning, t.rpo_critical),
            ("rto", t.rto_warning, t.rto_critical),
        ] {
            if let (Some(w), Some(c)) = (warning, critical)
                && w > c
            {
                let whom = name
                    .map(|n| format!(" for cluster {n}"))
                    .unwrap_or_default();
                return Err(Error::config(format!(
                    "status thresholds{whom}: warn_{what} ({}) is above crit_{what} ({})",
                    humantime::format_duration(w),
                    humantime::format_duration(c)
                ))
                .with_hint(format!(
                    "set warn_{what} and crit_{what} together, the warning no later than the critical (flags, [status] or [clusters.NAME.status]{in_file})"
                )));
            }
        }
    }
    Ok(rules)
}

fn threshold_layer(
    values: [Option<&str>; STATUS_THRESHOLDS],
    origin: &dyn Fn(&str) -> String,
) -> Result<ThresholdLayer> {
    let mut layer = ThresholdLayer::default();
    for ((slot, key), text) in layer.0.iter_mut().zip(STATUS_THRESHOLD_KEYS).zip(values) {
        let Some(text) = text else { continue };
        *slot = Some(if text.trim() == "off" {
            None
        } else {
            Some(crate::settings::parse_duration(text).map_err(|e| {
                e.context(origin(key))
                    .with_hint("write an age such as 90m, 26h or 8d, or off")
            })?)
        });
    }
    Ok(layer)
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or(Duration::ZERO)
}

fn unknown(repo: &Repository, e: &Error) -> ClusterStatus {
    ClusterStatus {
        cluster: repo.cluster().to_string(),
        repository: repo.describe(),
        verdict: Verdict::Unknown,
        reasons: vec![format!("UNKNOWN: {e}")],
        system_identifier: None,
        major: None,
        binding: None,
        wal: None,
        gaps: Vec::new(),
        backups: 0,
        oldest_backup: None,
        newest_backup: None,
        newest_proof: None,
        damaged_backups: Vec::new(),
        recovery_point: None,
        recovery_time: None,
    }
}

async fn cluster_status(
    repo: &Repository,
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    server: Option<&Settings>,
) -> Result<ClusterStatus> {
    let Some(record) = repo.load_record().await? else {
        let mut s = unknown(repo, &Error::new(ErrorKind::NotFound, ""));
        s.verdict = Verdict::Critical;
        s.reasons = vec![format!(
            "CRITICAL: nothing is archived in {}: the cluster is not protected",
            repo.describe()
        )];
        return Ok(s);
    };
    let binding = record.current().clone();
    let seg_size = u64::from(binding.wal_segment_size);

    // Directory by directory, so that the cost follows the WAL since the
    // oldest backup, not the archive's age.
    let mut archive = WalArchive::open(repo, &binding.id).await?;
    let set = repo.backups().await?;
    let damaged_backups: Vec<String> = set.damaged.iter().map(|d| d.describe()).collect();
    let backups: Vec<_> = set
        .complete
        .into_iter()
        .filter(|m| m.binding == binding.id)
        .collect();
    let since = match backups.first() {
        Some(oldest) => {
            archive
                .since(oldest.start_segment()?, oldest.offline, seg_size)
                .await?
        }
        None => Default::default(),
    };
    let gaps: Vec<String> = since.gaps.iter().map(|g| g.to_string()).collect();
    let newest_wal = archive.newest_segment().await?;
    // Where a restore to the newest archived WAL ends.
    let archived_end = newest_wal
        .as_ref()
        .and_then(|n| n.name.segment())
        .map(|s| s.next(seg_size).start_lsn(seg_size));
    let wal = newest_wal.map(|n| WalStatus {
        newest: n.name.to_string(),
        stored_at: n.stored_at,
        age_seconds: age(now, n.stored_at).as_secs(),
        files: since.files,
        stored_bytes: since.stored_bytes,
    });
    let newest_backup = backups.last().map(|m| BackupStatus {
        name: m.name.clone(),
        stopped_at: m.stopped_at,
        age_seconds: age(now, m.stopped_at).as_secs(),
        size: m.size,
        stored_size: m.stored_size,
    });
    let mut newest_proof: Option<ProofStatus> = None;
    let mut newest_measured: Option<crate::repo::proof::Proof> = None;
    for m in &backups {
        let Some(p) = repo.newest_proof(&m.binding, &m.name).await? else {
            continue;
        };
        if newest_proof
            .as_ref()
            .is_none_or(|n| n.finished_at < p.finished_at)
        {
            newest_proof = Some(ProofStatus {
                backup: p.backup.clone(),
                succeeded: p.succeeded,
                finished_at: p.finished_at,
                age_seconds: age(now, p.finished_at).as_secs(),
            });
        }
        if p.succeeded
            && p.timings.is_some()
            && newest_measured
                .as_ref()
                .is_none_or(|n| n.finished_at < p.finished_at)
        {
            newest_measured = Some(p);
        }
    }

    let view = match server {
        Some(settings) => {
            server_view::ask(
                settings,
                binding.system_identifier,
                &mut archive,
                seg_size,
                archived_end,
            )
            .await
        }
        None => ServerView::NotAsked,
    };
    let recovery_point = objectives::recovery_point(
        wal.as_ref().map(|w| Duration::from_secs(w.age_seconds)),
        &view,
    );
    let recovery_time = match (&newest_measured, backups.last()) {
        (Some(p), Some(newest)) => p.timings.as_ref().map(|t| {
            let wal_bytes = archived_end.map_or(0, |end| end.0.saturating_sub(newest.start_lsn.0));
            objectives::recovery_time(p, t, newest.size, wal_bytes)
        }),
        _ => None,
    };

    let facts = verdict::Facts {
        newest_wal_age: wal.as_ref().map(|w| Duration::from_secs(w.age_seconds)),
        newest_backup_age: newest_backup
            .as_ref()
            .map(|b| Duration::from_secs(b.age_seconds)),
        newest_proof: newest_proof
            .as_ref()
            .map(|p| (Duration::from_secs(p.age_seconds), p.succeeded)),
        gaps: gaps.clone(),
        damaged_backups: damaged_backups.clone(),
        recovery_point: recovery_point
            .as_ref()
            .map(|r| Duration::from_secs(r.seconds)),
        recovery_time: recovery_time
            .as_ref()
            .map(|r| Duration::from_secs(r.estimate_seconds)),
    };
    let (verdict, reasons) = verdict::judge(&facts, thresholds);
    Ok(ClusterStatus {
        cluster: repo.cluster().to_string(),
        repository: repo.describe(),
        verdict,
        reasons,
        system_identifier: Some(binding.system_identifier.to_string()),
        major: Some(binding.major.number()),
        binding: Some(binding.id.clone()),
        wal,
        gaps,
        backups: backups.len(),
        oldest_backup: backups.first().map(|m| m.name.clone()),
        newest_backup,
        newest_proof,
        damaged_backups,
        recovery_point,
        recovery_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::StatusThresholdsConfig;

    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    fn hours(h: u64) -> Option<Duration> {
        Some(Duration::from_secs(h * HOUR))
    }

    fn unset() -> [Option<&'static str>; STATUS_THRESHOLDS] {
        [None; STATUS_THRESHOLDS]
    }

    fn file() -> StatusThresholdsFile {
        StatusThresholdsFile {
            all: StatusThresholdsConfig {
                warn_backup_age: Some("8d".into()),
                crit_backup_age: Some("15d".into()),
                warn_proof_age: Some("7d".into()),
                ..Default::default()
            },
            clusters: [
                (
                    "weekly".to_string(),
                    StatusThresholdsConfig {
                        warn_backup_age: Some("9d".into()),
                        crit_backup_age: Some("15d".into()),
                        ..Default::default()
                    },
                ),
                (
                    "quiet".to_string(),
                    StatusThresholdsConfig {
                        warn_wal_age: Some("off".into()),
                        ..Default::default()
                    },
                ),
            ]
            .into(),
            path: Some("/etc/pgproof/pgproof.toml".into()),
        }
    }

    #[test]
    fn flags_then_the_clusters_section_then_the_status_table_then_defaults() {
        let rules = threshold_rules(unset(), &file()).unwrap();
        let weekly = rules.for_cluster("weekly");
        assert_eq!(weekly.backup_warning, hours(9 * 24));
        assert_eq!(weekly.backup_critical, hours(15 * 24));
        assert_eq!(weekly.wal_warning, hours(1));
        assert_eq!(weekly.proof_warning, Some(Duration::from_secs(7 * DAY)));
        let other = rules.for_cluster("other");
        assert_eq!(other.backup_warning, hours(8 * 24));
        assert_eq!(other.backup_critical, hours(15 * 24));
        assert_eq!(other.wal_critical, hours(6));
        let quiet = rules.for_cluster("quiet");
        assert_eq!(quiet.wal_warning, None);
        assert_eq!(quiet.wal_critical, hours(6));

        let mut given = unset();
        given[0] = Some("5m");
        given[2] = Some("off");
        let rules = threshold_rules(given, &file()).unwrap();
        for name in ["quiet", "weekly", "other"] {
            let t = rules.for_cluster(name);
            assert_eq!(t.wal_warning, Some(Duration::from_secs(300)), "{name}");
            assert_eq!(t.backup_warning, None, "{name}");
        }
        assert_eq!(rules.for_cluster("weekly").backup_critical, hours(15 * 24));
    }

    #[test]
    fn a_warning_above_its_critical_is_refused() {
        // Weekly backups: the warning raised, the critical left at 50h.
        let mut f = file();
        f.all.crit_backup_age = None;
        let err = threshold_rules(unset(), &f).unwrap_err().to_string();
        assert!(
            err.contains("warn_backup_age (8days) is above crit_backup_age (2days 2h)"),
            "{err}"
        );
        // Only one cluster's own table makes it so.
        let mut f = file();
        f.clusters.get_mut("quiet").unwrap().crit_proof_age = Some("1d".into());
        let err = threshold_rules(unset(), &f).unwrap_err().to_string();
        assert!(err.contains("for cluster quiet"), "{err}");
        // A flag can do it too.
        let mut given = unset();
        given[1] = Some("30m");
        let err = threshold_rules(given, &file()).unwrap_err().to_string();
        assert!(
            err.contains("warn_wal_age (1h) is above crit_wal_age (30m)"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_names_where_it_was_written() {
        let mut bad = file();
        bad.clusters.get_mut("weekly").unwrap().crit_wal_age = Some("soon".into());
        let err = threshold_rules(unset(), &bad).unwrap_err().to_string();
        assert!(
            err.contains("clusters.weekly.status.crit_wal_age in /etc/pgproof/pgproof.toml"),
            "{err}"
        );
        let mut given = unset();
        given[3] = Some("tomorrow");
        let err = threshold_rules(given, &file()).unwrap_err().to_string();
        assert!(err.contains("--crit-backup-age"), "{err}");
    }
}
