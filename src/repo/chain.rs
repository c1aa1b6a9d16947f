//! An incremental backup's chain: its parent, the parent's parent, down to
//! a full. Each link is pinned by the SHA-256 of the parent's manifest as
//! stored, so a parent that is missing, damaged or replaced by another
//! document of the same name is named, never silently used.

use super::manifest::{BackupKind, Manifest};
use super::{Repository, layout};
use crate::error::{Error, ErrorKind, Result};

/// Longest chain an incremental may extend: past it backup-push takes a
/// full. Bounds the layers a restore composes and the manifests it reads.
pub const MAX_CHAIN: usize = 64;

impl Repository {
    /// `m`'s chain, oldest (the full) first, ending with `m`.
    pub async fn chain(&self, m: &Manifest) -> Result<Vec<Manifest>> {
        self.chain_among(m, &[]).await
    }

    /// Like `chain`, taking the parents found among `known` (manifests read
    /// from this repository, each with its document checksum) instead of
    /// reading them again: verify reads every manifest once.
    pub async fn chain_among(&self, m: &Manifest, known: &[Manifest]) -> Result<Vec<Manifest>> {
        let mut chain = vec![m.clone()];
        while let Some(parent) = chain.last().expect("never empty").parent.clone() {
            let child = chain.last().expect("never empty");
            let key = layout::backup_manifest(&self.cluster, &child.binding, &parent.name);
            let broken = |why: String| {
                Error::corrupt(format!(
                    "backup {} is incremental on backup {}, whose manifest {key} {why}",
                    child.name, parent.name
                ))
                .with_hint(format!(
                    "backup {} cannot be restored without its parent; restore an older full backup, or take a new full backup (backup-push --full)",
                    m.name
                ))
            };
            let already = known.iter().find(|k| {
                k.name == parent.name && k.binding == child.binding && k.document_checksum.is_some()
            });
            let read = match already {
                Some(k) => Ok(k.clone()),
                None => self.read_manifest(&child.binding, &parent.name).await,
            };
            let found = match read {
                Ok(found) => found,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(broken("is missing".into()));
                }
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    return Err(broken(format!("is damaged: {e}")));
                }
                Err(e) => return Err(e),
            };
            if found.document_checksum != Some(parent.manifest_sha256) {
                return Err(broken(
                    "is not the one it was based on (its SHA-256 differs)".into(),
                ));
            }
            // Pins make a cycle all but impossible; the bound makes it finite.
            if chain.iter().any(|c| c.name == found.name) || chain.len() > MAX_CHAIN {
                return Err(broken(format!(
                    "makes a cycle or a chain longer than {MAX_CHAIN}"
                )));
            }
            if found.block_size != child.block_size
                || found.system_identifier != child.system_identifier
            {
                return Err(broken("describes another system or block size".into()));
            }
            chain.push(found);
        }
        chain.reverse();
        if chain[0].kind != BackupKind::Full {
            return Err(Error::corrupt(format!(
                "backup {} is incremental but names no parent",
                chain[0].name
            )));
        }
        Ok(chain)
    }
}

/// `m`'s chain as far as `backups` (one listing's manifests) holds it,
/// oldest first, by name alone: for showing, not for restoring. It starts
/// with an incremental when a parent is missing.
pub fn chain_in<'a>(backups: &'a [Manifest], m: &'a Manifest) -> Vec<&'a Manifest> {
    let mut chain = vec![m];
    while let Some(parent) = &chain.last().expect("never empty").parent {
        let found = backups
            .iter()
            .find(|b| b.name == parent.name && b.binding == m.binding);
        match found {
            Some(p) if chain.len() <= MAX_CHAIN && !chain.iter().any(|c| c.name == p.name) => {
                chain.push(p)
            }
            _ => break,
        }
    }
    chain.reverse();
    chain
}
