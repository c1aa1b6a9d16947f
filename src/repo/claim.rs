//! A backup's name is claimed before any part is written: `claim.json`
//! created with create-if-absent in the backup's directory. The run that
//! creates it owns the directory; another run wanting the same second takes
//! the next free one. The claim also names the lock its backup ran under,
//! so that `delete` can tell a running backup from debris.

use super::{Repository, document, layout};
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupClaim {
    pub format: u32,
    pub backup: String,
    pub binding: String,
    /// The token of the lock the backup runs under (`locks/backup.json`).
    pub lock_token: String,
    pub host: String,
    pub pid: u32,
    pub claimed_at: DateTime<Utc>,
    pub pgproof_version: String,
}

/// How many later seconds are tried when a name is taken: more than a
/// minute of backups started at once would be no accident.
const NAME_TRIES: i64 = 60;

impl Repository {
    /// Claims the first free name from `start`'s second on; returns it.
    pub async fn claim_backup_name(
        &self,
        binding: &str,
        start: DateTime<Utc>,
        lock_token: &str,
        host: &str,
    ) -> Result<String> {
        for offset in 0..NAME_TRIES {
            let name = layout::backup_name(start + chrono::Duration::seconds(offset));
            let claim = BackupClaim {
                format: super::identity::FORMAT_VERSION,
                backup: name.clone(),
                binding: binding.to_string(),
                lock_token: lock_token.to_string(),
                host: host.to_string(),
                pid: std::process::id(),
                claimed_at: Utc::now(),
                pgproof_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let key = layout::backup_claim(&self.cluster, binding, &name);
            match self
                .storage
                .put_new(&key, Bytes::from(document::encode(&claim)?))
                .await
            {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == ErrorKind::Conflict => {
                    tracing::info!("backup name {name} is taken; trying the next second");
                }
                Err(e) => return Err(e.context("claiming the backup's name")),
            }
        }
        Err(Error::new(
            ErrorKind::Busy,
            format!(
                "{} holds backups named for each second from {} for a minute",
                self.describe(),
                layout::backup_name(start)
            ),
        )
        .with_hint("check the host's clock, and what else writes backups to this cluster prefix"))
    }

    /// The claim of a backup directory; `None` when absent (a backup
    /// written before claims existed).
    pub async fn backup_claim(&self, binding: &str, backup: &str) -> Result<Option<BackupClaim>> {
        let key = layout::backup_claim(&self.cluster, binding, backup);
        match self.storage.get(&key).await {
            Ok(bytes) => document::decode(&bytes, &format!("claim {key}")).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
