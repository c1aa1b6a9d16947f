//! The complete backups of a prefix (those with a manifest), and the proofs
//! recorded for them.

use super::manifest::Manifest;
use super::proof::Proof;
use super::{Repository, document, layout};
use crate::error::{ErrorKind, Result};
use bytes::Bytes;

impl Repository {
    /// Every complete backup (with a manifest) of every binding, oldest first.
    pub async fn backups(&self) -> Result<Vec<Manifest>> {
        let root = format!("{}/backups", self.cluster);
        let objects = self.storage.list_all(&root).await?;
        let mut manifests = Vec::new();
        for o in objects.iter().filter(|o| o.key.ends_with("/manifest.json")) {
            let bytes = self.storage.get(&o.key).await?;
            manifests.push(document::decode::<Manifest>(
                &bytes,
                &format!("manifest {}", o.key),
            )?);
        }
        manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.name.cmp(&b.name)));
        Ok(manifests)
    }

    /// The proofs recorded for one backup, oldest first.
    pub async fn proofs(&self, binding: &str, backup: &str) -> Result<Vec<Proof>> {
        let dir = layout::proofs_dir(&self.cluster, binding, backup);
        let objects = match self.storage.list_dir(&dir).await {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut proofs = Vec::new();
        for o in objects.iter().filter(|o| o.key.ends_with(".json")) {
            let bytes = self.storage.get(&o.key).await?;
            proofs.push(document::decode::<Proof>(
                &bytes,
                &format!("proof {}", o.key),
            )?);
        }
        proofs.sort_by_key(|p| p.started_at);
        Ok(proofs)
    }

    /// The newest proof of a backup, if it was ever proven.
    pub async fn newest_proof(&self, binding: &str, backup: &str) -> Result<Option<Proof>> {
        Ok(self.proofs(binding, backup).await?.pop())
    }

    /// Stores a proof next to the backup it proves; never replaces one.
    pub async fn record_proof(&self, proof: &Proof) -> Result<String> {
        let key = layout::proof(
            &self.cluster,
            &proof.binding,
            &proof.backup,
            // Milliseconds: two attempts in one second must not collide.
            &proof.started_at.format("%Y%m%dT%H%M%S%.3fZ").to_string(),
        );
        self.storage
            .put_new(&key, Bytes::from(document::encode(proof)?))
            .await?;
        Ok(key)
    }
}
