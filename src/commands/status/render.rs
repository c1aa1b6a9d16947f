//! Status as text for people and as Prometheus metrics for scrapers (JSON
//! is the structs themselves).

use super::ClusterStatus;
use super::verdict::human;
use crate::report;
use std::fmt::Write;
use std::time::Duration;

fn ago(secs: u64) -> String {
    format!("{} ago", human(Duration::from_secs(secs)))
}

/// One block per cluster; with `fleet`, a summary table first.
pub fn text(statuses: &[ClusterStatus], fleet: bool) -> String {
    let mut out = String::new();
    if fleet {
        let _ = writeln!(
            out,
            "{:<20} {:<8} {:>3}  {:<24} {:>10}  {:<5} {:<16} {:>10}  proof",
            "cluster", "verdict", "PG", "newest WAL", "age", "gaps", "newest backup", "age"
        );
        for s in statuses {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:>3}  {:<24} {:>10}  {:<5} {:<16} {:>10}  {}",
                s.cluster,
                s.verdict.as_str(),
                s.major.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                s.wal.as_ref().map(|w| w.newest.as_str()).unwrap_or("none"),
                s.wal
                    .as_ref()
                    .map(|w| human(Duration::from_secs(w.age_seconds)))
                    .unwrap_or_else(|| "-".into()),
                s.gaps.len(),
                s.newest_backup
                    .as_ref()
                    .map(|b| b.name.as_str())
                    .unwrap_or("none"),
                s.newest_backup
                    .as_ref()
                    .map(|b| human(Duration::from_secs(b.age_seconds)))
                    .unwrap_or_else(|| "-".into()),
                s.newest_proof
                    .as_ref()
                    .map(|p| if p.succeeded { "OK" } else { "FAILED" })
                    .unwrap_or("never"),
            );
        }
        out.push('\n');
    }
    for s in statuses {
        let _ = writeln!(out, "{}: {}", s.cluster, s.verdict.as_str());
        let _ = writeln!(out, "  repository     {}", s.repository);
        if let (Some(sys), Some(major)) = (&s.system_identifier, s.major) {
            let _ = writeln!(out, "  identity       system {sys}, PostgreSQL {major}");
        }
        let _ = match (&s.wal, &s.oldest_backup) {
            (Some(w), Some(oldest)) => writeln!(
                out,
                "  newest WAL     {}, stored {} ({} files, {} since backup {oldest})",
                w.newest,
                ago(w.age_seconds),
                w.files,
                report::bytes(w.stored_bytes)
            ),
            (Some(w), None) => writeln!(
                out,
                "  newest WAL     {}, stored {}",
                w.newest,
                ago(w.age_seconds)
            ),
            (None, _) => writeln!(out, "  newest WAL     none"),
        };
        let _ = match (&s.oldest_backup, s.gaps.is_empty()) {
            (None, _) => writeln!(out, "  gaps           - (no backup to start from)"),
            (Some(oldest), true) => writeln!(out, "  gaps           none since backup {oldest}"),
            (Some(oldest), false) => writeln!(
                out,
                "  gaps           since backup {oldest}: {}",
                s.gaps.join(", ")
            ),
        };
        let _ = match &s.newest_backup {
            Some(b) => writeln!(
                out,
                "  newest backup  {}, finished {} ({} -> {}; {} complete backups)",
                b.name,
                ago(b.age_seconds),
                report::bytes(b.size),
                report::bytes(b.stored_size),
                s.backups
            ),
            None => writeln!(out, "  newest backup  none"),
        };
        let _ = match &s.newest_proof {
            Some(p) => writeln!(
                out,
                "  newest proof   {} of backup {}, {}",
                if p.succeeded { "OK" } else { "FAILED" },
                p.backup,
                ago(p.age_seconds)
            ),
            None => writeln!(out, "  newest proof   never proven"),
        };
        if let Some(rp) = &s.recovery_point {
            let behind = match (rp.unarchived_bytes, &rp.server_flush_lsn) {
                (Some(0), Some(lsn)) => format!("; everything flushed (to {lsn}) is archived"),
                (Some(bytes), Some(lsn)) => format!(
                    "; {} of flushed WAL (to {lsn}) not archived yet",
                    report::bytes(bytes)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  recovery point {} of committed work at risk{behind} (from {})",
                human(Duration::from_secs(rp.seconds)),
                rp.measured_from
            );
        }
        let _ = match &s.recovery_time {
            Some(rt) => writeln!(
                out,
                "  recovery time  about {} to restore to the newest archived WAL: {} restoring {}, {} recovering {} of WAL (scaled from the proof of backup {}, {})",
                human(Duration::from_secs(rt.estimate_seconds)),
                human(Duration::from_secs(rt.restore_seconds)),
                report::bytes(rt.backup_bytes),
                human(Duration::from_secs(rt.replay_seconds)),
                report::bytes(rt.wal_bytes),
                rt.proof_of_backup,
                rt.proof_finished_at.format("%Y-%m-%d %H:%M UTC")
            ),
            None if s.newest_backup.is_some() => writeln!(
                out,
                "  recovery time  unknown until a backup is proven (pgproof prove)"
            ),
            None => Ok(()),
        };
        for r in &s.reasons {
            let _ = writeln!(out, "  {r}");
        }
    }
    out
}

/// The Prometheus text exposition format, one gauge family per figure.
pub fn prometheus(statuses: &[ClusterStatus]) -> String {
    let mut out = String::new();
    let label = |s: &ClusterStatus| format!("cluster=\"{}\"", escape(&s.cluster));
    type Figure = fn(&ClusterStatus) -> Option<f64>;
    let families: [(&str, &str, Figure); 10] = [
        (
            "pgproof_status",
            "Verdict: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
            |s| Some(f64::from(s.verdict.exit_code())),
        ),
        (
            "pgproof_wal_newest_age_seconds",
            "Age of the newest archived WAL segment",
            |s| s.wal.as_ref().map(|w| w.age_seconds as f64),
        ),
        (
            "pgproof_wal_gaps",
            "Runs of missing WAL segments since the oldest backup",
            |s| Some(s.gaps.len() as f64),
        ),
        ("pgproof_backups", "Complete backups", |s| {
            Some(s.backups as f64)
        }),
        (
            "pgproof_backup_newest_age_seconds",
            "Age of the newest complete backup",
            |s| s.newest_backup.as_ref().map(|b| b.age_seconds as f64),
        ),
        (
            "pgproof_proof_newest_age_seconds",
            "Age of the newest proof",
            |s| s.newest_proof.as_ref().map(|p| p.age_seconds as f64),
        ),
        (
            "pgproof_proof_newest_succeeded",
            "Whether the newest proof succeeded (1) or failed (0)",
            |s| {
                s.newest_proof
                    .as_ref()
                    .map(|p| if p.succeeded { 1.0 } else { 0.0 })
            },
        ),
        (
            "pgproof_recovery_point_seconds",
            "Committed work that would be lost now, as time (0 when the server's flushed WAL is all archived)",
            |s| s.recovery_point.as_ref().map(|r| r.seconds as f64),
        ),
        (
            "pgproof_recovery_point_unarchived_bytes",
            "WAL the server flushed past the newest archived segment (when status reached the server)",
            |s| {
                s.recovery_point
                    .as_ref()
                    .and_then(|r| r.unarchived_bytes)
                    .map(|b| b as f64)
            },
        ),
        (
            "pgproof_recovery_time_estimate_seconds",
            "Estimated time to restore the newest backup and replay the archive, scaled from the newest proof",
            |s| s.recovery_time.as_ref().map(|r| r.estimate_seconds as f64),
        ),
    ];
    for (name, help, figure) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for s in statuses {
            if let Some(v) = figure(s) {
                let _ = writeln!(out, "{name}{{{}}} {v}", label(s));
            }
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
