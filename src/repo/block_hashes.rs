//! Block hashes: the XXH3-64 of every block of a backup's relation files,
//! which the next incremental compares with what it reads. They live in
//! one uncompressed object per part (`part-00001.hashes`; hashes do not
//! compress), written after the part, listed in the manifest with its
//! SHA-256. A file's record there is either a full vector (hash of block
//! 0, 1, ...) or, for a file stored as changed blocks, a delta (the block
//! numbers, then their hashes). A file's vector is its newest full record
//! overlaid with each newer delta, oldest first (`FileEntry::hashes`).

use super::manifest::{FileEntry, HashRecord, Manifest};
use super::{Repository, layout};
use crate::codec::Checksum;
use crate::error::{Error, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use crate::codec::block_hash;

/// A part's hash object as it is built.
#[derive(Debug, Default)]
pub struct HashObjectWriter {
    bytes: Vec<u8>,
}

impl HashObjectWriter {
    /// Adds a full vector; returns its offset.
    pub fn full(&mut self, hashes: &[u64]) -> u64 {
        let at = self.bytes.len() as u64;
        for h in hashes {
            self.bytes.extend_from_slice(&h.to_le_bytes());
        }
        at
    }

    /// Adds a delta; returns its offset.
    pub fn delta(&mut self, numbers: &[u32], hashes: &[u64]) -> u64 {
        debug_assert_eq!(numbers.len(), hashes.len());
        let at = self.bytes.len() as u64;
        for n in numbers {
            self.bytes.extend_from_slice(&n.to_le_bytes());
        }
        for h in hashes {
            self.bytes.extend_from_slice(&h.to_le_bytes());
        }
        at
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// The name of a part's hash object: `part-00001.tar.zst` → `part-00001.hashes`.
pub fn object_name(part: &str) -> String {
    let stem = part.split('.').next().unwrap_or(part);
    format!("{stem}.hashes")
}

/// Composes a file's vector from its records (newest first), cut or
/// extended to `blocks`; a block no record covers is `None` (it is new).
pub fn compose(
    records: &[HashRecord],
    blocks: usize,
    mut object: impl FnMut(&HashRecord) -> Result<Bytes>,
) -> Result<Vec<Option<u64>>> {
    let mut vector: Vec<Option<u64>> = vec![None; blocks];
    for record in records.iter().rev() {
        let bytes = object(record)?;
        let count = record.count as usize;
        let width = if record.delta { 12 } else { 8 };
        let start = record.offset as usize;
        let range = bytes
            .get(start..start + count * width)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "block hashes of backup {} (part {}) end before the record at offset {} of {count} blocks",
                    record.backup, record.part, record.offset
                ))
            })?;
        let hash_at = |i: usize, base: usize| {
            u64::from_le_bytes(range[base + 8 * i..base + 8 * i + 8].try_into().expect("8"))
        };
        if record.delta {
            for i in 0..count {
                let n = u32::from_le_bytes(range[4 * i..4 * i + 4].try_into().expect("4")) as usize;
                if n < blocks {
                    vector[n] = Some(hash_at(i, 4 * count));
                }
            }
        } else {
            for (i, slot) in vector.iter_mut().enumerate().take(count) {
                *slot = Some(hash_at(i, 0));
            }
        }
    }
    Ok(vector)
}

/// The hash objects of a chain of backups, fetched when first needed and
/// kept while they fit in `budget` bytes: files are read in path order, so
/// the parent's objects are needed in order too.
pub struct HashObjects {
    repo: Repository,
    binding: String,
    chain: HashMap<String, Manifest>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    objects: HashMap<(String, usize), Bytes>,
    order: Vec<(String, usize)>,
    size: usize,
}

const BUDGET: usize = 64 << 20;

impl HashObjects {
    /// `chain`: every backup a file's records may name.
    pub fn new(repo: Repository, binding: &str, chain: Vec<Manifest>) -> Arc<HashObjects> {
        Arc::new(HashObjects {
            repo,
            binding: binding.to_string(),
            chain: chain.into_iter().map(|m| (m.name.clone(), m)).collect(),
            cache: Mutex::default(),
        })
    }

    /// The vector of `file` as the parent holds it, `blocks` long.
    pub async fn vector(&self, file: &FileEntry, blocks: usize) -> Result<Vec<Option<u64>>> {
        let mut fetched = HashMap::new();
        for r in &file.hashes {
            let key = (r.backup.clone(), r.part);
            if let std::collections::hash_map::Entry::Vacant(slot) = fetched.entry(key) {
                slot.insert(self.object(&r.backup, r.part).await?);
            }
        }
        compose(&file.hashes, blocks, |r| {
            Ok(fetched[&(r.backup.clone(), r.part)].clone())
        })
    }

    async fn object(&self, backup: &str, part: usize) -> Result<Bytes> {
        let key = (backup.to_string(), part);
        if let Some(b) = self.cache.lock().expect("not poisoned").objects.get(&key) {
            return Ok(b.clone());
        }
        let bytes = self.fetch(backup, part).await?;
        let mut cache = self.cache.lock().expect("not poisoned");
        while cache.size + bytes.len() > BUDGET && !cache.order.is_empty() {
            let old = cache.order.remove(0);
            if let Some(b) = cache.objects.remove(&old) {
                cache.size -= b.len();
            }
        }
        cache.size += bytes.len();
        cache.order.push(key.clone());
        cache.objects.insert(key, bytes.clone());
        Ok(bytes)
    }

    async fn fetch(&self, backup: &str, part: usize) -> Result<Bytes> {
        let m = self.chain.get(backup).ok_or_else(|| {
            Error::corrupt(format!(
                "block hashes name backup {backup}, which is not in the chain"
            ))
        })?;
        let object = m
            .parts
            .get(part)
            .and_then(|p| p.hashes.as_ref())
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "backup {backup} has no block hashes for its part {part}"
                ))
            })?;
        self.repo
            .read_hash_object(&self.binding, backup, &object.name, object.stored_checksum)
            .await
    }
}

impl Repository {
    /// One part's hash object, checked against its manifest's SHA-256.
    pub async fn read_hash_object(
        &self,
        binding: &str,
        backup: &str,
        name: &str,
        checksum: Checksum,
    ) -> Result<Bytes> {
        let key = layout::backup_part(self.cluster(), binding, backup, name);
        let bytes = self
            .storage
            .get(&key)
            .await
            .map_err(|e| e.context(format!("block hashes {key} of backup {backup}")))?;
        if Checksum::of(&bytes) != checksum {
            return Err(Error::corrupt(format!(
                "block hashes {key} of backup {backup} fail their checksum"
            ))
            .with_hint("the stored backup is damaged; take a full backup (backup-push --full)"));
        }
        Ok(bytes)
    }

    /// Stores a part's hash object.
    pub async fn write_hash_object(
        &self,
        binding: &str,
        backup: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let key = layout::backup_part(self.cluster(), binding, backup, name);
        self.storage.put_new(&key, Bytes::from(bytes)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(offset: u64, count: u64, delta: bool) -> HashRecord {
        HashRecord {
            backup: "b".into(),
            part: 0,
            offset,
            count,
            delta,
        }
    }

    #[test]
    fn deltas_overlay_the_full_vector_newest_last() {
        let mut w = HashObjectWriter::default();
        let full = w.full(&[10, 11, 12, 13]);
        let first = w.delta(&[1, 4], &[21, 24]);
        let second = w.delta(&[4, 5], &[34, 35]);
        let bytes = Bytes::from(w.into_bytes());
        // Newest first, as a manifest lists them.
        let records = [
            record(second, 2, true),
            record(first, 2, true),
            record(full, 4, false),
        ];
        let v = compose(&records, 7, |_| Ok(bytes.clone())).unwrap();
        assert_eq!(
            v,
            vec![
                Some(10),
                Some(21),
                Some(12),
                Some(13),
                Some(34),
                Some(35),
                None
            ]
        );
        // Cut to a truncated file's length.
        let v = compose(&records, 2, |_| Ok(bytes.clone())).unwrap();
        assert_eq!(v, vec![Some(10), Some(21)]);
        // A record past the object's end is damage, not a shorter vector.
        let err = compose(&[record(full, 400, false)], 4, |_| Ok(bytes.clone())).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
    }

    #[test]
    fn the_object_is_named_after_its_part() {
        assert_eq!(object_name("part-00001.tar.zst"), "part-00001.hashes");
        assert_eq!(
            object_name("part-00002-tablespace-16400.tar.lz4"),
            "part-00002-tablespace-16400.hashes"
        );
    }
}
