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
use super::walk::SourceFile;
use crate::codec::frames::FrameWriter;
use crate::codec::{ContentChecksum, ContentHasher};
use crate::error::Result;
use crate::repo::Repository;
use crate::repo::block_entry::{self, CHUNK_BLOCKS};
use crate::repo::block_hashes::{HashObjectWriter, HashObjects, block_hash};
use crate::repo::manifest::{BadPage, FileEntry, Manifest, ParentRef};
use crate::repo::path_bytes::PathBytes;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The parent of an incremental, as its parts' writers consult it.
pub struct Base {
    pub name: String,
    /// What the incremental's manifest pins.
    pub parent: ParentRef,
    files: HashMap<(Option<u32>, PathBytes), FileEntry>,
    pub bad_pages: Vec<BadPage>,
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
    pub parent: Vec<Option<u64>>,
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

impl ChangedBlocks<'_> {
    /// Reads the file `CHUNK_BLOCKS` at a time; each chunk's changed blocks
    /// (and only they are page-checked: the others are the parent's,
    /// checked when it read them) go into one blocks entry.
    pub fn store<W: Write>(
        &self,
        tar: &mut tar::Builder<FrameWriter<W>>,
        chunk: &mut Vec<u8>,
        mut checker: Option<PageChecker>,
        cancel: &Cancel,
        on_progress: &(dyn Fn(u64) + Sync),
    ) -> std::io::Result<Found> {
        let bs = self.block_size as usize;
        chunk.resize(CHUNK_BLOCKS * bs, 0);
        let mut whole = ContentHasher::new();
        let mut found = Found {
            checksum: ContentChecksum::of(b""),
            checker: None,
            size: 0,
            layer: ContentHasher::new(),
            entries: 0,
            numbers: Vec::new(),
            hashes: Vec::new(),
        };
        let mut start = 0u64;
        while start < self.blocks {
            if cancel.is_set() {
                return Err(cancelled_io());
            }
            let n = (CHUNK_BLOCKS as u64).min(self.blocks - start) as usize;
            let buf = &mut chunk[..n * bs];
            read_at_or_zeros(self.file, buf, start * bs as u64)?;
            let mut changed = Vec::new();
            for (i, page) in buf.chunks_exact(bs).enumerate() {
                whole.update(page);
                let hash = block_hash(page);
                let block = start + i as u64;
                if self.parent.get(block as usize).copied().flatten() != Some(hash) {
                    changed.push(i);
                    found.numbers.push(block as u32);
                    found.hashes.push(hash);
                    if let Some(c) = checker.as_mut() {
                        c.check(page, block);
                    }
                }
            }
            if !changed.is_empty() {
                let numbers = &found.numbers[found.numbers.len() - changed.len()..];
                let head = block_entry::header(self.block_size, numbers);
                let len = (head.len() + changed.len() * bs) as u64;
                let mut header = tar::Header::new_gnu();
                header.set_size(len);
                header.set_mode(self.source.mode);
                header.set_mtime(self.source.mtime.max(0) as u64);
                header.set_entry_type(block_entry::ENTRY_TYPE);
                let name = block_entry::entry_name(&self.source.path);
                tar_entry::append_header(tar, &mut header, &name)?;
                let out = tar.get_mut();
                out.write_all(&head)?;
                found.layer.update(&head);
                for i in changed {
                    let page = &buf[i * bs..(i + 1) * bs];
                    out.write_all(page)?;
                    found.layer.update(page);
                }
                out.write_all(&tar_entry::ZEROS[..tar_entry::padding(len)])?;
                found.size += len;
                found.entries += 1;
            }
            on_progress((n * bs) as u64);
            start += n as u64;
        }
        found.checksum = whole.finish();
        found.checker = checker;
        Ok(found)
    }
}

/// Fills `buf` from `offset`; past the end of a file that shrank while it
/// was read, zeros (WAL replay from the backup's start accounts for it).
fn read_at_or_zeros(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
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
pub fn unchanged(file: &std::fs::File, len: u64, checksum: &ContentChecksum) -> bool {
    let mut hasher = ContentHasher::like(checksum);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let want = buf.len().min((len - at) as usize);
        match file.read_at(&mut buf[..want], at) {
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
