//! The complete backups of a prefix (those with a manifest), and the proofs
//! recorded for them.

use super::manifest::Manifest;
use super::proof::Proof;
use super::{Repository, document, layout};
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;

/// The backups of a prefix that have a manifest: those whose manifest reads
/// back, and those whose manifest does not. One bad manifest must not hide
/// the others, and must never pass for a backup that is not there.
#[derive(Debug, Default)]
pub struct BackupSet {
    /// Oldest first.
    pub complete: Vec<Manifest>,
    /// By name.
    pub damaged: Vec<DamagedBackup>,
}

/// A backup directory whose manifest exists but cannot be used: unreadable,
/// not JSON, failing its checksum, of a newer format, or describing another
/// backup.
#[derive(Debug)]
pub struct DamagedBackup {
    pub binding: String,
    pub name: String,
    pub manifest_key: String,
    pub problem: Error,
}

impl DamagedBackup {
    /// One line for a warning or a report.
    pub fn describe(&self) -> String {
        format!(
            "backup {} (binding {}) is damaged: {}",
            self.name, self.binding, self.problem
        )
    }
}

impl BackupSet {
    pub fn damaged_named(&self, name: &str) -> Option<&DamagedBackup> {
        self.damaged.iter().find(|d| d.name == name)
    }
}

impl Repository {
    /// Every backup with a manifest, of every binding. Only listing the
    /// backups fails the call; a manifest that cannot be used is returned
    /// among `damaged`.
    pub async fn backups(&self) -> Result<BackupSet> {
        let root = layout::all_backups(&self.cluster);
        let objects = self.backup_objects().await?;
        let mut set = BackupSet::default();
        for o in &objects {
            let Some(rest) = o.key.strip_prefix(&format!("{root}/")) else {
                continue;
            };
            let [binding, name, "manifest.json"] = rest.split('/').collect::<Vec<_>>()[..] else {
                continue;
            };
            match self.read_manifest(binding, name).await {
                Ok(m) => set.complete.push(m),
                // Deleted since the listing: gone, not damaged.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(problem) => set.damaged.push(DamagedBackup {
                    binding: binding.to_string(),
                    name: name.to_string(),
                    manifest_key: o.key.clone(),
                    problem,
                }),
            }
        }
        set.complete
            .sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.name.cmp(&b.name)));
        set.damaged.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(set)
    }

    /// The newest complete backup of `binding` whose manifest reads, found
    /// by name (names sort in start order) with one listing and as few
    /// reads as it takes: what an incremental rests on. A manifest that
    /// cannot be used is passed over with a warning.
    pub async fn newest_backup(&self, binding: &str) -> Result<Option<Manifest>> {
        let root = layout::backups_root(&self.cluster, binding);
        let mut names = match self.storage.list_subdirs(&root).await {
            Ok(names) => names,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        names.sort();
        for name in names.iter().rev() {
            match self.read_manifest(binding, name).await {
                Ok(m) => return Ok(Some(m)),
                // Incomplete: running, or never finished.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => tracing::warn!("backup {name} is damaged: {e}"),
            }
        }
        Ok(None)
    }

    /// Reads one backup's manifest and checks it: its own checksum, a format
    /// this build understands, and that it describes the backup of its
    /// directory (a manifest copied elsewhere would restore the wrong parts).
    pub async fn read_manifest(&self, binding: &str, name: &str) -> Result<Manifest> {
        let key = layout::backup_manifest(&self.cluster, binding, name);
        let bytes = self.storage.get(&key).await?;
        let what = format!("manifest {key}");
        let mut m: Manifest = document::decode_readable(&bytes, &what)?;
        m.document_checksum = Some(crate::codec::Checksum::of(&bytes));
        if m.name != name || m.binding != binding {
            return Err(Error::corrupt(format!(
                "{what} describes backup {} of binding {}, not the backup of its directory",
                m.name, m.binding
            ))
            .with_hint(
                "a manifest was copied or moved by hand; restore the original from a copy",
            ));
        }
        Ok(m)
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
            proofs.push(self.read_proof(&o.key).await?);
        }
        proofs.sort_by_key(|p| p.started_at);
        Ok(proofs)
    }

    /// Reads and verifies the proof stored under `key` (as a listing names it).
    pub async fn read_proof(&self, key: &str) -> Result<Proof> {
        let bytes = self.storage.get(key).await?;
        document::decode::<Proof>(&bytes, &format!("proof {key}"))
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
