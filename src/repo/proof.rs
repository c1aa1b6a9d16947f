//! The record of a proven restore: a backup restored into a scratch
//! directory, started, replayed and checked. Stored next to the backup, one
//! document per attempt, failed attempts included: an operator wants to
//! see that the last proof failed, not only when one last succeeded.

use crate::pg::lsn::Lsn;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Proof {
    pub format: u32,
    /// The backup proven, and the binding it belongs to.
    pub backup: String,
    pub binding: String,
    #[serde(with = "super::identity::u64_as_string")]
    pub system_identifier: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Wall-clock seconds from the start of the restore to the last check.
    pub duration_secs: f64,
    pub host: String,
    pub pgproof_version: String,
    /// `version()` of the server that ran the proof.
    pub server_version: String,
    /// How far replay got: the server's last replayed LSN, and the newest
    /// archived segment the restore could reach.
    pub replayed_to_lsn: Option<Lsn>,
    pub replayed_to_wal: Option<String>,
    pub succeeded: bool,
    pub checks: Vec<ProofCheck>,
    /// How long the restore and the recovery took, and how much each
    /// handled: what `status` scales its recovery-time estimate from.
    /// Absent from proofs recorded before it existed, and from attempts
    /// whose recovery did not end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<ProofTimings>,
}

/// The measured phases of a proof.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct ProofTimings {
    /// Download, decompression, checksums and writing of the backup's files.
    pub restore_secs: f64,
    /// The backup's size as restored (the manifest's size).
    pub restored_bytes: u64,
    /// From starting the server to the end of recovery: reaching
    /// consistency and replaying the archive.
    pub recovery_secs: f64,
    /// WAL replayed: from the backup's start LSN to where replay ended.
    pub replayed_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProofCheck {
    /// `restore`, `start`, `consistent`, `system identifier`, `catalogs`,
    /// `connect <db>`, `pg_amcheck`, `sql`, ...
    pub name: String,
    pub passed: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

impl Proof {
    /// `OK 2026-11-25 14:02 (42 s)` / `FAILED 2026-11-25 14:02`, for listings.
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            if self.succeeded { "OK" } else { "FAILED" },
            self.finished_at.format("%Y-%m-%d %H:%M")
        )
    }
}

#[cfg(test)]
impl Proof {
    /// A successful proof of `backup`, for the tests of what reads proofs.
    pub fn sample(backup: &str, duration_secs: f64, timings: Option<ProofTimings>) -> Proof {
        Proof {
            format: super::identity::FORMAT_VERSION,
            backup: backup.into(),
            binding: "15-1".into(),
            system_identifier: 1,
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_secs,
            host: "h".into(),
            pgproof_version: "0".into(),
            server_version: "PostgreSQL 15".into(),
            replayed_to_lsn: None,
            replayed_to_wal: None,
            succeeded: true,
            checks: Vec::new(),
            timings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_survive_the_self_checksum() {
        // A float that JSON does not read back bit for bit would make the
        // stored proof fail its own checksum.
        for i in 0..2000u32 {
            let secs = f64::from(i) * 0.7315 + 1.0 / 3.0 + 1e-9 * f64::from(i);
            let timings = ProofTimings {
                restore_secs: secs,
                restored_bytes: u64::from(i) << 20,
                recovery_secs: secs / 3.0,
                replayed_bytes: u64::from(i) << 24,
            };
            let proof = Proof::sample("20261125T182907Z", secs, Some(timings));
            let bytes = super::super::document::encode(&proof).unwrap();
            let back: Proof = super::super::document::decode(&bytes, "proof").unwrap();
            assert_eq!(back.duration_secs, secs);
        }
    }
}
