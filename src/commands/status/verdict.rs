//! The verdict on one cluster's protection, from its facts and the
//! operator's thresholds: OK, WARNING or CRITICAL, with every reason.
//! Exit statuses follow the Nagios convention so monitoring can run
//! `pgproof status` as a check as it is.

use crate::settings::STATUS_THRESHOLDS;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    #[default]
    Ok,
    Warning,
    Critical,
    /// The repository could not be read for this cluster.
    Unknown,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warning => 1,
            Verdict::Critical => 2,
            Verdict::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::Warning => "WARNING",
            Verdict::Critical => "CRITICAL",
            Verdict::Unknown => "UNKNOWN",
        }
    }
}

/// Ages past which a cluster is WARNING or CRITICAL; `None` turns a check off.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub wal_warning: Option<Duration>,
    pub wal_critical: Option<Duration>,
    pub backup_warning: Option<Duration>,
    pub backup_critical: Option<Duration>,
    pub proof_warning: Option<Duration>,
    pub proof_critical: Option<Duration>,
    /// The recovery point: committed work that would be lost now.
    pub rpo_warning: Option<Duration>,
    pub rpo_critical: Option<Duration>,
    /// The recovery time estimated from the newest proof.
    pub rto_warning: Option<Duration>,
    pub rto_critical: Option<Duration>,
}

impl Default for Thresholds {
    /// Daily backups and a busy archive (or `archive_timeout` set): a
    /// segment every hour at least. Proofs, and the recovery objectives
    /// (which only the operator knows), are not judged until asked for.
    fn default() -> Self {
        Thresholds {
            wal_warning: Some(Duration::from_secs(3600)),
            wal_critical: Some(Duration::from_secs(6 * 3600)),
            backup_warning: Some(Duration::from_secs(26 * 3600)),
            backup_critical: Some(Duration::from_secs(50 * 3600)),
            proof_warning: None,
            proof_critical: None,
            rpo_warning: None,
            rpo_critical: None,
            rto_warning: None,
            rto_critical: None,
        }
    }
}

impl Thresholds {
    /// The thresholds in the order of `ThresholdLayer`.
    fn to_array(self) -> [Option<Duration>; STATUS_THRESHOLDS] {
        [
            self.wal_warning,
            self.wal_critical,
            self.backup_warning,
            self.backup_critical,
            self.proof_warning,
            self.proof_critical,
            self.rpo_warning,
            self.rpo_critical,
            self.rto_warning,
            self.rto_critical,
        ]
    }

    fn from_array(a: [Option<Duration>; STATUS_THRESHOLDS]) -> Thresholds {
        Thresholds {
            wal_warning: a[0],
            wal_critical: a[1],
            backup_warning: a[2],
            backup_critical: a[3],
            proof_warning: a[4],
            proof_critical: a[5],
            rpo_warning: a[6],
            rpo_critical: a[7],
            rto_warning: a[8],
            rto_critical: a[9],
        }
    }
}

/// The thresholds one source sets, in `STATUS_THRESHOLD_KEYS` order (warn
/// and crit of WAL, backup, proof, RPO, RTO): each unset (`None`), off
/// (`Some(None)`) or an age.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ThresholdLayer(pub [Option<Option<Duration>>; STATUS_THRESHOLDS]);

impl ThresholdLayer {
    /// `base` with what this layer sets put over it.
    pub fn over(&self, base: Thresholds) -> Thresholds {
        let mut values = base.to_array();
        for (value, set) in values.iter_mut().zip(&self.0) {
            if let Some(set) = set {
                *value = *set;
            }
        }
        Thresholds::from_array(values)
    }
}

/// Where each cluster's thresholds come from, first that sets one wins:
/// flags and environment, the cluster's `[clusters.NAME.status]`, the
/// file's `[status]`, the defaults.
#[derive(Debug, Default, Clone)]
pub struct ThresholdRules {
    pub given: ThresholdLayer,
    pub file: ThresholdLayer,
    pub clusters: BTreeMap<String, ThresholdLayer>,
}

impl ThresholdRules {
    pub fn for_cluster(&self, name: &str) -> Thresholds {
        let mut t = self.file.over(Thresholds::default());
        if let Some(own) = self.clusters.get(name) {
            t = own.over(t);
        }
        self.given.over(t)
    }
}

/// What the verdict is made from.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub newest_wal_age: Option<Duration>,
    pub newest_backup_age: Option<Duration>,
    /// Age of the newest proof, and whether it succeeded.
    pub newest_proof: Option<(Duration, bool)>,
    pub gaps: Vec<String>,
    /// Backups whose manifest cannot be used, each described.
    pub damaged_backups: Vec<String>,
    /// How much committed work would be lost now, as time (none without WAL).
    pub recovery_point: Option<Duration>,
    /// The recovery time estimated from the newest proof (none without one).
    pub recovery_time: Option<Duration>,
}

/// The verdict so far and every reason for it.
#[derive(Default)]
struct Judgement {
    verdict: Verdict,
    reasons: Vec<String>,
}

impl Judgement {
    fn raise(&mut self, level: Verdict, why: String) {
        self.verdict = self.verdict.max(level);
        self.reasons.push(format!("{}: {why}", level.as_str()));
    }

    /// A figure against its warning and critical thresholds; `says` words
    /// the figure (given in words), the threshold passed is appended.
    fn measure(
        &mut self,
        value: Duration,
        warn: Option<Duration>,
        crit: Option<Duration>,
        says: impl Fn(&str) -> String,
    ) {
        let passed = match (crit.filter(|c| value > *c), warn.filter(|w| value > *w)) {
            (Some(c), _) => Some((Verdict::Critical, "critical", c)),
            (None, Some(w)) => Some((Verdict::Warning, "warning", w)),
            (None, None) => None,
        };
        if let Some((level, name, threshold)) = passed {
            let why = format!(
                "{} ({name} after {})",
                says(&human(value)),
                human(threshold)
            );
            self.raise(level, why);
        }
    }

    /// A figure that cannot be known: as bad as the strictest threshold
    /// that asks for it, nothing when none does.
    fn unknown(&mut self, warn: Option<Duration>, crit: Option<Duration>, why: &str) {
        if crit.is_some() {
            self.raise(Verdict::Critical, why.into());
        } else if warn.is_some() {
            self.raise(Verdict::Warning, why.into());
        }
    }
}

pub fn judge(facts: &Facts, t: &Thresholds) -> (Verdict, Vec<String>) {
    let mut j = Judgement::default();
    let aged = |what: &'static str| move |age: &str| format!("{what} is {age} old");
    match facts.newest_wal_age {
        Some(age) => j.measure(
            age,
            t.wal_warning,
            t.wal_critical,
            aged("the newest archived WAL"),
        ),
        None => j.raise(Verdict::Critical, "no WAL is archived".into()),
    }
    match facts.newest_backup_age {
        Some(age) => j.measure(
            age,
            t.backup_warning,
            t.backup_critical,
            aged("the newest complete backup"),
        ),
        None => j.raise(Verdict::Critical, "there is no complete backup".into()),
    }
    if !facts.gaps.is_empty() {
        j.raise(
            Verdict::Critical,
            format!(
                "the archive lacks WAL a restore needs: {}",
                facts.gaps.join(", ")
            ),
        );
    }
    // Not critical by itself: the newest usable backup is judged above.
    for d in &facts.damaged_backups {
        j.raise(Verdict::Warning, format!("{d}; run `pgproof verify`"));
    }
    // Without archived WAL there is no recovery point to judge: that is
    // CRITICAL above already.
    if let Some(rpo) = facts.recovery_point {
        j.measure(rpo, t.rpo_warning, t.rpo_critical, |rpo| {
            format!("the recovery point is {rpo}: that much committed work would be lost now")
        });
    }
    match facts.recovery_time {
        Some(rto) => j.measure(rto, t.rto_warning, t.rto_critical, |rto| {
            format!("a restore to now would take about {rto}")
        }),
        None => j.unknown(
            t.rto_warning,
            t.rto_critical,
            "the recovery time is unknown: no backup was proven (run `pgproof prove`)",
        ),
    }
    match facts.newest_proof {
        Some((_, false)) => j.raise(
            Verdict::Warning,
            "the newest proof failed; see `pgproof backup-list`".into(),
        ),
        Some((age, true)) => j.measure(
            age,
            t.proof_warning,
            t.proof_critical,
            aged("the newest proof"),
        ),
        None => j.unknown(
            t.proof_warning,
            t.proof_critical,
            "no backup was ever proven",
        ),
    }
    (j.verdict, j.reasons)
}

/// `3h 12m`: ages to the minute (to the second under a minute).
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        return format!("{secs}s");
    }
    humantime::format_duration(Duration::from_secs(secs / 60 * 60)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    fn healthy() -> Facts {
        Facts {
            newest_wal_age: Some(Duration::from_secs(60)),
            newest_backup_age: Some(Duration::from_secs(2 * H)),
            newest_proof: Some((Duration::from_secs(3 * H), true)),
            gaps: vec![],
            damaged_backups: vec![],
            recovery_point: Some(Duration::from_secs(60)),
            recovery_time: Some(Duration::from_secs(600)),
        }
    }

    #[test]
    fn a_damaged_backup_is_a_warning() {
        let mut f = healthy();
        f.damaged_backups = vec!["backup 20261125T140207Z (binding 15-1) is damaged: x".into()];
        let (verdict, reasons) = judge(&f, &Thresholds::default());
        assert_eq!(verdict, Verdict::Warning);
        assert!(reasons[0].contains("20261125T140207Z"), "{reasons:?}");
    }

    #[test]
    fn healthy_is_ok() {
        assert_eq!(
            judge(&healthy(), &Thresholds::default()),
            (Verdict::Ok, vec![])
        );
    }

    #[test]
    fn each_threshold_raises_the_verdict() {
        let t = Thresholds::default();
        let mut f = healthy();
        f.newest_wal_age = Some(Duration::from_secs(2 * H));
        let (v, why) = judge(&f, &t);
        assert_eq!(v, Verdict::Warning);
        assert_eq!(
            why,
            ["WARNING: the newest archived WAL is 2h old (warning after 1h)"]
        );
        f.newest_wal_age = Some(Duration::from_secs(7 * H));
        assert_eq!(judge(&f, &t).0, Verdict::Critical);
        let mut f = healthy();
        f.newest_backup_age = Some(Duration::from_secs(30 * H));
        assert_eq!(judge(&f, &t).0, Verdict::Warning);
        f.newest_backup_age = None;
        assert_eq!(judge(&f, &t).0, Verdict::Critical);
        let mut f = healthy();
        f.gaps = vec!["000000010000000000000005".into()];
        let (v, why) = judge(&f, &t);
        assert_eq!(v, Verdict::Critical);
        assert!(why[0].contains("000000010000000000000005"));
    }

    #[test]
    fn proofs_count_only_when_asked_for_or_failed() {
        let mut f = healthy();
        f.newest_proof = None;
        assert_eq!(judge(&f, &Thresholds::default()).0, Verdict::Ok);
        let strict = Thresholds {
            proof_warning: Some(Duration::from_secs(24 * H)),
            ..Default::default()
        };
        assert_eq!(judge(&f, &strict).0, Verdict::Warning);
        f.newest_proof = Some((Duration::from_secs(H), false));
        assert_eq!(judge(&f, &Thresholds::default()).0, Verdict::Warning);
    }

    #[test]
    fn recovery_objectives_count_only_when_asked_for() {
        let mut f = healthy();
        f.recovery_point = Some(Duration::from_secs(2 * H));
        f.recovery_time = None;
        assert_eq!(judge(&f, &Thresholds::default()).0, Verdict::Ok);
        let objectives = Thresholds {
            rpo_warning: Some(Duration::from_secs(300)),
            rpo_critical: Some(Duration::from_secs(3 * H)),
            rto_critical: Some(Duration::from_secs(H)),
            ..Default::default()
        };
        let (v, why) = judge(&f, &objectives);
        assert_eq!(v, Verdict::Critical);
        assert_eq!(
            why,
            [
                "WARNING: the recovery point is 2h: that much committed work would be lost now (warning after 5m)",
                "CRITICAL: the recovery time is unknown: no backup was proven (run `pgproof prove`)",
            ]
        );
        f.recovery_point = Some(Duration::ZERO);
        f.recovery_time = Some(Duration::from_secs(2 * H));
        let (v, why) = judge(&f, &objectives);
        assert_eq!(v, Verdict::Critical);
        assert_eq!(
            why,
            ["CRITICAL: a restore to now would take about 2h (critical after 1h)"]
        );
        f.recovery_time = Some(Duration::from_secs(10 * 60));
        assert_eq!(judge(&f, &objectives), (Verdict::Ok, vec![]));
    }

    #[test]
    fn ages_read_as_operators_say_them() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(3 * H + 12 * 60 + 5)), "3h 12m");
    }
}
