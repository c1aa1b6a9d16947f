//! Reading a stored backup part back: one streaming pass that checks the
//! stored object's checksum, decompresses it, walks the tar and checks each
//! file's size and content checksum against the manifest. Restore hands the files to
//! the disk; verify hands them to nowhere. Either way every check is made.

use super::block_entry;
use super::manifest::{FileEntry, LayerKind};
use super::path_bytes::PathBytes;
use super::read_full;
use crate::codec::{Checksum, Compression, ContentHasher, Hasher};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Where the files of a part go as they are read. The sink lends the
/// buffer each piece is read into, so that a piece is copied once, from
/// the decompressed stream to where it will be written from.
pub trait FileSink {
    /// A file of the part begins; `path` is relative to its root.
    fn begin(&mut self, path: &PathBytes, entry: &FileEntry) -> Result<()>;
    /// Where the file's next bytes are to be read to: never empty.
    fn buffer(&mut self) -> Result<&mut [u8]>;
    /// The first `n` bytes of the last `buffer()` hold the file's next bytes.
    fn filled(&mut self, n: usize) -> Result<()>;
    /// The file was read whole and its checksum verified.
    fn end(&mut self, path: &PathBytes, entry: &FileEntry) -> Result<()>;
    /// Blocks of a file an older backup of the chain wrote: block
    /// `numbers[i]` is `data[i * block_size..][..block_size]`.
    fn patch(
        &mut self,
        path: &PathBytes,
        block_size: u32,
        numbers: &[u32],
        data: &[u8],
    ) -> Result<()>;
}

/// Discards the files: for verifying without writing.
pub struct Discard {
    buffer: Vec<u8>,
}

impl Discard {
    pub fn new() -> Discard {
        Discard {
            buffer: vec![0; CHUNK],
        }
    }
}

impl Default for Discard {
    fn default() -> Discard {
        Discard::new()
    }
}

impl FileSink for Discard {
    fn begin(&mut self, _: &PathBytes, _: &FileEntry) -> Result<()> {
        Ok(())
    }
    fn buffer(&mut self) -> Result<&mut [u8]> {
        Ok(&mut self.buffer)
    }
    fn filled(&mut self, _: usize) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &PathBytes, _: &FileEntry) -> Result<()> {
        Ok(())
    }
    fn patch(&mut self, _: &PathBytes, _: u32, _: &[u32], _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// What one part held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartTotals {
    pub files: usize,
    pub bytes: u64,
}

/// One entry (or, for blocks, the run of entries) a part holds for a
/// file: `entry` is the file as written, with the size and checksum of
/// this layer's content.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub entry: FileEntry,
    pub kind: LayerKind,
    /// Blocks layers: entries and blocks.
    pub entries: u64,
    pub blocks: u64,
}

/// What `read_part` expects of a backup's parts.
#[derive(Debug, Clone)]
pub struct Expected {
    /// By part index, file path and kind.
    pub wanted: HashMap<(usize, PathBytes, LayerKind), Wanted>,
    /// An entry not wanted: refused (verifying a backup against its own
    /// manifest), or passed over (restoring a chain: an older member holds
    /// files that later ones replaced).
    pub skip_others: bool,
    pub block_size: u32,
}

impl Expected {
    /// How many entries (whole files, or blocks layers) part `part` holds.
    pub fn count_in(&self, part: usize) -> usize {
        self.wanted.keys().filter(|k| k.0 == part).count()
    }
}

/// What `member`'s parts hold of `files` (the manifest of backup
/// `backup`, or of a backup whose chain `member` belongs to): each file's
/// layer that `member` stored.
pub fn expected_layers(
    files: &[FileEntry],
    backup: &str,
    member: &str,
    block_size: u32,
) -> Expected {
    let mut wanted = HashMap::new();
    for f in files {
        for layer in f.layers_in(backup) {
            if layer.backup != member {
                continue;
            }
            let mut entry = f.clone();
            entry.size = layer.size;
            entry.checksum = layer.checksum;
            wanted.insert(
                (layer.part, f.path.clone(), layer.kind),
                Wanted {
                    entry,
                    kind: layer.kind,
                    entries: layer.entries,
                    blocks: layer.blocks,
                },
            );
        }
    }
    Expected {
        wanted,
        skip_others: backup != member,
        block_size,
    }
}

/// A backup's own files, as its parts hold them (verify, and the tests).
pub fn expected_files(files: &[FileEntry], backup: &str, block_size: u32) -> Expected {
    expected_layers(files, backup, backup, block_size)
}

/// Hashes the stored bytes as they stream past, to compare with the manifest.
/// A failure of the storage itself is kept aside: the decoder and the tar
/// reader above may reword it, and it must not be reported as damage.
struct HashingReader<R: Read> {
    inner: R,
    hasher: Hasher,
    storage_failure: std::sync::Arc<std::sync::Mutex<Option<Error>>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if let Some(failure) = crate::storage::read_failure(e) {
                *self.storage_failure.lock().expect("not poisoned") =
                    Some(Error::new(failure.kind(), failure.to_string()).with_hint(
                        "the repository could not be read; check that it is reachable and run the command again",
                    ));
            }
        })?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Decompressed bytes travel from the reading thread to the checking one
/// in chunks of this size; a few are in flight per part.
const CHUNK: usize = 1 << 20;
const CHUNKS_IN_FLIGHT: usize = 4;

/// The checking side's view of the decompressed stream: chunks from the
/// reading thread, whose buffers go back to it for reuse.
struct ChunkReader {
    chunks: Receiver<std::io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.recycle.try_send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => self.done = true,
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads part number `part` (stored at `key`) from `reader`, checking every
/// file against `expected` and the whole object against `stored_checksum`.
/// Any mismatch is a `Corrupt` error naming the key (and the file).
///
/// Two threads share the work, so that one large part (a 1 GiB relation
/// segment makes one) is not bound to one core: one reads, hashes and
/// decompresses the stored object; the other walks the tar, hashes each
/// file and hands it to the sink.
pub fn read_part(
    reader: impl Read + Send,
    compression: Compression,
    part: usize,
    expected: &Expected,
    key: &str,
    stored_checksum: Checksum,
    sink: &mut dyn FileSink,
) -> Result<PartTotals> {
    let corrupt = |why: String| {
        Error::corrupt(format!("part {key} is corrupt: {why}"))
            .with_hint("the stored backup is damaged; restore another backup")
    };
    std::thread::scope(|scope| {
        let (chunk_tx, chunk_rx) = sync_channel::<std::io::Result<Vec<u8>>>(CHUNKS_IN_FLIGHT);
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 2);
        let producer = scope.spawn(move || -> Result<std::io::Result<Option<Checksum>>> {
            let mut hashing = HashingReader {
                inner: reader,
                hasher: Hasher::new(),
                storage_failure: Default::default(),
            };
            let storage_failure = hashing.storage_failure.clone();
            let failed = move || storage_failure.lock().expect("not poisoned").take();
            let mut decoder = match compression.decoder(&mut hashing).map_err(|e| e.to_string()) {
                Ok(d) => d,
                Err(e) => {
                    let _ = chunk_tx.send(Err(std::io::Error::other(e)));
                    return failed().map_or(Ok(Ok(None)), Err);
                }
            };
            loop {
                let mut buf = recycle_rx.try_recv().unwrap_or_default();
                buf.resize(CHUNK, 0);
                let n = match read_full(&mut decoder, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = chunk_tx.send(Err(e));
                        drop(decoder);
                        return failed().map_or(Ok(Ok(None)), Err);
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if chunk_tx.send(Ok(buf)).is_err() {
                    // The checking side stopped (it found a problem).
                    return Ok(Ok(None));
                }
            }
            drop(decoder);
            drop(chunk_tx);
            // What the decoder left (nothing, or trailing bytes) is part of the object too.
            if let Err(e) = std::io::copy(&mut hashing, &mut std::io::sink()) {
                return failed().map_or(Ok(Err(e)), Err);
            }
            Ok(Ok(Some(hashing.hasher.finish())))
        });
        let stream = ChunkReader {
            chunks: chunk_rx,
            recycle: recycle_tx,
            current: Vec::new(),
            at: 0,
            done: false,
        };
        let walked = walk_tar(stream, part, expected, key, sink, &corrupt);
        let stored = producer
            .join()
            .map_err(|_| Error::corrupt(format!("reading part {key} failed")))??;
        let totals = walked?;
        match stored {
            Ok(Some(sum)) if sum == stored_checksum => Ok(totals),
            Ok(Some(_)) => Err(corrupt(
                "the stored object's checksum does not match its manifest".into(),
            )),
            Ok(None) => Err(corrupt("it ended early".into())),
            Err(e) => Err(corrupt(e.to_string())),
        }
    })
}

/// A blocks layer as its entries pass: they are consecutive, but the
/// layer is checked only once all have.
#[derive(Default)]
struct BlocksSeen {
    hasher: ContentHasher,
    size: u64,
    entries: u64,
    blocks: u64,
    last: Option<u32>,
}

/// Walks the decompressed tar stream, checking each file as it passes.
fn walk_tar(
    mut stream: ChunkReader,
    part: usize,
    expected: &Expected,
    key: &str,
    sink: &mut dyn FileSink,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<PartTotals> {
    let mut archive = tar::Archive::new(&mut stream);
    let mut totals = PartTotals::default();
    let mut blocks_seen: HashMap<PathBytes, BlocksSeen> = HashMap::new();
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        // The name's bytes, from the header or a GNU long name or PAX path
        // before it; never converted to text.
        let path = PathBytes::new(entry.path_bytes().into_owned());
        // Only plain names: an absolute path or `..` would write outside
        // the directory being restored.
        if let Some(why) = path.unsafe_below_root() {
            return Err(corrupt(format!(
                "it holds a path leaving the data directory: {path:?} {why}"
            )));
        }
        let is_blocks = entry.header().entry_type() == block_entry::ENTRY_TYPE;
        let (target, kind) = if is_blocks {
            let target = block_entry::target_of(&path)
                .ok_or_else(|| corrupt(format!("{path} is a blocks entry of no file")))?;
            (target, LayerKind::Blocks)
        } else {
            (path.clone(), LayerKind::Whole)
        };
        let Some(want) = expected.wanted.get(&(part, target.clone(), kind)) else {
            if expected.skip_others {
                std::io::copy(&mut entry, &mut std::io::sink())
                    .map_err(|e| corrupt(format!("{path}: {e}")))?;
                continue;
            }
            return Err(corrupt(format!(
                "it holds {path}, which its manifest does not list"
            )));
        };
        if kind == LayerKind::Blocks {
            let seen = blocks_seen.entry(target.clone()).or_default();
            read_blocks(
                &mut entry,
                &target,
                expected.block_size,
                seen,
                sink,
                corrupt,
            )?;
            continue;
        }
        let want = &want.entry;
        sink.begin(&path, want)?;
        let mut hasher = ContentHasher::like(&want.checksum);
        let mut size = 0u64;
        loop {
            let buf = sink.buffer()?;
            let n = entry
                .read(buf)
                .map_err(|e| corrupt(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            sink.filled(n)?;
            size += n as u64;
        }
        let sum = hasher.finish();
        if sum != want.checksum || size != want.size {
            return Err(Error::corrupt(format!(
                "{path} (in {key}) fails its checksum: stored {}, {} bytes; read back {sum}, {size} bytes",
                want.checksum, want.size
            ))
            .with_hint("the stored backup is damaged; restore another backup"));
        }
        sink.end(&path, want)?;
        totals.files += 1;
        totals.bytes += size;
    }
    for (target, seen) in blocks_seen {
        let want = &expected.wanted[&(part, target.clone(), LayerKind::Blocks)];
        let sum = seen.hasher.finish();
        if sum != want.entry.checksum
            || seen.size != want.entry.size
            || seen.entries != want.entries
            || seen.blocks != want.blocks
        {
            return Err(Error::corrupt(format!(
                "the changed blocks of {target} (in {key}) fail their checksum: stored {}, {} bytes in {} entries; read back {sum}, {} bytes in {}",
                want.entry.checksum, want.entry.size, want.entries, seen.size, seen.entries
            ))
            .with_hint("the stored backup is damaged; restore another backup"));
        }
        totals.files += 1;
        totals.bytes += seen.size;
    }
    // The end-of-archive padding after the last entry, so that the reading
    // thread reaches the end of the object and its checksum covers it all.
    std::io::copy(&mut stream, &mut std::io::sink()).map_err(|e| corrupt(e.to_string()))?;
    Ok(totals)
}

/// One blocks entry: read whole (at most `CHUNK_BLOCKS` blocks and their
/// header), parsed, and handed to the sink; its blocks must follow those
/// of the file's earlier entries.
fn read_blocks(
    entry: &mut impl Read,
    target: &PathBytes,
    block_size: u32,
    seen: &mut BlocksSeen,
    sink: &mut dyn FileSink,
    corrupt: &dyn Fn(String) -> Error,
) -> Result<()> {
    let bs = block_size as usize;
    let most =
        block_entry::header_len(bs, block_entry::CHUNK_BLOCKS) + block_entry::CHUNK_BLOCKS * bs;
    let mut content = Vec::new();
    entry
        .take(most as u64 + 1)
        .read_to_end(&mut content)
        .map_err(|e| corrupt(format!("blocks of {target}: {e}")))?;
    let parsed = block_entry::parse(&content, block_size)
        .map_err(|why| corrupt(format!("blocks of {target}: {why}")))?;
    if seen.last.is_some_and(|last| parsed.numbers[0] <= last) {
        return Err(corrupt(format!("blocks of {target} out of order")));
    }
    seen.last = parsed.numbers.last().copied();
    seen.hasher.update(&content);
    seen.size += content.len() as u64;
    seen.entries += 1;
    seen.blocks += parsed.numbers.len() as u64;
    sink.patch(
        target,
        block_size,
        &parsed.numbers,
        &content[parsed.data_offset..],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentChecksum;

    /// A zstd-compressed tar of two files (one spanning several chunks), and the manifest's view of it.
    fn part() -> (Vec<u8>, Vec<FileEntry>) {
        let files: Vec<(&str, Vec<u8>)> = vec![
            (
                "base/1/1259",
                (0..3 * CHUNK + 17).map(|i| (i * 31 % 251) as u8).collect(),
            ),
            ("PG_VERSION", b"15\n".to_vec()),
        ];
        let mut builder = tar::Builder::new(Vec::new());
        let mut entries = Vec::new();
        for (path, data) in &files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o600);
            header.set_cksum();
            builder
                .append_data(&mut header, path, data.as_slice())
                .unwrap();
            entries.push(FileEntry {
                path: PathBytes::from(*path),
                tablespace: None,
                size: data.len() as u64,
                checksum: ContentChecksum::of(data),
                mode: 0o600,
                mtime: 0,
                part: 0,
                layers: Vec::new(),
                hashes: Vec::new(),
            });
        }
        let tar = builder.into_inner().unwrap();
        let stored = Compression::Zstd { level: 1 }.compress(&tar).unwrap();
        (stored, entries)
    }

    fn read(stored: &[u8], entries: &[FileEntry], sum: Checksum) -> Result<PartTotals> {
        read_part(
            stored,
            Compression::Zstd { level: 1 },
            0,
            &expected_files(entries, "x", 8192),
            "main/backups/x/part-00001.tar.zst",
            sum,
            &mut Discard::new(),
        )
    }

    #[test]
    fn a_sound_part_reads_back_whole() {
        let (stored, entries) = part();
        let totals = read(&stored, &entries, Checksum::of(&stored)).unwrap();
        assert_eq!(totals.files, 2);
        assert_eq!(totals.bytes, entries.iter().map(|e| e.size).sum::<u64>());
    }

    #[test]
    fn a_path_leaving_the_directory_is_refused_even_when_listed() {
        for bad in ["/etc/cron.d/x", "base/../../x"] {
            let data = b"x".to_vec();
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            header.set_mode(0o600);
            // Written into the header by hand: the tar crate refuses such
            // paths, a damaged or crafted object need not.
            header.as_gnu_mut().unwrap().name[..bad.len()].copy_from_slice(bad.as_bytes());
            header.set_cksum();
            let mut builder = tar::Builder::new(Vec::new());
            builder.append(&header, data.as_slice()).unwrap();
            let tar = builder.into_inner().unwrap();
            let stored = Compression::Zstd { level: 1 }.compress(&tar).unwrap();
            let entries = vec![FileEntry {
                path: PathBytes::from(bad),
                tablespace: None,
                size: 1,
                // As formats 1 and 2 recorded it.
                checksum: ContentChecksum::from(Checksum::of(&data)),
                mode: 0o600,
                mtime: 0,
                part: 0,
                layers: Vec::new(),
                hashes: Vec::new(),
            }];
            let err = read(&stored, &entries, Checksum::of(&stored)).unwrap_err();
            assert!(
                err.to_string().contains("leaving the data directory"),
                "{err}"
            );
        }
    }

    #[test]
    fn damage_anywhere_is_named() {
        let (stored, entries) = part();
        let sum = Checksum::of(&stored);
        let mut flipped = stored.clone();
        let at = flipped.len() / 2;
        flipped[at] ^= 0x55;
        let err = read(&flipped, &entries, sum).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
        assert!(err.to_string().contains("part-00001.tar.zst"), "{err}");

        let truncated = &stored[..stored.len() / 3];
        let err = read(truncated, &entries, sum).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt, "{err}");

        let mut wrong = entries.clone();
        wrong[0].checksum = ContentChecksum::of(b"something else");
        let err = read(&stored, &wrong, sum).unwrap_err();
        assert!(err.to_string().contains("base/1/1259"), "{err}");

        let err = read(&stored, &entries, Checksum::of(b"other object")).unwrap_err();
        assert!(
            err.to_string().contains("stored object's checksum"),
            "{err}"
        );
    }
}
