//! Parallel compression of one stream into independent frames.
//!
//! A stream (a backup part) is cut into chunks of `FRAME_INPUT` bytes; a
//! pool of workers compresses each chunk into a self-contained zstd or lz4
//! frame, and the frames are written in order. Concatenated frames decode
//! as one stream with any zstd or lz4 reader (`zstd -dc` included), so a
//! reader does not know, and a 1 GiB relation segment keeps every core
//! busy instead of one.
//!
//! The writer lends its chunk buffer (`spare`/`commit`), so a file is read
//! straight into the memory the worker compresses from: one copy, from the
//! page cache. Buffers travel to the workers and back, and are reused.
//! Each writer has at most `workers + 1` chunks in flight: a writer whose
//! output is slower than its input waits (back-pressure), and memory stays
//! bounded whatever the size of the stream.

use super::Compression;
use super::compression::FrameCompressor;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

/// Uncompressed bytes per frame: large enough that the compression ratio
/// is the stream's (within half a percent on PostgreSQL data), small
/// enough that a part keeps every worker busy.
pub const FRAME_INPUT: usize = 1 << 20;

struct Job {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
    reply: Sender<Done>,
}

struct Done {
    seq: u64,
    input: Vec<u8>,
    output: Vec<u8>,
    result: std::io::Result<()>,
}

/// Compression threads shared by every stream of a command.
pub struct CompressPool {
    workers: usize,
    jobs: Option<SyncSender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CompressPool {
    /// `workers` threads compressing with `compression` (none for
    /// `Compression::None`: its chunks are written as they are).
    pub fn new(compression: Compression, workers: usize) -> Result<Arc<CompressPool>> {
        let workers = workers.max(1);
        let mut pool = CompressPool {
            workers,
            jobs: None,
            threads: Vec::new(),
        };
        if compression == Compression::None {
            return Ok(Arc::new(pool));
        }
        let (tx, rx) = sync_channel::<Job>(workers * 2);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            // Made here, so that a bad level is an error of the command, not of a thread.
            let compressor = compression.frame_compressor()?;
            let rx = rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("compress-{i}"))
                .spawn(move || work(compressor, rx))
                .map_err(|e| {
                    Error::new(
                        crate::error::ErrorKind::LocalIo,
                        "starting a compression thread",
                    )
                    .with_source(e)
                })?;
            pool.threads.push(thread);
        }
        pool.jobs = Some(tx);
        Ok(Arc::new(pool))
    }
}

impl Drop for CompressPool {
    fn drop(&mut self) {
        self.jobs = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn work(mut compressor: FrameCompressor, jobs: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let result = compressor.compress_into(&job.input, &mut job.output);
        // The writer may be gone (it failed or was cancelled): nothing to do.
        let _ = job.reply.send(Done {
            seq: job.seq,
            input: job.input,
            output: job.output,
            result,
        });
    }
}

/// Writes a stream to `inner` as independent frames compressed by `pool`.
/// Call `finish`: dropping the writer loses what was not yet written.
pub struct FrameWriter<W: Write> {
    inner: W,
    pool: Arc<CompressPool>,
    /// The chunk being filled: always `FRAME_INPUT` long, `filled` of it used.
    chunk: Vec<u8>,
    filled: usize,
    next_seq: u64,
    next_out: u64,
    in_flight: usize,
    done: BTreeMap<u64, Done>,
    replies: Receiver<Done>,
    reply_to: Sender<Done>,
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(pool: Arc<CompressPool>, inner: W) -> FrameWriter<W> {
        let (reply_to, replies) = channel();
        FrameWriter {
            inner,
            pool,
            chunk: vec![0; FRAME_INPUT],
            filled: 0,
            next_seq: 0,
            next_out: 0,
            in_flight: 0,
            done: BTreeMap::new(),
            replies,
            reply_to,
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
        }
    }

    /// Room for the stream's next bytes, to be read into directly and then
    /// `commit`ted: never empty.
    pub fn spare(&mut self) -> std::io::Result<&mut [u8]> {
        if self.filled == FRAME_INPUT {
            self.submit()?;
        }
        Ok(&mut self.chunk[self.filled..])
    }

    /// The first `n` bytes of the last `spare()` are the stream's next bytes.
    pub fn commit(&mut self, n: usize) -> std::io::Result<()> {
        assert!(
            self.filled + n <= FRAME_INPUT,
            "committed past the spare room"
        );
        self.filled += n;
        if self.filled == FRAME_INPUT {
            self.submit()?;
        }
        Ok(())
    }

    /// Writes the last frame and waits for every frame to be written.
    pub fn finish(mut self) -> std::io::Result<W> {
        if self.filled > 0 {
            self.submit()?;
        }
        while self.in_flight > 0 {
            self.wait_one()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Sends the filled chunk to a worker (or, uncompressed, straight out).
    fn submit(&mut self) -> std::io::Result<()> {
        if self.pool.jobs.is_none() {
            self.inner.write_all(&self.chunk[..self.filled])?;
            self.filled = 0;
            return Ok(());
        };
        while self.in_flight > self.pool.workers {
            self.wait_one()?;
        }
        let mut input = self
            .spare_inputs
            .pop()
            .unwrap_or_else(|| vec![0; FRAME_INPUT]);
        input.resize(FRAME_INPUT, 0);
        std::mem::swap(&mut input, &mut self.chunk);
        input.truncate(self.filled);
        self.filled = 0;
        let job = Job {
            seq: self.next_seq,
            input,
            output: self.spare_outputs.pop().unwrap_or_default(),
            reply: self.reply_to.clone(),
        };
        let pool = self.pool.clone();
        let jobs = pool.jobs.as_ref().expect("checked above");
        jobs.send(job)
            .map_err(|_| std::io::Error::other("the compression threads stopped"))?;
        self.next_seq += 1;
        self.in_flight += 1;
        // Write whatever is already compressed, without waiting.
        while let Ok(done) = self.replies.try_recv() {
            self.arrived(done)?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> std::io::Result<()> {
        let done = self
            .replies
            .recv()
            .map_err(|_| std::io::Error::other("the compression threads stopped"))?;
        self.arrived(done)
    }

    /// Keeps a compressed frame until the ones before it are written.
    fn arrived(&mut self, done: Done) -> std::io::Result<()> {
        self.in_flight -= 1;
        self.done.insert(done.seq, done);
        while let Some(done) = self.done.remove(&self.next_out) {
            done.result?;
            self.inner.write_all(&done.output)?;
            self.next_out += 1;
            self.spare_inputs.push(done.input);
            self.spare_outputs.push(done.output);
        }
        Ok(())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.spare()?;
        let n = room.len().min(buf.len());
        room[..n].copy_from_slice(&buf[..n]);
        self.commit(n)?;
        Ok(n)
    }

    /// Frames are written as they complete; a partial chunk waits for
    /// `finish` (flushing it early would only make smaller frames).
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 29) as u8 ^ (i / 4096) as u8)
            .collect()
    }

    #[test]
    fn frames_decode_as_the_stream_in_order() {
        // Several frames, a partial last one, and writes that straddle chunks.
        let data = sample(5 * FRAME_INPUT + 12_345);
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
        ] {
            let pool = CompressPool::new(c, 3).unwrap();
            let mut w = FrameWriter::new(pool, Vec::new());
            for piece in data.chunks(300_001) {
                w.write_all(piece).unwrap();
            }
            let out = w.finish().unwrap();
            let mut back = Vec::new();
            c.decoder(&out[..]).unwrap().read_to_end(&mut back).unwrap();
            assert!(back == data, "{c}: the stream came back different");
            if c != Compression::None {
                // One frame per chunk.
                let frames = match c {
                    Compression::Zstd { .. } => out
                        .windows(4)
                        .filter(|w| *w == [0x28, 0xb5, 0x2f, 0xfd])
                        .count(),
                    _ => out
                        .windows(4)
                        .filter(|w| *w == [0x04, 0x22, 0x4d, 0x18])
                        .count(),
                };
                assert!(frames >= 6, "{c}: {frames} frames");
            }
        }
    }

    #[test]
    fn spare_and_commit_read_in_place() {
        let data = sample(2 * FRAME_INPUT + 7);
        let c = Compression::Zstd { level: 1 };
        let pool = CompressPool::new(c, 2).unwrap();
        let mut w = FrameWriter::new(pool.clone(), Vec::new());
        let mut at = 0;
        while at < data.len() {
            let room = w.spare().unwrap();
            assert!(!room.is_empty());
            let n = room.len().min(data.len() - at).min(100_000);
            room[..n].copy_from_slice(&data[at..at + n]);
            w.commit(n).unwrap();
            at += n;
        }
        let out = w.finish().unwrap();
        let mut back = Vec::new();
        c.decoder(&out[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == data);
        // Streams share a pool one after the other.
        let mut again = FrameWriter::new(pool, Vec::new());
        again.write_all(b"x").unwrap();
        assert!(!again.finish().unwrap().is_empty());
    }

    /// Storage that fails partway (a full disk, a dropped connection).
    struct FailsAfter(usize);

    impl Write for FailsAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("no space left on device"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_output_fails_the_stream_without_hanging() {
        let data = sample(12 * FRAME_INPUT);
        let c = Compression::Zstd { level: 1 };
        let pool = CompressPool::new(c, 2).unwrap();
        let mut w = FrameWriter::new(pool.clone(), FailsAfter(10_000));
        // The error surfaces at a later write or at the end, never as success.
        let written = data
            .chunks(FRAME_INPUT / 3)
            .try_for_each(|p| w.write_all(p));
        let result = written.and_then(|()| w.finish().map(|_| ()));
        let err = result.expect_err("the output failed: so must the stream");
        assert!(err.to_string().contains("no space left"), "{err}");
        // The pool is still good for the next stream (another part).
        let mut next = FrameWriter::new(pool, Vec::new());
        next.write_all(&data[..1000]).unwrap();
        let out = next.finish().unwrap();
        let mut back = Vec::new();
        c.decoder(&out[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == data[..1000]);
    }

    #[test]
    fn a_writer_dropped_midway_leaves_the_pool_usable_and_droppable() {
        let data = sample(6 * FRAME_INPUT);
        let pool = CompressPool::new(Compression::Lz4, 2).unwrap();
        {
            let mut w = FrameWriter::new(pool.clone(), Vec::new());
            w.write_all(&data).unwrap();
            // Cancelled: dropped with frames in flight.
        }
        let mut w = FrameWriter::new(pool.clone(), Vec::new());
        w.write_all(&data[..5]).unwrap();
        assert!(!w.finish().unwrap().is_empty());
        // The last owner joins the threads: this returns.
        drop(pool);
    }

    #[test]
    fn an_empty_stream_is_empty() {
        let pool = CompressPool::new(Compression::Zstd { level: 1 }, 1).unwrap();
        let out = FrameWriter::new(pool, Vec::new()).finish().unwrap();
        assert!(out.is_empty());
    }
}
