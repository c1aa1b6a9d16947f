//! Writing restored files, on a thread of their own per part, so that the
//! disk is written while the next megabytes are checked.
//!
//! By default files go through the page cache, with writeback started
//! every 8 MiB as PostgreSQL's `*_flush_after` settings do. With
//! `WriteMode::Direct` (restore's `--direct-io`) files of 1 MiB and more go
//! to the disk with direct I/O in aligned 2 MiB writes, which spares the
//! copy into the page cache and the kernel's dirty-page throttling: on
//! this project's virtual disk that reached the device's bandwidth in
//! November (900 MB/s against 220–550 buffered) and was 25% slower than
//! the page cache in December, so it is the operator's choice. Small
//! files, file tails shorter than a block, and filesystems that refuse
//! direct I/O always go through the page cache. Either way the restore
//! ends by syncing everything (`durable.rs`).

use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::repo::manifest::FileEntry;
use crate::repo::part_reader::FileSink;
use crate::repo::path_bytes::PathBytes;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Direct I/O needs buffer addresses, offsets and lengths aligned to the
/// device's logical block; 4096 covers 512-byte and 4 KiB devices.
const ALIGN: usize = 4096;
const WRITE_SIZE: usize = 2 << 20;
/// Buffers per part: one being filled, the others queued or being written.
const BUFFERS: usize = 3;
/// Files smaller than this are written through the page cache: a direct
/// write waits for the device, which only pays off for large writes.
const DIRECT_MIN_FILE: u64 = 1 << 20;
/// Buffered writes start writeback every this many bytes of a file.
const WRITEBACK_AFTER: u64 = 8 << 20;

/// How restored files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Direct I/O for large files where the filesystem allows it.
    Direct,
    /// Everything through the page cache.
    Buffered,
}

/// `WRITE_SIZE` bytes at an `ALIGN`ed address.
struct AlignedBuf {
    storage: Vec<u8>,
    offset: usize,
}

impl AlignedBuf {
    fn new() -> AlignedBuf {
        let storage = vec![0u8; WRITE_SIZE + ALIGN];
        let offset = storage.as_ptr().align_offset(ALIGN);
        AlignedBuf { storage, offset }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + WRITE_SIZE]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.offset..self.offset + WRITE_SIZE]
    }
}

/// What the checking thread asks the writing thread to do, in file order.
enum Op {
    Open {
        path: PathBuf,
        large: bool,
    },
    /// The first `usize` bytes of the buffer are the file's next bytes.
    Data(AlignedBuf, usize),
    Close {
        mode: u32,
    },
}

/// Writes a part's files under `root`, each with the mode its manifest
/// records. Call `finish` when the part is read: the files are complete
/// only then.
pub struct DiskSink {
    root: PathBuf,
    ops: Option<SyncSender<Op>>,
    free: Receiver<AlignedBuf>,
    current: Option<AlignedBuf>,
    filled: usize,
    writer: Option<JoinHandle<Result<()>>>,
    progress: Progress,
}

impl DiskSink {
    pub fn new(root: PathBuf, progress: Progress, mode: WriteMode) -> DiskSink {
        let (ops_tx, ops_rx) = sync_channel(BUFFERS);
        let (free_tx, free_rx) = sync_channel(BUFFERS);
        for _ in 0..BUFFERS {
            let _ = free_tx.send(AlignedBuf::new());
        }
        let patches = progress.clone();
        let writer = std::thread::spawn(move || {
            Writer {
                mode,
                progress,
                free: free_tx,
                file: None,
            }
            .run(ops_rx)
        });
        DiskSink {
            root,
            ops: Some(ops_tx),
            free: free_rx,
            current: None,
            filled: 0,
            writer: Some(writer),
            progress: patches,
        }
    }

    /// Waits until every file handed over is written; the first error of
    /// the writing thread, if any.
    pub fn finish(mut self) -> Result<()> {
        self.ops = None;
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::new(
                ErrorKind::LocalIo,
                "the thread writing restored files failed",
            )),
            None => Ok(()),
        }
    }

    /// The writing thread stopped early: its error says why.
    fn writer_stopped(&mut self) -> Error {
        self.ops = None;
        match self.join() {
            Err(e) => e,
            Ok(()) => Error::new(
                ErrorKind::LocalIo,
                "the thread writing restored files stopped",
            ),
        }
    }

    fn send(&mut self, op: Op) -> Result<()> {
        let sent = self.ops.as_ref().is_some_and(|ops| ops.send(op).is_ok());
        if sent {
            Ok(())
        } else {
            Err(self.writer_stopped())
        }
    }

    fn send_current(&mut self) -> Result<()> {
        if let Some(buf) = self.current.take() {
            let filled = std::mem::take(&mut self.filled);
            self.send(Op::Data(buf, filled))?;
        }
        Ok(())
    }
}

impl Drop for DiskSink {
    fn drop(&mut self) {
        // After an error elsewhere: stop the writer before the files it
        // holds open are removed or reported.
        self.ops = None;
        let _ = self.join();
    }
}

impl FileSink for DiskSink {
    fn begin(&mut self, path: &PathBytes, entry: &FileEntry) -> Result<()> {
        let path = self
            .root
            .join(super::unfinished::written_as(path.as_path()));
        self.send(Op::Open {
            path,
            large: entry.size >= DIRECT_MIN_FILE,
        })
    }

    fn buffer(&mut self) -> Result<&mut [u8]> {
        if self.current.is_none() {
            match self.free.recv() {
                Ok(buf) => self.current = Some(buf),
                Err(_) => return Err(self.writer_stopped()),
            }
        }
        let filled = self.filled;
        let buf = self.current.as_mut().expect("a buffer was just taken");
        Ok(&mut buf.bytes_mut()[filled..])
    }

    fn filled(&mut self, n: usize) -> Result<()> {
        self.filled += n;
        if self.filled == WRITE_SIZE {
            self.send_current()?;
        }
        Ok(())
    }

    fn end(&mut self, _: &PathBytes, entry: &FileEntry) -> Result<()> {
        self.send_current()?;
        self.send(Op::Close { mode: entry.mode })
    }

    /// Written here rather than by the writing thread: the file was
    /// written whole by an older member of the chain, whose parts are all
    /// read before this member's.
    fn patch(
        &mut self,
        path: &PathBytes,
        block_size: u32,
        numbers: &[u32],
        data: &[u8],
    ) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let path = self
            .root
            .join(super::unfinished::written_as(path.as_path()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("opening, to write changed blocks into,", &path, e))?;
        let bs = block_size as usize;
        for (n, block) in numbers.iter().zip(data.chunks_exact(bs)) {
            file.write_all_at(block, u64::from(*n) * bs as u64)
                .map_err(|e| Error::io("writing changed blocks into", &path, e))?;
        }
        self.progress.add(data.len() as u64);
        Ok(())
    }
}

/// The writing thread's state.
struct Writer {
    mode: WriteMode,
    progress: Progress,
    free: SyncSender<AlignedBuf>,
    file: Option<OpenFile>,
}

struct OpenFile {
    file: File,
    path: PathBuf,
    direct: bool,
    /// Bytes written, and how many of them have been handed to writeback
    /// (buffered files).
    written: u64,
    flushed: u64,
}

impl Writer {
    fn run(mut self, ops: Receiver<Op>) -> Result<()> {
        for op in ops {
            match op {
                Op::Open { path, large } => self.open(path, large)?,
                Op::Data(buf, len) => {
                    if let Some(file) = &mut self.file {
                        file.write(&buf.bytes()[..len], &mut self.mode)?;
                        self.progress.add(len as u64);
                    }
                    // The checking side may be gone after an error of its own.
                    let _ = self.free.send(buf);
                }
                Op::Close { mode } => {
                    if let Some(mut file) = self.file.take() {
                        file.start_writeback();
                        std::fs::set_permissions(
                            &file.path,
                            std::fs::Permissions::from_mode(mode & 0o7777),
                        )
                        .map_err(|e| Error::io("setting the mode of", &file.path, e))?;
                        file.close()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, path: PathBuf, large: bool) -> Result<()> {
        let mut direct = large && self.mode == WriteMode::Direct;
        let file = match open(&path, direct) {
            Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(
                    "{} does not take direct I/O; writing through the page cache",
                    path.display()
                );
                self.mode = WriteMode::Buffered;
                direct = false;
                open(&path, false)
            }
            other => other,
        }
        .map_err(|e| Error::io("creating", &path, e))?;
        self.file = Some(OpenFile {
            file,
            path,
            direct,
            written: 0,
            flushed: 0,
        });
        Ok(())
    }
}

fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path)
}

impl OpenFile {
    /// Writes the file's next bytes. Direct writes must be whole blocks:
    /// only a file's last piece is not, and its tail goes through the page
    /// cache. A direct write the filesystem refuses falls back to the page
    /// cache for this file and every later one.
    fn write(&mut self, data: &[u8], mode: &mut WriteMode) -> Result<()> {
        if !self.direct {
            return self.write_buffered(data);
        }
        let whole = data.len() / ALIGN * ALIGN;
        match self.file.write_all(&data[..whole]) {
            Ok(()) => {
                self.written += whole as u64;
                self.flushed = self.written;
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(
                    "direct I/O refused for {}; writing through the page cache",
                    self.path.display()
                );
                *mode = WriteMode::Buffered;
                self.leave_direct_io()?;
                // write_all may have written a prefix before it was refused.
                let on_disk = self
                    .file
                    .metadata()
                    .map_err(|e| Error::io("reading", &self.path, e))?
                    .len();
                let done = (on_disk - self.written) as usize;
                self.written = on_disk;
                self.flushed = on_disk;
                return self.write_buffered(&data[done..]);
            }
            Err(e) => return Err(Error::io("writing", &self.path, e)),
        }
        if whole < data.len() {
            self.leave_direct_io()?;
            self.write_buffered(&data[whole..])?;
        }
        Ok(())
    }

    fn write_buffered(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.written += data.len() as u64;
        if self.written - self.flushed >= WRITEBACK_AFTER {
            self.start_writeback();
        }
        Ok(())
    }

    /// Closes the file, reporting what close reports: on NFS the data is
    /// written back there, and an error then would not show in a later
    /// fsync of the file opened anew.
    fn close(self) -> Result<()> {
        use std::os::fd::IntoRawFd;
        let fd = self.file.into_raw_fd();
        // SAFETY: `fd` was just taken out of the File, which no longer owns it.
        if unsafe { libc::close(fd) } != 0 {
            return Err(Error::io(
                "closing",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn leave_direct_io(&mut self) -> Result<()> {
        let fd = self.file.as_raw_fd();
        // SAFETY: fcntl on a descriptor this struct owns.
        let ok = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == 0
        };
        if !ok {
            return Err(Error::io(
                "changing the write mode of",
                &self.path,
                std::io::Error::last_os_error(),
            ));
        }
        self.direct = false;
        Ok(())
    }

    fn start_writeback(&mut self) {
        if self.written > self.flushed {
            // SAFETY: a plain syscall on an open descriptor; it only schedules I/O.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.flushed as libc::off64_t,
                    (self.written - self.flushed) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentChecksum;
    use crate::progress::Unit;

    fn entry(size: u64) -> FileEntry {
        FileEntry {
            path: PathBytes::from("x"),
            tablespace: None,
            size,
            checksum: ContentChecksum::of(b""),
            mode: 0o600,
            mtime: 0,
            part: 0,
            layers: Vec::new(),
            hashes: Vec::new(),
        }
    }

    fn content(size: usize, seed: u8) -> Vec<u8> {
        (0..size)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8)
            .collect()
    }

    /// Hands `data` over as the tar reader does: into the lent buffers.
    fn feed(sink: &mut DiskSink, mut data: &[u8]) {
        while !data.is_empty() {
            let buf = sink.buffer().unwrap();
            let n = buf.len().min(data.len());
            buf[..n].copy_from_slice(&data[..n]);
            sink.filled(n).unwrap();
            data = &data[n..];
        }
    }

    #[test]
    fn every_size_comes_back_exactly_in_either_mode() {
        let sizes = [
            0usize,
            100,
            4096,
            (1 << 20) - 1,
            1 << 20,
            (1 << 20) + 1,
            WRITE_SIZE - 1,
            WRITE_SIZE,
            WRITE_SIZE + ALIGN + 17,
            9 * (1 << 20) + 8192,
        ];
        for mode in [WriteMode::Direct, WriteMode::Buffered] {
            let tmp = tempfile::tempdir().unwrap();
            let progress = Progress::start("test", Unit::Bytes, 0);
            let mut sink = DiskSink::new(tmp.path().to_path_buf(), progress, mode);
            let mut written = Vec::new();
            for (i, size) in sizes.iter().enumerate() {
                let data = content(*size, i as u8);
                let name = PathBytes::from(format!("f{i}").as_str());
                sink.begin(&name, &entry(*size as u64)).unwrap();
                // Uneven pieces, as the tar reader hands them over.
                for piece in data.chunks(333_333 + i * 7919) {
                    feed(&mut sink, piece);
                }
                sink.end(&name, &entry(*size as u64)).unwrap();
                written.push((name, data));
            }
            sink.finish().unwrap();
            for (name, data) in written {
                let path = tmp.path().join(name.as_path());
                let back = std::fs::read(&path).unwrap();
                assert!(
                    back == data,
                    "{mode:?}: {name} of {} bytes differs",
                    data.len()
                );
                let meta = std::fs::metadata(&path).unwrap();
                assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            }
        }
    }

    #[test]
    fn a_write_error_reaches_the_caller_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let progress = Progress::start("test", Unit::Bytes, 0);
        let mut sink = DiskSink::new(tmp.path().join("missing"), progress, WriteMode::Direct);
        // The directory does not exist: the writer fails to create the
        // file, and the error comes back on a later call or at finish.
        let first = sink
            .begin(&PathBytes::from("f"), &entry(10 << 20))
            .and_then(|()| {
                for _ in 0..5 {
                    let buf = sink.buffer()?;
                    buf.fill(7);
                    let n = buf.len();
                    sink.filled(n)?;
                }
                Ok(())
            })
            .and_then(|()| sink.end(&PathBytes::from("f"), &entry(10 << 20)));
        let err = match first {
            Err(e) => e,
            Ok(()) => sink.finish().unwrap_err(),
        };
        assert!(err.to_string().contains("missing/f"), "{err}");
    }
}
