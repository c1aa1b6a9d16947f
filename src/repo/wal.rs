//! The WAL archive of one binding: storing a file once, recognising an
//! identical re-push, refusing a conflicting one, and reading back only
//! content whose checksum verifies.

use super::layout::{self, WalObjectName};
use super::wal_claim::{Claimed, ListedClaim, listed_claim};
use super::{Repository, read_full};
use crate::codec::frames::{CompressPool, FRAME_INPUT, FrameWriter};
use crate::codec::{Compression, ContentChecksum, ContentHasher};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::walname::WalFileName;
use bytes::Bytes;
use std::io::Read;

/// Directory listings of one binding's WAL archive, each directory read at
/// most once: a batch of files mostly shares a directory.
pub struct WalListings<'a> {
    repo: &'a Repository,
    binding: &'a str,
    dirs: std::collections::BTreeMap<String, Vec<StoredWal>>,
}

impl<'a> WalListings<'a> {
    pub fn new(repo: &'a Repository, binding: &'a str) -> WalListings<'a> {
        WalListings {
            repo,
            binding,
            dirs: Default::default(),
        }
    }

    /// Everything stored in the directory `name` belongs to.
    pub async fn dir_of(&mut self, name: WalFileName) -> Result<&[StoredWal]> {
        let dir = name.segment().map(|s| s.directory()).unwrap_or_default();
        if !self.dirs.contains_key(&dir) {
            let listing = self.repo.list_wal_dir(self.binding, name).await?;
            self.dirs.insert(dir.clone(), listing);
        }
        Ok(&self.dirs[&dir])
    }

    /// The stored copy of `name`, if listed.
    pub async fn find(&mut self, name: WalFileName) -> Result<Option<&StoredWal>> {
        Ok(self.dir_of(name).await?.iter().find(|s| s.name == name))
    }
}

/// A WAL file as stored in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWal {
    pub key: String,
    pub name: WalFileName,
    pub checksum: ContentChecksum,
    pub compression: Compression,
    pub stored_size: u64,
    /// When the object was stored, as the storage reports it.
    pub stored_at: chrono::DateTime<chrono::Utc>,
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
        Ok(objects.into_iter().filter_map(stored_wal).collect())
    }

    /// Whether the WAL object `key` (as an earlier push recorded it) is stored.
    pub async fn wal_object_present(&self, key: &str) -> Result<bool> {
        Ok(self.storage.head(key).await?.is_some())
    }

    /// Every stored WAL object of a binding (all timelines, history files
    /// included), in name order.
    pub async fn list_wal(&self, binding: &str) -> Result<Vec<StoredWal>> {
        Ok(self.list_wal_and_claims(binding).await?.0)
    }

    /// Every stored WAL object and every claim of a binding, in name order,
    /// from one listing.
    pub async fn list_wal_and_claims(
        &self,
        binding: &str,
    ) -> Result<(Vec<StoredWal>, Vec<ListedClaim>)> {
        let root = layout::wal_root(&self.cluster, binding);
        let objects = match self.storage.list_all(&root).await {
            Ok(o) => o,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e),
        };
        let mut claims: Vec<ListedClaim> = objects.iter().filter_map(listed_claim).collect();
        claims.sort_by_key(|c| c.name);
        let mut stored: Vec<StoredWal> = objects.into_iter().filter_map(stored_wal).collect();
        stored.sort_by(|a, b| a.name.cmp(&b.name).then(a.key.cmp(&b.key)));
        Ok((stored, claims))
    }

    /// The parsed timeline history files among `stored` (as `list_wal` gives),
    /// by timeline: what `continuity::gaps` follows. Each is read back and
    /// verified.
    pub async fn timeline_histories(
        &self,
        stored: &[StoredWal],
    ) -> Result<std::collections::BTreeMap<u32, Vec<crate::pg::history::TimelineSwitch>>> {
        let mut histories = std::collections::BTreeMap::new();
        for s in stored {
            if let WalFileName::History(tli) = s.name {
                histories.insert(tli, self.read_history(s).await?);
            }
        }
        Ok(histories)
    }

    /// Reads back, verifies and parses a stored timeline history file.
    pub async fn read_history(
        &self,
        stored: &StoredWal,
    ) -> Result<Vec<crate::pg::history::TimelineSwitch>> {
        // The segment size bounds segments only; history files have their own bound.
        let text = self.fetch_wal(stored, 0).await?;
        crate::pg::history::parse_timeline_history(&String::from_utf8_lossy(&text))
            .map_err(|e| e.context(format!("timeline history {}", stored.key)))
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

    /// Stores a packed WAL file unless an identical copy exists; a
    /// different copy under the same name is a `Conflict` and leaves the
    /// stored one untouched. Returns only after the object is stored and its
    /// size read back.
    ///
    /// The listing (`existing`) decides first, so archives written before
    /// claims existed keep working. Otherwise the name is claimed for this
    /// content (`claim_wal`) before the object is stored: of two different
    /// contents pushed at once, only the first to claim is ever stored. A
    /// claim for this same content with no object (a push interrupted
    /// between the two) is completed.
    pub async fn archive_wal(
        &self,
        binding: &str,
        name: WalFileName,
        packed: Packed,
        existing: &[StoredWal],
    ) -> Result<Archived> {
        let checksum = packed.checksum;
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
                    "{name} is already archived in {} with different content (stored checksum {}, this file {checksum}); the stored copy was left unchanged",
                    self.describe(),
                    other.checksum
                ),
            )
            .with_hint("another cluster may be archiving into this prefix, or the local file is damaged; compare it with `pgproof wal-fetch` before doing anything else"));
        }
        let Some((compression, bytes)) = packed.compressed else {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{name} vanished from {} while it was being archived",
                    self.describe()
                ),
            )
            .with_hint("something else is deleting from the archive; PostgreSQL will retry"));
        };
        // A claim an older pgproof left (interrupted before its object was
        // stored) holds a SHA-256: this content is hashed that way to compare.
        let same_content = |claimed: &ContentChecksum| -> Result<bool> {
            if claimed.same_kind(&checksum) {
                return Ok(*claimed == checksum);
            }
            let mut hasher = ContentHasher::like(claimed);
            let mut decoder = compression.decoder(&bytes[..]).map_err(|e| {
                Error::new(ErrorKind::LocalIo, "decompressing what was packed").with_source(e)
            })?;
            std::io::copy(&mut decoder, &mut hasher).map_err(|e| {
                Error::new(ErrorKind::LocalIo, "decompressing what was packed").with_source(e)
            })?;
            Ok(hasher.finish() == *claimed)
        };
        let named_by = match self
            .claim_wal(binding, name, checksum, &same_content)
            .await?
        {
            Claimed::New => checksum,
            Claimed::Existing { checksum: claimed } => {
                tracing::debug!("{name} was already claimed for this content; storing it");
                claimed
            }
        };
        let key = layout::wal_object(&self.cluster, binding, name, named_by, compression);
        let packed_len = bytes.len() as u64;
        match self.storage.put_new(&key, Bytes::from(bytes)).await {
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
    /// whose SHA-256 matches the key is returned. `segment_size` (the
    /// binding's) bounds what a segment may decompress to, so that a
    /// damaged or hostile object cannot exhaust memory.
    pub async fn fetch_wal(&self, stored: &StoredWal, segment_size: u32) -> Result<Vec<u8>> {
        let limit = content_limit(stored.name, segment_size);
        // Compressed output is never much larger than its input: a bigger
        // object cannot hold a valid file and is not downloaded.
        let stored_limit = limit + limit / 16 + (64 << 10);
        if stored.stored_size > stored_limit {
            return Err(Error::corrupt(format!(
                "stored object {} is corrupt: it is {} bytes, more than a {} of at most {limit} bytes can take",
                stored.key,
                stored.stored_size,
                kind_of(stored.name),
            ))
            .with_hint("the copy in the repository is damaged; it was not used"));
        }
        let packed = self.storage.get(&stored.key).await?;
        let stored = stored.clone();
        tokio::task::spawn_blocking(move || decode_verified(&stored, &packed, limit))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::LocalIo, "decompression task failed").with_source(e)
            })?
    }
}

pub(super) fn stored_wal(o: crate::storage::ObjectInfo) -> Option<StoredWal> {
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
        stored_at: o.last_modified,
    })
}

/// History and backup history files are a few lines of text; a timeline
/// history grows by one line per timeline switch.
const TEXT_FILE_LIMIT: u64 = 8 << 20;

/// The most a stored file of this name may decompress to.
fn content_limit(name: WalFileName, segment_size: u32) -> u64 {
    if name.has_page_headers() {
        u64::from(segment_size)
    } else {
        TEXT_FILE_LIMIT
    }
}

fn kind_of(name: WalFileName) -> &'static str {
    if name.has_page_headers() {
        "WAL segment"
    } else {
        "history file"
    }
}

fn decode_verified(stored: &StoredWal, packed: &[u8], limit: u64) -> Result<Vec<u8>> {
    let corrupt = |why: String| {
        Error::corrupt(format!("stored object {} is corrupt: {why}", stored.key))
            .with_hint("the copy in the repository is damaged; it was not used")
    };
    let decoder = stored
        .compression
        .decoder(packed)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut out = Vec::with_capacity(limit.min(16 << 20) as usize);
    // One byte past the limit tells "exactly at the limit" from "beyond it".
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("it does not decompress ({e})")))?;
    if out.len() as u64 > limit {
        return Err(corrupt(format!(
            "it decompresses to more than {limit} bytes, more than a {} can hold",
            kind_of(stored.name)
        )));
    }
    let actual = stored.checksum.recompute(&out);
    if actual != stored.checksum {
        return Err(corrupt(format!(
            "its content has checksum {actual}, expected {}",
            stored.checksum
        )));
    }
    Ok(out)
}

/// A WAL file's checksum and size, and its compressed bytes when they were
/// asked for (not when an object of that name is already stored: then only
/// the checksum decides).
pub struct Packed {
    pub checksum: ContentChecksum,
    pub size: u64,
    pub compressed: Option<(Compression, Vec<u8>)>,
}

/// Reads a file in chunks of 1 MiB: the calling thread hashes each chunk
/// with `hasher` and hands it to `inspect` (which may refuse the file); two
/// compression threads make each chunk a frame of its own, concatenated in
/// order (zstd and lz4 readers decode concatenated frames as one stream),
/// so that hashing and compressing a segment use both cores. Memory stays
/// at a few chunks plus the compressed output.
pub fn pack(
    reader: &mut dyn Read,
    compression: Option<Compression>,
    mut hasher: ContentHasher,
    inspect: &mut dyn FnMut(u64, &[u8]) -> Result<()>,
) -> Result<Packed> {
    let io = |e: std::io::Error| Error::new(ErrorKind::LocalIo, "reading the file").with_source(e);
    let compressing =
        |e: std::io::Error| Error::new(ErrorKind::LocalIo, "compressing").with_source(e);
    let mut offset = 0u64;
    let mut frames = match compression {
        Some(c) => Some(FrameWriter::new(CompressPool::new(c, 2)?, Vec::new())),
        None => None,
    };
    let mut plain = Vec::new();
    loop {
        let room = match frames.as_mut() {
            Some(frames) => frames.spare().map_err(compressing)?,
            None => {
                plain.resize(FRAME_INPUT, 0);
                &mut plain[..]
            }
        };
        let len = read_full(reader, room).map_err(io)?;
        if len == 0 {
            break;
        }
        hasher.update(&room[..len]);
        inspect(offset, &room[..len])?;
        offset += len as u64;
        if let Some(frames) = frames.as_mut() {
            frames.commit(len).map_err(compressing)?;
        }
    }
    let compressed = match (compression, frames) {
        (Some(c), Some(frames)) => Some((c, frames.finish().map_err(compressing)?)),
        _ => None,
    };
    Ok(Packed {
        checksum: hasher.finish(),
        size: offset,
        compressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_hashes_inspects_and_compresses() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| (i % 97) as u8).collect();
        let mut seen = Vec::new();
        let packed = pack(
            &mut &data[..],
            Some(Compression::Zstd { level: 1 }),
            ContentHasher::new(),
            &mut |offset, chunk| {
                seen.push((offset, chunk.len()));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(packed.checksum, ContentChecksum::of(&data));
        assert_eq!(packed.size, data.len() as u64);
        assert_eq!(seen.iter().map(|(_, l)| l).sum::<usize>(), data.len());
        assert_eq!(seen[1].0, FRAME_INPUT as u64);
        let (c, bytes) = packed.compressed.unwrap();
        let mut out = Vec::new();
        c.decoder(&bytes[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);

        let unpacked = pack(&mut &data[..], None, ContentHasher::new(), &mut |_, _| {
            Ok(())
        })
        .unwrap();
        assert_eq!(unpacked.checksum, packed.checksum);
        // A name an older pgproof stored is compared by its own kind.
        let legacy = ContentHasher::like(&crate::codec::Checksum::of(b"").into());
        let sha = pack(&mut &data[..], None, legacy, &mut |_, _| Ok(())).unwrap();
        assert_eq!(sha.checksum, crate::codec::Checksum::of(&data).into());
        assert!(unpacked.compressed.is_none());
    }

    #[test]
    fn decompression_stops_at_the_bound() {
        let name = WalFileName::parse("000000010000000000000003").unwrap();
        let stored = |content: &[u8], compression| StoredWal {
            key: "k".into(),
            name,
            checksum: ContentChecksum::of(content),
            compression,
            stored_size: 0,
            stored_at: chrono::Utc::now(),
        };
        let segment = vec![0u8; 1 << 20];
        let bomb = vec![0u8; 64 << 20];
        for c in [Compression::Zstd { level: 1 }, Compression::Lz4] {
            let packed = c.compress(&segment).unwrap();
            let out = decode_verified(&stored(&segment, c), &packed, 1 << 20).unwrap();
            assert_eq!(out.len(), 1 << 20, "{c}: exactly the bound is allowed");
            let packed = c.compress(&bomb).unwrap();
            let err = decode_verified(&stored(&bomb, c), &packed, 1 << 20).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
            assert!(
                err.to_string()
                    .contains("decompresses to more than 1048576 bytes"),
                "{err}"
            );
        }
        let history = WalFileName::parse("00000002.history").unwrap();
        assert_eq!(content_limit(history, 1 << 30), TEXT_FILE_LIMIT);
        assert_eq!(content_limit(name, 1 << 24), 1 << 24);
    }

    #[test]
    fn a_refusal_stops_packing() {
        let data = vec![7u8; 5 * FRAME_INPUT];
        let err = pack(
            &mut &data[..],
            Some(Compression::Lz4),
            ContentHasher::new(),
            &mut |offset, _| {
                if offset >= 2 * FRAME_INPUT as u64 {
                    Err(Error::corrupt("bad page"))
                } else {
                    Ok(())
                }
            },
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("bad page"));
    }
}
