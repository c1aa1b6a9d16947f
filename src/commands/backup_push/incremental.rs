//! What an incremental backup stores of a file, against its parent. The
//! evidence is the content alone: a block is stored when its XXH3-64
//! differs from the parent's hash of that block (or the parent has no such
//! block); any other file is stored whole when its size or checksum
//! differs. Page LSNs, mtimes and WAL decide nothing: several operations
//! change a page without advancing its LSN (docs/FORMAT.md says which), and
//! whatever changed, the bytes differ. The file is read once; its checksum
//! is of the bytes read, which the composed file must match on restore.

use super::parallel::{Cancel, cancelled_io};
use super::parts::{How, PageChecker};
use super::tar_entry;
use super::throttle::Throttle;
use super::walk::SourceFile;
use crate::codec::frames::FrameWriter;
use crate::codec::{ContentChecksum, ContentHasher};
use crate::error::Result;
use crate::repo::Repository;
use crate::repo::block_entry::{self, CHUNK_BLOCKS};
use crate::repo::block_hashes::{HashObjectWriter, HashObjects, block_hash};
use crate::repo::manifest::{BadPage, FileEntry, LayerKind, Manifest, ParentRef};
use crate::repo::path_bytes::PathBytes;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

/// Bytes read at once: small enough to stay in the CPU's cache until
/// hashed (128 KiB measured fastest, 8 MiB 1.5–2x slower).
const READ_SIZE: usize = 128 << 10;

/// The parent of an incremental, as its parts' writers consult it.
pub struct Base {
    pub name: String,
    /// What the incremental's manifest pins.
    pub parent: ParentRef,
    files: HashMap<(Option<u32>, PathBytes), FileEntry>,
    pub bad_pages: Vec<BadPage>,
    /// The chain's seed of the block hashes.
    pub seed: u64,
    hashes: Arc<HashObjects>,
    block_size: u32,
    runtime: tokio::runtime::Handle,
}

impl Base {
    /// `chain`: the parent's chain, oldest first, ending with the parent.
    pub fn new(repo: &Repository, chain: Vec<Manifest>) -> Base {
        let parent = chain.last().expect("a chain ends with the parent").clone();
        let files = parent
            .files
            .iter()
            .map(|f| ((f.tablespace, f.path.clone()), f.clone()))
            .collect();
        Base {
            name: parent.name.clone(),
            parent: ParentRef {
                name: parent.name.clone(),
                manifest_sha256: parent
                    .document_checksum
                    .expect("a manifest read from storage has its checksum"),
                stop_lsn: parent.stop_lsn,
            },
            files,
            bad_pages: parent.bad_pages.clone(),
            seed: parent
                .block_hash_seed
                .expect("a parent is chosen only with block hashes"),
            hashes: HashObjects::new(repo.clone(), &parent.binding, chain),
            block_size: parent.block_size,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The parent's entry for the same file.
    pub fn file(&self, f: &SourceFile) -> Option<&FileEntry> {
        self.files.get(&(f.tablespace, f.path.clone()))
    }

    /// The parent's bad pages of `f` that this backup still holds: all of
    /// them when the file is the same, those not stored again when its
    /// `changed` blocks are; none past its new end.
    pub fn bad_pages_of(
        &self,
        f: &SourceFile,
        changed: Option<&Vec<u32>>,
        size: u64,
    ) -> Vec<BadPage> {
        let blocks = size / u64::from(self.block_size);
        self.bad_pages
            .iter()
            .filter(|b| b.path == f.path && b.block < blocks)
            .filter(|b| changed.is_none_or(|c| c.binary_search(&(b.block as u32)).is_err()))
            .cloned()
            .collect()
    }

    /// The parent's hash of each of its blocks of `file`. Called from a
    /// part's blocking thread.
    pub fn vector(&self, file: &FileEntry) -> Result<Vec<Option<u64>>> {
        let blocks = (file.size / u64::from(self.block_size)) as usize;
        self.runtime.block_on(self.hashes.vector(file, blocks))
    }
}

/// A relation file compared block by block with its parent's hashes.
pub struct ChangedBlocks<'a> {
    pub file: &'a std::fs::File,
    pub source: &'a SourceFile,
    pub blocks: u64,
    pub block_size: u32,
    pub seed: u64,
    pub parent: Vec<Option<u64>>,
    pub throttle: Throttle<'a>,
}

/// What comparing found and stored.
pub struct Found {
    pub checksum: ContentChecksum,
    pub checker: Option<PageChecker>,
    size: u64,
    layer: ContentHasher,
    entries: u64,
    numbers: Vec<u32>,
    hashes: Vec<u64>,
}

impl Found {
    /// The file's checksum, how it was stored (its changed blocks' hashes
    /// added to the part's hash object), and its page checks.
    pub fn finish(
        self,
        hashes: &mut HashObjectWriter,
    ) -> (ContentChecksum, How, Option<PageChecker>) {
        let how = if self.numbers.is_empty() {
            How::Same
        } else {
            How::Blocks {
                size: self.size,
                checksum: self.layer.finish(),
                entries: self.entries,
                offset: hashes.delta(&self.numbers, &self.hashes),
                changed: self.numbers,
            }
        };
        (self.checksum, how, self.checker)
    }
}

/// A file's block hashes as read now, and the blocks whose hash is not
/// the parent's.
pub struct Hashed {
    all: Vec<u64>,
    pub changed: Vec<u32>,
}

/// Whether a file is better stored as its changed blocks than whole: while
/// a restore writes it at most 1.25 times. Past that (more than a quarter
/// of its blocks changed since its whole copy, counting the blocks layers
/// of the chain), it is stored whole, and a restore of this backup or a
/// later one writes it once from here. A quarter, not PostgreSQL 17's 90%:
/// a restore writes the whole copy, then each layer over it, and with 1%
/// of pgbench's rows updated at random (46% of the table's blocks) a
/// chain's third incremental restored 1.86 times slower than its full at
/// a half; whole or by blocks, 46% of a table stores about the same bytes.
pub fn worth_blocks(parent: &FileEntry, changed: usize, blocks: u64) -> bool {
    if changed == 0 {
        // Referred to: nothing more to write on restore.
        return true;
    }
    let layered: u64 = parent
        .layers
        .iter()
        .filter(|l| l.kind == LayerKind::Blocks)
        .map(|l| l.blocks)
        .sum();
    (layered + changed as u64) * 4 <= blocks
}

impl ChangedBlocks<'_> {
    /// First `hash` every block (all cores sharing the file); then, when
    /// the file is worth storing by blocks, `store` reads the changed ones
    /// again and stores them, up to `CHUNK_BLOCKS` to an
    /// entry. A changed block is hashed again as it is stored, so that its
    /// recorded hash is of the bytes stored; a block unchanged when hashed
    /// and written since keeps the parent's copy, which is what this
    /// backup read, after its start: WAL replay repairs either, as for a
    /// page torn in any backup. Only stored blocks are page-checked: the
    /// others are the parent's, checked when it read them.
    pub fn hash(
        &self,
        cancel: &Cancel,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> std::io::Result<Hashed> {
        let bs = self.block_size as usize;
        let all = hash_blocks(
            self.file,
            self.blocks,
            bs,
            self.seed,
            (cancel, self.throttle),
            on_progress,
        )?;
        let changed = all
            .iter()
            .enumerate()
            .filter(|(block, hash)| self.parent.get(*block).copied().flatten() != Some(**hash))
            .map(|(block, _)| block as u32)
            .collect();
        Ok(Hashed { all, changed })
    }

    /// Stores the changed blocks `hash` found.
    pub fn store<W: Write>(
        &self,
        hashed: Hashed,
        tar: &mut tar::Builder<FrameWriter<W>>,
        chunk: &mut Vec<u8>,
        mut checker: Option<PageChecker>,
        cancel: &Cancel,
    ) -> std::io::Result<Found> {
        let bs = self.block_size as usize;
        let Hashed { mut all, changed } = hashed;
        let mut found = Found {
            checksum: ContentChecksum::of(b""),
            checker: None,
            size: 0,
            layer: ContentHasher::new(),
            entries: 0,
            numbers: Vec::with_capacity(changed.len()),
            hashes: Vec::with_capacity(changed.len()),
        };
        for numbers in changed.chunks(CHUNK_BLOCKS) {
            if cancel.is_set() {
                return Err(cancelled_io());
            }
            chunk.resize(numbers.len() * bs, 0);
            read_blocks(self.file, numbers, bs, chunk, self.throttle)?;
            for (&n, page) in numbers.iter().zip(chunk.chunks_exact(bs)) {
                let hash = block_hash(page, self.seed);
                all[n as usize] = hash;
                found.numbers.push(n);
                found.hashes.push(hash);
                if let Some(c) = checker.as_mut() {
                    c.check(page, u64::from(n));
                }
            }
            let head = block_entry::header(self.block_size, numbers);
            let len = (head.len() + chunk.len()) as u64;
            let mut header = tar::Header::new_gnu();
            header.set_size(len);
            header.set_mode(self.source.mode);
            header.set_mtime(self.source.mtime.max(0) as u64);
            header.set_entry_type(block_entry::ENTRY_TYPE);
            let name = block_entry::entry_name(&self.source.path);
            tar_entry::append_header(tar, &mut header, &name)?;
            let out = tar.get_mut();
            out.write_all(&head)?;
            out.write_all(chunk)?;
            out.write_all(&tar_entry::ZEROS[..tar_entry::padding(len)])?;
            found.layer.update(&head);
            found.layer.update(chunk);
            found.size += len;
            found.entries += 1;
        }
        found.checksum = ContentChecksum::of_block_hashes(self.block_size, self.seed, &all);
        found.checker = checker;
        Ok(found)
    }
}

/// Reads the blocks `numbers` (ascending) into `buf`, one read per run of
/// consecutive blocks.
fn read_blocks(
    file: &std::fs::File,
    numbers: &[u32],
    bs: usize,
    buf: &mut [u8],
    throttle: Throttle<'_>,
) -> std::io::Result<()> {
    let mut i = 0;
    while i < numbers.len() {
        let mut run = 1;
        while i + run < numbers.len() && numbers[i + run] == numbers[i] + run as u32 {
            run += 1;
        }
        let offset = u64::from(numbers[i]) * bs as u64;
        read_at_or_zeros(file, &mut buf[i * bs..(i + run) * bs], offset, throttle)?;
        i += run;
    }
    Ok(())
}

/// The hash of each of the file's first `blocks` blocks. Read a little at
/// a time (`READ_SIZE`), each piece hashed as soon as it is read, while
/// the bytes the kernel just copied are still in the CPU's cache (reading
/// 8 MiB first made the hashing twice as slow); the pieces are shared
/// among the cores, since reading and hashing is all an incremental does
/// with most of a large file, and one 1 GiB segment would otherwise hold
/// one core.
fn hash_blocks(
    file: &std::fs::File,
    blocks: u64,
    bs: usize,
    seed: u64,
    (cancel, throttle): (&Cancel, Throttle<'_>),
    on_progress: &(dyn Fn(u64) + Sync),
) -> std::io::Result<Vec<u64>> {
    let mut hashes = vec![0u64; blocks as usize];
    let per_read = (READ_SIZE / bs).max(1);
    let work = |share: Vec<(usize, &mut [u64])>| -> std::io::Result<()> {
        let mut buf = vec![0u8; per_read * bs];
        for (first, out) in share {
            if cancel.is_set() {
                return Err(cancelled_io());
            }
            let piece = &mut buf[..out.len() * bs];
            read_at_or_zeros(file, piece, first as u64 * bs as u64, throttle)?;
            for (slot, page) in out.iter_mut().zip(piece.chunks_exact(bs)) {
                *slot = block_hash(page, seed);
            }
            on_progress(piece.len() as u64);
        }
        Ok(())
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let threads = if hashes.len() < 4 * per_read {
        1
    } else {
        threads
    };
    let mut shares: Vec<Vec<(usize, &mut [u64])>> = (0..threads).map(|_| Vec::new()).collect();
    for (k, out) in hashes.chunks_mut(per_read).enumerate() {
        shares[k % threads].push((k * per_read, out));
    }
    if threads == 1 {
        work(shares.pop().expect("one share"))?;
        return Ok(hashes);
    }
    std::thread::scope(|scope| {
        let running: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(|| work(share)))
            .collect();
        running.into_iter().try_for_each(|t| {
            t.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a hashing thread failed")))
        })
    })?;
    Ok(hashes)
}

/// Fills `buf` from `offset`; past the end of a file that shrank while it
/// was read, zeros (WAL replay from the backup's start accounts for it).
fn read_at_or_zeros(
    file: &std::fs::File,
    buf: &mut [u8],
    offset: u64,
    throttle: Throttle<'_>,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match throttle.read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(())
}

/// Whether the file's first `len` bytes have `checksum` (read at offsets,
/// leaving the file's position for a whole copy). A read error says no:
/// the copy that follows reports it.
pub fn unchanged(
    file: &std::fs::File,
    len: u64,
    checksum: &ContentChecksum,
    throttle: Throttle<'_>,
) -> bool {
    let mut hasher = ContentHasher::like(checksum);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        match throttle.read_at(file, &mut buf[..want], at) {
            Ok(0) => return false,
            Ok(n) => {
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    hasher.finish() == *checksum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentChecksum;
    use crate::repo::manifest::Layer;

    fn entry(layered: &[u64]) -> FileEntry {
        let layer = |kind, blocks| Layer {
            backup: "b".into(),
            part: 0,
            kind,
            size: 1,
            checksum: ContentChecksum::of(b""),
            entries: 1,
            blocks,
        };
        let mut layers: Vec<Layer> = layered
            .iter()
            .map(|&n| layer(LayerKind::Blocks, n))
            .collect();
        layers.push(layer(LayerKind::Whole, 0));
        FileEntry {
            path: PathBytes::from("base/5/16384"),
            tablespace: None,
            size: 100 * 8192,
            checksum: ContentChecksum::of(b""),
            mode: 0o600,
            mtime: 0,
            part: 0,
            layers,
            hashes: Vec::new(),
        }
    }

    #[test]
    fn a_file_goes_whole_once_a_restore_would_write_it_more_than_a_quarter_again() {
        assert!(worth_blocks(&entry(&[]), 25, 100));
        assert!(!worth_blocks(&entry(&[]), 26, 100));
        // 46% changed, as random updates of 1% of pgbench's rows do.
        assert!(!worth_blocks(&entry(&[]), 46, 100));
        // 2% a day, as the clustered benchmark: blocks for twelve days.
        assert!(worth_blocks(&entry(&[2; 11]), 2, 100));
        assert!(!worth_blocks(&entry(&[2; 12]), 2, 100));
        // Nothing changed: referred to, whatever the layers.
        assert!(worth_blocks(&entry(&[40, 40]), 0, 100));
    }
}
