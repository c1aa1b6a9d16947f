//! Writing files into parts: tar streams, compressed, streamed to storage.
//! A file's size is taken when it is opened; if it shrinks while read the
//! rest is zeros, if it grows the rest is left out: WAL replay from the
//! backup's start repairs both, as for PostgreSQL's own base backup.

use super::walk::SourceFile;
use crate::codec::{Checksum, Compression, Hasher};
use crate::error::{Error, ErrorKind, Result};
use std::io::{Read, Write};

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

/// Groups files into parts in path order, one tablespace per part.
pub fn plan(files: &[SourceFile]) -> Vec<PartPlan> {
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
                None => format!("part-{n:05}.tar"),
                Some(oid) => format!("part-{n:05}-tablespace-{oid}.tar"),
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

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub index: usize,
    pub size: u64,
    pub checksum: Checksum,
}

#[derive(Debug)]
pub struct PartResult {
    pub files: Vec<StoredFile>,
    pub vanished: Vec<String>,
    pub size: u64,
    pub stored_size: u64,
    pub stored_checksum: Checksum,
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

/// Yields exactly `remaining` bytes of a file, zeros past its end, hashing them.
struct Exact<R: Read> {
    inner: R,
    remaining: u64,
    inner_done: bool,
    hasher: Hasher,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let mut n = 0;
        if !self.inner_done {
            n = self.inner.read(&mut buf[..want])?;
            if n == 0 {
                self.inner_done = true;
            }
        }
        if self.inner_done {
            buf[..want].fill(0);
            n = want;
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Writes one part to `out` (a streaming upload); `out` is returned so the
/// caller can complete the upload.
pub fn write_part<W: Write>(
    files: &[SourceFile],
    plan: &PartPlan,
    compression: Compression,
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
    let encoder = compression.encoder(counting)?;
    let mut tar = tar::Builder::new(encoder);
    tar.mode(tar::HeaderMode::Complete);
    let mut stored = Vec::new();
    let mut vanished = Vec::new();
    let mut size = 0u64;
    for &index in &plan.files {
        let f = &files[index];
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
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(f.mode);
        header.set_mtime(f.mtime.max(0) as u64);
        header.set_entry_type(tar::EntryType::Regular);
        let mut reader = Exact {
            inner: file,
            remaining: len,
            inner_done: false,
            hasher: Hasher::new(),
        };
        tar.append_data(&mut header, &f.path, &mut reader)
            .map_err(io(format!("archiving {}", f.full.display())))?;
        on_progress(len);
        size += len;
        stored.push(StoredFile {
            index,
            size: len,
            checksum: reader.hasher.finish(),
        });
    }
    let encoder = tar
        .into_inner()
        .map_err(io("finishing the tar stream".into()))?;
    let counting = encoder.finish()?;
    let result = PartResult {
        files: stored,
        vanished,
        size,
        stored_size: counting.count,
        stored_checksum: counting.hasher.finish(),
    };
    Ok((result, counting.inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &std::path::Path, name: &str, size: u64) -> SourceFile {
        SourceFile {
            path: name.to_string(),
            tablespace: None,
            full: dir.join(name),
            size,
            mode: 0o600,
            mtime: 0,
        }
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
        let (result, _) = write_part(&files, &plan, Compression::Lz4, &mut out, &|_| {}).unwrap();
        assert_eq!(result.vanished, vec!["gone".to_string()]);
        assert_eq!(result.files.len(), 2);
        assert_eq!(result.files[0].checksum, Checksum::of(&[1u8; 10_000]));

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
        let mut exact = Exact {
            inner: &data[..40],
            remaining: 100,
            inner_done: false,
            hasher: Hasher::new(),
        };
        let mut out = Vec::new();
        exact.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 100);
        assert!(out[40..].iter().all(|&b| b == 0));
        assert_eq!(exact.hasher.finish(), Checksum::of(&out));
    }

    #[test]
    fn parts_split_by_size_and_tablespace() {
        let dir = std::path::Path::new("/x");
        let mut files: Vec<SourceFile> = (0..5)
            .map(|i| source(dir, &format!("f{i}"), PART_TARGET / 2))
            .collect();
        files[4].tablespace = Some(16400);
        let plans = plan(&files);
        assert_eq!(
            plans.iter().map(|p| p.files.len()).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(plans[2].tablespace, Some(16400));
        assert!(plans[2].name.contains("tablespace-16400"));
    }
}
