//! Writing files into parts: tar streams, compressed, streamed to storage.
//! A file's size is taken when it is opened; if it shrinks while read the
//! rest is zeros, if it grows the rest is left out: WAL replay from the
//! backup's start repairs both, as for PostgreSQL's own base backup.

use super::incremental::{self, Base};
use super::parallel::{Cancel, cancelled_io};
use super::tar_entry;
use super::throttle::Throttle;
use super::walk::SourceFile;
use crate::codec::checksum::Blocks;
use crate::codec::frames::{CompressPool, FrameWriter};
use crate::codec::{Checksum, ContentChecksum, ContentHasher, Hasher};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::datadir;
use crate::pg::lsn::Lsn;
use crate::pg::page;
use crate::rate::Limiter;
use crate::repo::block_hashes::{HashObjectWriter, block_hash};
use crate::repo::path_bytes::PathBytes;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// The segment number of a relation data file whose pages carry checksums.
fn relation_segment(f: &SourceFile) -> Option<u32> {
    // Relation files have ASCII names.
    let path = f.path.to_str()?;
    let name = path.rsplit('/').next()?;
    let relation = datadir::parse_relation_file(name)?;
    let eligible = match f.tablespace {
        None => datadir::is_checksummed_relation(path),
        // PG_<major>_<catversion>/<database>/<file>
        Some(_) => path.split('/').count() == 3,
    };
    eligible.then_some(relation.segment)
}

fn still_bad(file: &std::fs::File, block: u64, first_block: u64, v: PageVerification) -> bool {
    let size = v.block_size as usize;
    let mut page_buf = vec![0u8; size];
    if file
        .read_exact_at(&mut page_buf, block * size as u64)
        .is_err()
    {
        // Truncated since: WAL replay accounts for it.
        return false;
    }
    matches!(
        page::check(&page_buf, (first_block + block) as u32, v.backup_start),
        page::PageCheck::Invalid { .. }
    )
}

/// Uncompressed bytes per part: small enough for parallel parts, large
/// enough that per-object overhead does not matter.
pub const PART_TARGET: u64 = 128 << 20;

#[derive(Debug, Clone)]
pub struct PartPlan {
    pub name: String,
    pub tablespace: Option<u32>,
    /// Indices into the walked files.
    pub files: Vec<usize>,
}

/// Groups files into parts in path order, one tablespace per part; part
/// names end in the compression's extension (`part-00001.tar.zst`).
pub fn plan(files: &[SourceFile], extension: &str) -> Vec<PartPlan> {
    let mut parts: Vec<PartPlan> = Vec::new();
    let mut current_size = 0u64;
    for (i, f) in files.iter().enumerate() {
        let start_new = match parts.last() {
            None => true,
            Some(p) => p.tablespace != f.tablespace || current_size >= PART_TARGET,
        };
        if start_new {
            let n = parts.len() + 1;
            let name = match f.tablespace {
                None => format!("part-{n:05}.tar.{extension}"),
                Some(oid) => format!("part-{n:05}-tablespace-{oid}.tar.{extension}"),
            };
            parts.push(PartPlan {
                name,
                tablespace: f.tablespace,
                files: Vec::new(),
            });
            current_size = 0;
        }
        parts.last_mut().expect("pushed above").files.push(i);
        current_size += f.size;
    }
    parts
}

/// The data directory's pg_control.
const CONTROL_FILE: &str = "global/pg_control";

/// As `plan`, with pg_control moved to the end of `files` and alone in the
/// last part, for a copy that must read it after every other file (a
/// standby's: see `pg::standby`). The plans, and whether the last one is
/// that part.
pub fn plan_control_last(files: &mut Vec<SourceFile>, extension: &str) -> (Vec<PartPlan>, bool) {
    let Some(at) = files
        .iter()
        .position(|f| f.tablespace.is_none() && f.path.as_bytes() == CONTROL_FILE.as_bytes())
    else {
        return (plan(files, extension), false);
    };
    let control = files.remove(at);
    files.push(control);
    let last = files.len() - 1;
    let mut plans = plan(&files[..last], extension);
    plans.push(PartPlan {
        name: format!("part-{:05}.tar.{extension}", plans.len() + 1),
        tablespace: None,
        files: vec![last],
    });
    (plans, true)
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub index: usize,
    pub size: u64,
    pub checksum: ContentChecksum,
    pub how: How,
}

/// How a file went into the part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// Its content, in an entry of its own; its block hashes, if kept, at
    /// (offset, count) in the part's hash object.
    Whole { hashes: Option<(u64, u64)> },
    /// Its changed blocks, in `entries` entries holding `blocks` blocks:
    /// `size` bytes of content with checksum `checksum`; their hashes at
    /// `offset` in the part's hash object. `changed` lists them.
    Blocks {
        size: u64,
        checksum: ContentChecksum,
        entries: u64,
        offset: u64,
        changed: Vec<u32>,
    },
    /// Nothing: the parent holds the same content.
    Same,
}

/// A page that failed its data checksum, twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPage {
    pub index: usize,
    /// Block within the file.
    pub block: u64,
}

#[derive(Debug)]
pub struct PartResult {
    pub files: Vec<StoredFile>,
    pub bad_pages: Vec<BadPage>,
    pub vanished: Vec<PathBytes>,
    pub size: u64,
    pub stored_size: u64,
    pub stored_checksum: Checksum,
    /// The block hashes of the part's files, for the part's hash object.
    pub hashes: HashObjectWriter,
}

/// Counts and hashes what reaches storage.
struct Counting<W: Write> {
    inner: W,
    count: u64,
    hasher: Hasher,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Data checksum verification of a relation file's pages.
pub struct PageChecker {
    backup_start: Lsn,
    /// Block number of the file's first page (segment number × blocks per segment).
    first_block: u64,
    bad: Vec<u64>,
}

impl PageChecker {
    pub fn new(backup_start: Lsn, segment: u32) -> PageChecker {
        PageChecker {
            backup_start,
            first_block: u64::from(segment) * page::RELSEG_BLOCKS,
            bad: Vec::new(),
        }
    }

    /// Checks block `block` of the file.
    pub fn check(&mut self, page: &[u8], block: u64) {
        let number = (self.first_block + block) as u32;
        if let page::PageCheck::Invalid { .. } = page::check(page, number, self.backup_start) {
            self.bad.push(block);
        }
    }

    /// Blocks that failed, read again: a page written while it was read
    /// looks torn.
    pub fn confirmed(self, file: &std::fs::File, block_size: u32) -> Vec<u64> {
        let v = PageVerification {
            block_size,
            backup_start: self.backup_start,
        };
        self.bad
            .into_iter()
            .filter(|&b| still_bad(file, b, self.first_block, v))
            .collect()
    }
}

/// The pages of a file as it streams past, whole however the reads fall:
/// each is checked (clusters with data checksums) and hashed (relation
/// files an incremental may compare).
pub struct PageWork {
    block_size: usize,
    pending: Blocks,
    next: u64,
    checker: Option<PageChecker>,
    hashes: Option<Vec<u64>>,
    seed: u64,
}

impl PageWork {
    /// Hashes the pages with `seed` when there is one.
    pub fn new(block_size: u32, checker: Option<PageChecker>, seed: Option<u64>) -> PageWork {
        PageWork {
            block_size: block_size as usize,
            pending: Blocks::default(),
            next: 0,
            checker,
            hashes: seed.map(|_| Vec::new()),
            seed: seed.unwrap_or_default(),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.feed(self.block_size, data, |page| self.page(page));
        self.pending = pending;
    }

    fn page(&mut self, page: &[u8]) {
        if let Some(checker) = &mut self.checker {
            checker.check(page, self.next);
        }
        if let Some(hashes) = &mut self.hashes {
            hashes.push(block_hash(page, self.seed));
        }
        self.next += 1;
    }
}

/// Copies exactly `len` bytes of a file's content into the part, zeros
/// past its end, read straight into the compressor's memory; hashes them
/// and, for relation files of a cluster with data checksums, checks every
/// page. Then the tar padding.
fn copy_content<R: Read, W: Write>(
    mut file: R,
    len: u64,
    out: &mut FrameWriter<W>,
    mut hasher: Option<&mut ContentHasher>,
    mut pages: Option<&mut PageWork>,
    cancel: &Cancel,
) -> std::io::Result<()> {
    let mut remaining = len;
    let mut at_end = false;
    while remaining > 0 {
        if cancel.is_set() {
            return Err(cancelled_io());
        }
        let room = out.spare()?;
        let want = room.len().min(remaining.min(usize::MAX as u64) as usize);
        let mut n = 0;
        if !at_end {
            n = match file.read(&mut room[..want]) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            at_end = n == 0;
        }
        if at_end {
            room[..want].fill(0);
            n = want;
        }
        if let Some(hasher) = hasher.as_deref_mut() {
            hasher.update(&room[..n]);
        }
        if let Some(pages) = pages.as_deref_mut() {
            pages.feed(&room[..n]);
        }
        out.commit(n)?;
        remaining -= n as u64;
    }
    out.write_all(&tar_entry::ZEROS[..tar_entry::padding(len)])
}

/// Page verification settings: the cluster's block size and the backup's
/// start LSN (pages written after it are replayed from WAL, not checked).
#[derive(Debug, Clone, Copy)]
pub struct PageVerification {
    pub block_size: u32,
    pub backup_start: Lsn,
}

/// What a part is written from.
pub struct Sources<'a> {
    pub files: &'a [SourceFile],
    pub pool: &'a Arc<CompressPool>,
    pub verification: Option<PageVerification>,
    pub block_size: u32,
    /// The seed of the block hashes (the chain's).
    pub seed: u64,
    /// The backup an incremental is based on; `None` for a full.
    pub base: Option<&'a Base>,
    /// `--max-rate`, shared by every part.
    pub limiter: Option<&'a Limiter>,
}

/// Relation files smaller than this are stored whole when they change:
/// a blocks entry's header would cost as much as it saves.
pub const MIN_BLOCKS: u64 = 4;

/// The file's block count, if its blocks are hashed (and compared by an
/// incremental): relation files of whole blocks, `MIN_BLOCKS` or more.
fn hashed_blocks(f: &SourceFile, len: u64, block_size: u32) -> Option<u64> {
    let bs = u64::from(block_size);
    (relation_segment(f).is_some() && len.is_multiple_of(bs) && len / bs >= MIN_BLOCKS)
        .then_some(len / bs)
}

/// Writes one part to `out` (a streaming upload); `out` is returned so the
/// caller can complete the upload.
pub fn write_part<W: Write>(
    src: &Sources<'_>,
    plan: &PartPlan,
    cancel: &Cancel,
    out: W,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<(PartResult, W)> {
    let io =
        |what: String| move |e: std::io::Error| Error::new(ErrorKind::LocalIo, what).with_source(e);
    let counting = Counting {
        inner: out,
        count: 0,
        hasher: Hasher::new(),
    };
    let mut tar = tar::Builder::new(FrameWriter::new(src.pool.clone(), counting));
    tar.mode(tar::HeaderMode::Complete);
    let mut stored = Vec::new();
    let mut vanished = Vec::new();
    let mut bad_pages = Vec::new();
    let mut hashes = HashObjectWriter::default();
    let mut size = 0u64;
    let mut chunk = Vec::new();
    let throttle = Throttle::new(src.limiter, cancel);
    for &index in &plan.files {
        let f = &src.files[index];
        let file = match std::fs::File::open(&f.full) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                vanished.push(f.path.clone());
                continue;
            }
            Err(e) => return Err(Error::io("reading", &f.full, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading the size of", &f.full, e))?
            .len();
        let blocks = hashed_blocks(f, len, src.block_size);
        let checker = || {
            src.verification.and_then(|v| {
                let segment = relation_segment(f)?;
                Some(PageChecker::new(v.backup_start, segment))
            })
        };
        let parent = src.base.and_then(|b| b.file(f));
        let archiving = || io(format!("archiving {}", f.full.display()));
        // A relation file the parent hashed: its changed blocks, unless
        // so many changed that it is better stored whole.
        let mut by_blocks = None;
        let mut counted = false;
        if let (Some(p), Some(blocks)) = (parent, blocks)
            && !p.hashes.is_empty()
        {
            let base = src.base.expect("a parent has a base");
            let changes = incremental::ChangedBlocks {
                file: &file,
                source: f,
                blocks,
                block_size: src.block_size,
                seed: src.seed,
                parent: base.vector(p)?,
                throttle,
            };
            let hashed = changes.hash(cancel, on_progress).map_err(archiving())?;
            counted = true;
            if incremental::worth_blocks(p, hashed.changed.len(), blocks) {
                let found = changes
                    .store(hashed, &mut tar, &mut chunk, checker(), cancel)
                    .map_err(archiving())?;
                by_blocks = Some(found.finish(&mut hashes));
            }
        }
        let progress = |n: u64| {
            if !counted {
                on_progress(n)
            }
        };
        let (checksum, how, checked) = match (by_blocks, parent) {
            (Some(done), _) => done,
            (None, Some(p))
                if !counted
                    && p.size == len
                    && incremental::unchanged(&file, len, &p.checksum, throttle) =>
            {
                progress(len);
                (p.checksum, How::Same, None)
            }
            _ => {
                let checker = checker();
                let mut pages = (checker.is_some() || blocks.is_some())
                    .then(|| PageWork::new(src.block_size, checker, blocks.map(|_| src.seed)));
                // A file whose blocks are hashed gets its checksum from
                // them: one pass of hashing, not two.
                let mut hasher = blocks.is_none().then(ContentHasher::new);
                let mut header = tar::Header::new_gnu();
                header.set_size(len);
                header.set_mode(f.mode);
                header.set_mtime(f.mtime.max(0) as u64);
                header.set_entry_type(tar::EntryType::Regular);
                tar_entry::append_header(&mut tar, &mut header, &f.path).map_err(archiving())?;
                copy_content(
                    throttle.reader(&file),
                    len,
                    tar.get_mut(),
                    hasher.as_mut(),
                    pages.as_mut(),
                    cancel,
                )
                .map_err(archiving())?;
                progress(len);
                let (checker, vector) = pages.map_or((None, None), |p| (p.checker, p.hashes));
                let checksum = match (hasher, &vector) {
                    (Some(hasher), _) => hasher.finish(),
                    (None, Some(v)) => {
                        ContentChecksum::of_block_hashes(src.block_size, src.seed, v)
                    }
                    (None, None) => unreachable!("a file is hashed one way or the other"),
                };
                let hashes = vector.map(|v| (hashes.full(&v), v.len() as u64));
                (checksum, How::Whole { hashes }, checker)
            }
        };
        if let Some(checker) = checked {
            for block in checker.confirmed(&file, src.block_size) {
                bad_pages.push(BadPage { index, block });
            }
        }
        size += len;
        stored.push(StoredFile {
            index,
            size: len,
            checksum,
            how,
        });
    }
    let frames = tar
        .into_inner()
        .map_err(io("finishing the tar stream".into()))?;
    let counting = frames
        .finish()
        .map_err(io("finishing compression".into()))?;
    let result = PartResult {
        files: stored,
        bad_pages,
        vanished,
        size,
        stored_size: counting.count,
        stored_checksum: counting.hasher.finish(),
        hashes,
    };
    Ok((result, counting.inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Compression;

    fn source(dir: &std::path::Path, name: &str, size: u64) -> SourceFile {
        SourceFile {
            path: PathBytes::from(name),
            tablespace: None,
            full: dir.join(name),
            size,
            mode: 0o600,
            mtime: 0,
        }
    }

    #[test]
    fn pg_control_can_be_planned_alone_and_last() {
        let dir = std::path::Path::new("/nonexistent");
        let mut files = vec![
            source(dir, "base/1/1259", 8192),
            source(dir, "global/1262", 8192),
            source(dir, "global/pg_control", 8192),
            source(dir, "global/pg_filenode.map", 512),
        ];
        let mut in_tablespace = source(dir, "PG_16_202307071/5/16384", 8192);
        in_tablespace.tablespace = Some(16400);
        files.push(in_tablespace);
        let (plans, last) = plan_control_last(&mut files, "zst");
        assert!(last);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "part-00001.tar.zst",
                "part-00002-tablespace-16400.tar.zst",
                "part-00003.tar.zst"
            ]
        );
        let control = plans.last().unwrap();
        assert_eq!(control.files, [4]);
        assert_eq!(files[4].path.as_bytes(), b"global/pg_control");
        assert_eq!(control.tablespace, None);
        // Every other file is in exactly one earlier part.
        let mut others: Vec<usize> = plans[..2].iter().flat_map(|p| p.files.clone()).collect();
        others.sort();
        assert_eq!(others, [0, 1, 2, 3]);
        assert!(
            others
                .iter()
                .all(|&i| files[i].path.as_bytes() != b"global/pg_control")
        );
    }

    #[test]
    fn files_that_vanish_or_change_size_while_read_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("steady"), vec![1u8; 10_000]).unwrap();
        std::fs::write(dir.path().join("grows"), vec![2u8; 5_000]).unwrap();
        let files = vec![
            source(dir.path(), "steady", 10_000),
            source(dir.path(), "gone", 7),
            source(dir.path(), "grows", 5_000),
        ];
        // Removed between listing and reading.
        let plan = PartPlan {
            name: "part-00001.tar".into(),
            tablespace: None,
            files: vec![0, 1, 2],
        };
        let mut out = Vec::new();
        let (result, _) = write_part(
            &Sources {
                files: &files,
                pool: &CompressPool::new(Compression::Lz4, 2).unwrap(),
                verification: None,
                block_size: 8192,
                seed: 0,
                base: None,
                limiter: None,
            },
            &plan,
            &Cancel::default(),
            &mut out,
            &|_| {},
        )
        .unwrap();
        assert_eq!(result.vanished, vec![PathBytes::from("gone")]);
        assert_eq!(result.files.len(), 2);
        assert_eq!(
            result.files[0].checksum,
            ContentChecksum::of(&[1u8; 10_000])
        );

        let mut tar = tar::Archive::new(Compression::Lz4.decoder(&out[..]).unwrap());
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["steady", "grows"]);
    }

    #[test]
    fn a_file_shrinking_during_the_read_is_padded_to_its_size() {
        let data = [9u8; 100];
        let pool = CompressPool::new(Compression::None, 1).unwrap();
        let mut out = FrameWriter::new(pool, Vec::new());
        let mut hasher = ContentHasher::new();
        copy_content(
            &data[..40],
            100,
            &mut out,
            Some(&mut hasher),
            None,
            &Cancel::default(),
        )
        .unwrap();
        let out = out.finish().unwrap();
        // The content, then the tar padding to 512 bytes.
        assert_eq!(out.len(), 512);
        assert!(out[..40].iter().all(|&b| b == 9));
        assert!(out[40..].iter().all(|&b| b == 0));
        assert_eq!(hasher.finish(), ContentChecksum::of(&out[..100]));
    }

    #[test]
    fn pages_split_across_reads_are_checked_whole() {
        // Four 8 KiB pages of zeros (new pages) but the third, broken, fed
        // in pieces that never line up with page boundaries.
        let mut data = vec![0u8; 4 * 8192];
        data[2 * 8192 + 100] = 1;
        let checker = PageChecker::new(Lsn(u64::MAX), 0);
        let mut pages = PageWork::new(8192, Some(checker), Some(7));
        for piece in data.chunks(5000) {
            pages.feed(piece);
        }
        assert_eq!(pages.next, 4);
        assert_eq!(pages.checker.unwrap().bad, vec![2]);
        let hashes: Vec<u64> = data.chunks(8192).map(|p| block_hash(p, 7)).collect();
        assert_eq!(pages.hashes.unwrap(), hashes);
    }

    #[test]
    fn parts_split_by_size_and_tablespace() {
        let dir = std::path::Path::new("/x");
        let mut files: Vec<SourceFile> = (0..5)
            .map(|i| source(dir, &format!("f{i}"), PART_TARGET / 2))
            .collect();
        files[4].tablespace = Some(16400);
        let plans = plan(&files, "zst");
        assert_eq!(
            plans.iter().map(|p| p.files.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(plans[2].tablespace, Some(16400));
        assert_eq!(plans[2].name, "part-00003-tablespace-16400.tar.zst");
    }

    #[test]
    fn names_that_are_not_utf8_or_long_come_back_byte_for_byte() {
        use crate::repo::manifest::FileEntry;
        use crate::repo::part_reader::{Discard, expected_files, read_part};
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let dir = tempfile::tempdir().unwrap();
        let long_dir = [b"d\xe9".repeat(30), b"/".to_vec()].concat();
        let names: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"notes-\xe9t\xe9.txt".to_vec(),
            // 99, 100 and 101 bytes: the header's name field holds 100.
            [b"\xff".as_slice(), &[b'n'; 98]].concat(),
            [b"\xff".as_slice(), &[b'n'; 99]].concat(),
            [b"\xff".as_slice(), &[b'n'; 100]].concat(),
            // Past 100 bytes with the cut falling inside a two-byte sequence,
            // and past the 255 bytes of a ustar prefix and name.
            [long_dir.as_slice(), "é".repeat(60).as_bytes(), b"\xe9"].concat(),
            [long_dir.as_slice(), &b"\xe9x".repeat(120)].concat(),
            b"z".to_vec(),
        ];
        std::fs::create_dir(
            dir.path()
                .join(OsStr::from_bytes(&long_dir[..long_dir.len() - 1])),
        )
        .unwrap();
        let mut files = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let full = dir.path().join(OsStr::from_bytes(name));
            let content = vec![i as u8; 1000 + i];
            std::fs::write(&full, &content).unwrap();
            files.push(SourceFile {
                path: PathBytes::new(name.clone()),
                tablespace: None,
                full,
                size: content.len() as u64,
                mode: 0o600,
                mtime: 0,
            });
        }
        let plan = PartPlan {
            name: "part-00001.tar.zst".into(),
            tablespace: None,
            files: (0..files.len()).collect(),
        };
        let compression = Compression::Zstd { level: 1 };
        let mut out = Vec::new();
        let (result, _) = write_part(
            &Sources {
                files: &files,
                pool: &CompressPool::new(compression, 2).unwrap(),
                verification: None,
                block_size: 8192,
                seed: 0,
                base: None,
                limiter: None,
            },
            &plan,
            &Cancel::default(),
            &mut out,
            &|_| {},
        )
        .unwrap();
        assert_eq!(result.files.len(), names.len());

        // Any tar reader sees the names' bytes.
        let mut tar = tar::Archive::new(compression.decoder(&out[..]).unwrap());
        let stored: Vec<Vec<u8>> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().into_owned())
            .collect();
        assert_eq!(stored, names);

        // And restore's and verify's reader matches each with its manifest entry.
        let entries: Vec<FileEntry> = result
            .files
            .iter()
            .map(|f| FileEntry {
                path: files[f.index].path.clone(),
                tablespace: None,
                size: f.size,
                checksum: f.checksum,
                mode: 0o600,
                mtime: 0,
                part: 0,
                layers: Vec::new(),
                hashes: Vec::new(),
            })
            .collect();
        for f in &result.files {
            assert_eq!(
                f.checksum,
                ContentChecksum::of(&vec![f.index as u8; 1000 + f.index])
            );
        }
        let totals = read_part(
            &out[..],
            compression,
            0,
            &expected_files(&entries, "b", 8192),
            "part-00001.tar.zst",
            result.stored_checksum,
            &mut Discard::new(),
        )
        .unwrap();
        assert_eq!(totals.files, names.len());
    }
}
