//! The WAL archive of one binding: storing a file once, recognising an
//! identical re-push, refusing a conflicting one, and reading back only
//! content whose checksum verifies.

use super::Repository;
use super::layout::{self, WalObjectName};
use crate::codec::{Checksum, Compression, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::walname::WalFileName;
use bytes::Bytes;
use std::io::Read;

/// A WAL file as stored in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWal {
    pub key: String,
    pub name: WalFileName,
    pub checksum: Checksum,
    pub compression: Compression,
    pub stored_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Archived {
    /// Newly stored, with its compressed size.
    Stored { key: String, stored_size: u64 },
    /// An identical copy was already there.
    AlreadyPresent { key: String },
}

impl Repository {
    /// Every stored WAL object in the directory `name` belongs to. One listing
    /// serves all the segments of a batch that share a directory.
    pub async fn list_wal_dir(&self, binding: &str, name: WalFileName) -> Result<Vec<StoredWal>> {
        let dir = layout::wal_dir(&self.cluster, binding, name);
        let objects = self.storage.list_dir(&dir).await?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let WalObjectName {
                    name,
                    checksum,
                    compression,
                } = layout::parse_wal_object(&o.key)?;
                Some(StoredWal {
                    key: o.key,
                    name,
                    checksum,
                    compression,
                    stored_size: o.size,
                })
            })
            .collect())
    }

    /// The stored copy of `name`, if any. Two copies with different content
    /// can only come from outside pgproof; that is reported, not guessed at.
    pub async fn find_wal(&self, binding: &str, name: WalFileName) -> Result<Option<StoredWal>> {
        let mut found: Vec<StoredWal> = self
            .list_wal_dir(binding, name)
            .await?
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ if found.iter().all(|s| s.checksum == found[0].checksum) => Ok(found.pop()),
            n => Err(Error::new(ErrorKind::Conflict, format!("{n} different copies of {name} are stored in {}", self.describe()))
                .with_hint("the archive was written to by something other than pgproof; run `pgproof verify` and inspect the objects")),
        }
    }

    /// Stores a WAL file unless an identical copy exists; a different copy
    /// under the same name is a `Conflict` and leaves the stored one untouched.
    /// Returns only after the object is stored and its size read back.
    pub async fn archive_wal(
        &self,
        binding: &str,
        name: WalFileName,
        content: Bytes,
        checksum: Checksum,
        compression: Compression,
        existing: &[StoredWal],
    ) -> Result<Archived> {
        if let Some(same) = existing
            .iter()
            .find(|s| s.name == name && s.checksum == checksum)
        {
            return Ok(Archived::AlreadyPresent {
                key: same.key.clone(),
            });
        }
        if let Some(other) = existing.iter().find(|s| s.name == name) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{name} is already archived in {} with different content (stored sha256 {}, this file {checksum}); the stored copy was left unchanged",
                    self.describe(),
                    other.checksum
                ),
            )
            .with_hint("another cluster may be archiving into this prefix, or the local file is damaged; compare it with `pgproof wal-fetch` before doing anything else"));
        }
        let key = layout::wal_object(&self.cluster, binding, name, checksum, compression);
        let packed = tokio::task::spawn_blocking(move || compression.compress(&content))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::LocalIo, "compression task failed").with_source(e)
            })??;
        let packed_len = packed.len() as u64;
        match self.storage.put_new(&key, Bytes::from(packed)).await {
            Ok(()) => {}
            // The key holds the content's checksum: whoever won the race stored the same bytes.
            Err(e) if e.kind() == ErrorKind::Conflict => {
                return Ok(Archived::AlreadyPresent { key });
            }
            Err(e) => return Err(e),
        }
        match self.storage.head(&key).await? {
            Some(info) if info.size == packed_len => Ok(Archived::Stored {
                key,
                stored_size: packed_len,
            }),
            Some(info) => Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "{key} was stored with {} bytes instead of {packed_len}",
                    info.size
                ),
            )),
            None => Err(Error::new(
                ErrorKind::Storage,
                format!("{key} is missing right after it was stored"),
            )),
        }
    }

    /// Downloads, decompresses and verifies a stored WAL file. Only content
    /// whose SHA-256 matches the key is returned.
    pub async fn fetch_wal(&self, stored: &StoredWal) -> Result<Vec<u8>> {
        let packed = self.storage.get(&stored.key).await?;
        let stored = stored.clone();
        tokio::task::spawn_blocking(move || decode_verified(&stored, &packed))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::LocalIo, "decompression task failed").with_source(e)
            })?
    }
}

fn decode_verified(stored: &StoredWal, packed: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |why: String| {
        Error::corrupt(format!("stored object {} is corrupt: {why}", stored.key))
            .with_hint("the copy in the repository is damaged; it was not used")
    };
    let mut decoder = stored
        .compression
        .decoder(packed)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(16 << 20);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("it does not decompress ({e})")))?;
    let mut hasher = Hasher::new();
    hasher.update(&out);
    let actual = hasher.finish();
    if actual != stored.checksum {
        return Err(corrupt(format!(
            "its content has sha256 {actual}, expected {}",
            stored.checksum
        )));
    }
    Ok(out)
}
