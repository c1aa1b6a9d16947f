//! The two figures an operator is held to: the recovery point (how much
//! committed work would be lost if the cluster were lost now) and the
//! recovery time (how long a restore to the newest archived WAL would take),
//! the latter scaled from what the newest proof measured.

use crate::pg::lsn::Lsn;
use crate::repo::proof::{Proof, ProofTimings};
use serde::Serialize;
use std::time::Duration;

/// Committed work not yet safe in the archive.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecoveryPoint {
    /// Work at risk as time: since the newest archived segment was stored,
    /// or 0 when the server was reached and everything it flushed is archived.
    pub seconds: u64,
    /// WAL the server flushed past the end of the newest archived segment of
    /// its timeline; only when the server was reached.
    pub unarchived_bytes: Option<u64>,
    /// The server's flush LSN, when it was reached.
    pub server_flush_lsn: Option<String>,
    /// Where the figure comes from: the server, or the archive alone (and why).
    pub measured_from: String,
}

/// What status learned from the cluster's own server, if it asked one.
#[derive(Debug, Clone)]
pub enum ServerView {
    /// Not asked (`status --all`, or no data directory configured).
    NotAsked,
    /// Asked, but no usable answer: the reason, said in the report.
    Unreachable(String),
    /// A primary, its flush LSN, and the end of the newest archived segment
    /// of its timeline (of any timeline when its own has none yet).
    Primary {
        reached: String,
        flush_lsn: Lsn,
        archived_end: Option<Lsn>,
    },
}

/// The recovery point from the newest archived WAL's age and, when the
/// server was reached, how far its flushed WAL runs past the archive.
pub fn recovery_point(
    newest_wal_age: Option<Duration>,
    server: &ServerView,
) -> Option<RecoveryPoint> {
    let age = newest_wal_age?.as_secs();
    Some(match server {
        ServerView::NotAsked => RecoveryPoint {
            seconds: age,
            unarchived_bytes: None,
            server_flush_lsn: None,
            measured_from: "the archive alone (its newest WAL's age; the server was not asked)"
                .into(),
        },
        ServerView::Unreachable(why) => RecoveryPoint {
            seconds: age,
            unarchived_bytes: None,
            server_flush_lsn: None,
            measured_from: format!("the archive alone ({why})"),
        },
        ServerView::Primary {
            reached,
            flush_lsn,
            archived_end,
        } => {
            let unarchived = flush_lsn.0 - archived_end.map_or(0, |e| e.0.min(flush_lsn.0));
            RecoveryPoint {
                // Everything flushed is archived: nothing committed is at
                // risk, however old the newest segment is.
                seconds: if unarchived == 0 { 0 } else { age },
                unarchived_bytes: Some(unarchived),
                server_flush_lsn: Some(flush_lsn.to_string()),
                measured_from: format!("the server at {reached} and the archive"),
            }
        }
    })
}

/// A restore to the newest archived WAL, estimated.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecoveryTime {
    pub estimate_seconds: u64,
    pub restore_seconds: u64,
    pub replay_seconds: u64,
    /// What the estimate is for: the newest backup, and the WAL from its
    /// start to the end of the newest archived segment.
    pub backup_bytes: u64,
    pub wal_bytes: u64,
    /// The proof it is scaled from.
    pub proof_of_backup: String,
    pub proof_finished_at: chrono::DateTime<chrono::Utc>,
}

/// A floor for the amounts a proof measured, so that a proof of a tiny
/// backup with almost nothing to replay does not turn into a rate that
/// multiplies its fixed costs (starting the server, a checkpoint) by millions.
const MEASURED_FLOOR: u64 = 16 << 20;

/// Each phase of the proof scaled by how much more (or less) there is to do
/// now: restore time by bytes, recovery time by WAL. Linear scaling carries
/// the proof's fixed costs along, so the estimate errs long, never short.
pub fn recovery_time(
    proof: &Proof,
    timings: &ProofTimings,
    backup_bytes: u64,
    wal_bytes: u64,
) -> RecoveryTime {
    let scale = |secs: f64, now: u64, then: u64| -> u64 {
        let ratio = now.max(1) as f64 / then.max(MEASURED_FLOOR) as f64;
        // Never below what the proof itself took: less data does not make
        // the server start faster.
        (secs * ratio.max(1.0)).ceil() as u64
    };
    let restore_seconds = scale(timings.restore_secs, backup_bytes, timings.restored_bytes);
    let replay_seconds = scale(timings.recovery_secs, wal_bytes, timings.replayed_bytes);
    RecoveryTime {
        estimate_seconds: restore_seconds + replay_seconds,
        restore_seconds,
        replay_seconds,
        backup_bytes,
        wal_bytes,
        proof_of_backup: proof.backup.clone(),
        proof_finished_at: proof.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn proof(
        restore_secs: f64,
        restored: u64,
        recovery_secs: f64,
        replayed: u64,
    ) -> (Proof, ProofTimings) {
        let timings = ProofTimings {
            restore_secs,
            restored_bytes: restored,
            recovery_secs,
            replayed_bytes: replayed,
        };
        let proof = Proof::sample(
            "20261207T080000Z",
            restore_secs + recovery_secs,
            Some(timings),
        );
        (proof, timings)
    }

    #[test]
    fn each_phase_scales_with_what_there_is_to_do_now() {
        // Proven: 1 GiB restored in 20 s, 256 MiB replayed in 8 s.
        let (p, t) = proof(20.0, 1024 * MIB, 8.0, 256 * MIB);
        // Now: a 3 GiB backup and 1 GiB of WAL since its start.
        let rt = recovery_time(&p, &t, 3 * 1024 * MIB, 1024 * MIB);
        assert_eq!((rt.restore_seconds, rt.replay_seconds), (60, 32));
        assert_eq!(rt.estimate_seconds, 92);
        assert_eq!(rt.proof_of_backup, "20261207T080000Z");
    }

    #[test]
    fn less_to_do_never_estimates_below_the_proof() {
        let (p, t) = proof(20.0, 1024 * MIB, 8.0, 256 * MIB);
        let rt = recovery_time(&p, &t, 10 * MIB, 0);
        assert_eq!((rt.restore_seconds, rt.replay_seconds), (20, 8));
    }

    #[test]
    fn a_tiny_proof_does_not_multiply_its_fixed_costs() {
        // 30 MiB restored in 2 s; 40 KiB replayed in 1.5 s (server start).
        let (p, t) = proof(2.0, 30 * MIB, 1.5, 40 << 10);
        // 64 MiB of WAL now: scaled from the 16 MiB floor, not from 40 KiB.
        let rt = recovery_time(&p, &t, 30 * MIB, 64 * MIB);
        assert_eq!(rt.replay_seconds, 6);
        assert_eq!(rt.restore_seconds, 2);
    }

    #[test]
    fn the_recovery_point_is_zero_only_when_the_server_says_so() {
        let age = Some(Duration::from_secs(3600));
        let archive = recovery_point(age, &ServerView::NotAsked).unwrap();
        assert_eq!(archive.seconds, 3600);
        assert_eq!(archive.unarchived_bytes, None);
        let gone = recovery_point(age, &ServerView::Unreachable("not running".into())).unwrap();
        assert_eq!(gone.seconds, 3600);
        assert!(gone.measured_from.contains("not running"));

        let primary = |flush: u64, end: Option<u64>| ServerView::Primary {
            reached: "socket /tmp/.s.PGSQL.5433".into(),
            flush_lsn: Lsn(flush),
            archived_end: end.map(Lsn),
        };
        let all_archived = recovery_point(age, &primary(0x300_0000, Some(0x300_0000))).unwrap();
        assert_eq!(
            (all_archived.seconds, all_archived.unarchived_bytes),
            (0, Some(0))
        );
        let behind = recovery_point(age, &primary(0x300_0100, Some(0x300_0000))).unwrap();
        assert_eq!(
            (behind.seconds, behind.unarchived_bytes),
            (3600, Some(0x100))
        );
        assert_eq!(behind.server_flush_lsn.as_deref(), Some("0/3000100"));
        // Nothing archived that status could place: all of it is at risk.
        let nothing = recovery_point(age, &primary(0x300_0100, None)).unwrap();
        assert_eq!(nothing.unarchived_bytes, Some(0x300_0100));
        assert_eq!(recovery_point(None, &ServerView::NotAsked), None);
    }
}
