//! Reading a stored backup part back: one streaming pass that checks the
//! stored object's checksum, decompresses it, walks the tar and checks each
//! file's size and SHA-256 against the manifest. Restore hands the files to
//! the disk; verify hands them to nowhere. Either way every check is made.

use super::manifest::FileEntry;
use crate::codec::{Checksum, Compression, Hasher};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::Read;

/// Where the files of a part go as they are read.
pub trait FileSink {
    /// A file of the part begins; `path` is relative to its root.
    fn begin(&mut self, path: &str, entry: &FileEntry) -> Result<()>;
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// The file was read whole and its checksum verified.
    fn end(&mut self, path: &str, entry: &FileEntry) -> Result<()>;
}

/// Discards the files: for verifying without writing.
pub struct Discard;

impl FileSink for Discard {
    fn begin(&mut self, _: &str, _: &FileEntry) -> Result<()> {
        Ok(())
    }
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
    fn end(&mut self, _: &str, _: &FileEntry) -> Result<()> {
        Ok(())
    }
}

/// What one part held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartTotals {
    pub files: usize,
    pub bytes: u64,
}

/// The manifest's files, by part index and path: what `read_part` expects.
pub type Expected = HashMap<(usize, String), FileEntry>;

pub fn expected_files(files: &[FileEntry]) -> Expected {
    files
        .iter()
        .map(|f| ((f.part, f.path.clone()), f.clone()))
        .collect()
}

/// Hashes the stored bytes as they stream past, to compare with the manifest.
struct HashingReader<R: Read> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads part number `part` (stored at `key`) from `reader`, checking every
/// file against `expected` and the whole object against `stored_checksum`.
/// Any mismatch is a `Corrupt` error naming the key (and the file).
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
    let mut hashing = HashingReader {
        inner: reader,
        hasher: Hasher::new(),
    };
    let decoder = compression.decoder(&mut hashing)?;
    let mut archive = tar::Archive::new(decoder);
    let mut totals = PartTotals::default();
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    let mut buf = vec![0u8; 1 << 20];
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let want = expected
            .get(&(part, path.clone()))
            .ok_or_else(|| corrupt(format!("it holds {path}, which its manifest does not list")))?;
        if path.split('/').any(|c| c == "..") {
            return Err(corrupt(format!(
                "it holds a path leaving the data directory: {path}"
            )));
        }
        sink.begin(&path, want)?;
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| corrupt(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            sink.write(&buf[..n])?;
            size += n as u64;
        }
        let sum = hasher.finish();
        if sum != want.checksum || size != want.size {
            return Err(Error::corrupt(format!(
                "{path} (in {key}) fails its checksum: stored sha256 {}, {} bytes; read back sha256 {sum}, {size} bytes",
                want.checksum, want.size
            ))
            .with_hint("the stored backup is damaged; restore another backup"));
        }
        sink.end(&path, want)?;
        totals.files += 1;
        totals.bytes += size;
    }
    drop(archive);
    // Drain what the tar reader left (end-of-archive padding) so the checksum covers the whole object.
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(|e| corrupt(e.to_string()))?;
    if hashing.hasher.finish() != stored_checksum {
        return Err(corrupt(
            "the stored object's checksum does not match its manifest".into(),
        ));
    }
    Ok(totals)
}
