//! The permanent mark of a backup: a small self-checksummed document next to
//! its manifest that exempts it from retention. Separate from the manifest
//! because manifests are written once and never changed.

use super::{Repository, document, layout};
use crate::error::{ErrorKind, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PermanentMark {
    pub format: u32,
    pub backup: String,
    pub binding: String,
    pub marked_at: DateTime<Utc>,
    /// Where the mark was set from, for the operator who wonders why.
    pub host: String,
    pub pgproof_version: String,
}

impl PermanentMark {
    pub fn new(binding: &str, backup: &str) -> PermanentMark {
        PermanentMark {
            format: super::identity::FORMAT_VERSION,
            backup: backup.to_string(),
            binding: binding.to_string(),
            marked_at: Utc::now(),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pgproof_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

impl Repository {
    /// Marks a backup permanent; marking it again replaces the mark.
    pub async fn mark_permanent(&self, binding: &str, backup: &str) -> Result<String> {
        let key = layout::permanent_mark(&self.cluster, binding, backup);
        let mark = PermanentMark::new(binding, backup);
        self.storage
            .put_replace(&key, Bytes::from(document::encode(&mark)?))
            .await?;
        Ok(key)
    }

    /// Lifts the mark; `false` when there was none.
    pub async fn unmark_permanent(&self, binding: &str, backup: &str) -> Result<bool> {
        let key = layout::permanent_mark(&self.cluster, binding, backup);
        if self.storage.head(&key).await?.is_none() {
            return Ok(false);
        }
        match self.storage.delete(&key).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The mark of one backup, verified, if it has one.
    pub async fn permanent_mark(
        &self,
        binding: &str,
        backup: &str,
    ) -> Result<Option<PermanentMark>> {
        let key = layout::permanent_mark(&self.cluster, binding, backup);
        match self.storage.get(&key).await {
            Ok(bytes) => Ok(Some(document::decode(
                &bytes,
                &format!("permanent mark {key}"),
            )?)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads and verifies the mark stored under `key` (as a listing names it).
    pub async fn read_permanent_mark(&self, key: &str) -> Result<PermanentMark> {
        let bytes = self.storage.get(key).await?;
        document::decode(&bytes, &format!("permanent mark {key}"))
    }

    /// `(binding, backup)` of every backup marked permanent, from one
    /// listing; each mark is read back and verified, so a damaged mark is an
    /// error rather than a silently lost exemption.
    pub async fn permanent_backups(&self) -> Result<BTreeSet<(String, String)>> {
        let objects = self.backup_objects().await?;
        let mut marked = BTreeSet::new();
        for o in &objects {
            // `<cluster>/backups/<binding>/<backup>/permanent.json`: the key says whose mark it is.
            let parts: Vec<&str> = o.key.rsplitn(4, '/').collect();
            let [file, backup, binding, _] = parts[..] else {
                continue;
            };
            if file != "permanent.json" {
                continue;
            }
            self.read_permanent_mark(&o.key).await?;
            marked.insert((binding.to_string(), backup.to_string()));
        }
        Ok(marked)
    }
}
