//! Compression of stored objects: zstd (the default), lz4 (frame format) or none.

use crate::error::{Error, Result};
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd { level: i32 },
}

/// Level 1: on pgbench data and on random rows, level 3 stored the same
/// size (within 0.4%) and took 28–35% longer (docs/BENCHMARKS.md, issue 12).
pub const DEFAULT_ZSTD_LEVEL: i32 = 1;

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd {
            level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl Compression {
    /// The suffix stored objects carry, so that a reader knows how to decode
    /// them whatever the writer's settings were.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "raw",
            Compression::Lz4 => "lz4",
            Compression::Zstd { .. } => "zst",
        }
    }

    /// The decoder for a stored object's suffix (the level does not matter to a reader).
    pub fn from_extension(ext: &str) -> Option<Compression> {
        match ext {
            "raw" => Some(Compression::None),
            "lz4" => Some(Compression::Lz4),
            "zst" => Some(Compression::Zstd {
                level: DEFAULT_ZSTD_LEVEL,
            }),
            _ => None,
        }
    }

    /// Compresses a whole buffer (WAL segments are bounded by the segment size).
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.frame_compressor()?
            .compress_into(data, &mut out)
            .map_err(|e| {
                Error::new(crate::error::ErrorKind::LocalIo, "compressing").with_source(e)
            })?;
        Ok(out)
    }

    /// A compressor for many independent frames that reuses its context
    /// (zstd's is worth keeping: creating one costs as much as compressing
    /// a small chunk).
    pub fn frame_compressor(self) -> Result<FrameCompressor> {
        Ok(match self {
            Compression::Zstd { level } => FrameCompressor::Zstd(
                zstd::bulk::Compressor::new(level)
                    .map_err(|e| Error::config(format!("zstd level {level}")).with_source(e))?,
            ),
            other => FrameCompressor::Other(other),
        })
    }

    pub fn encoder<W: Write>(self, inner: W) -> Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::None(inner),
            Compression::Lz4 => Encoder::Lz4(lz4_flex::frame::FrameEncoder::new(inner)),
            Compression::Zstd { level } => Encoder::Zstd(
                zstd::stream::write::Encoder::new(inner, level)
                    .map_err(|e| Error::config(format!("zstd level {level}")).with_source(e))?,
            ),
        })
    }

    /// A streaming decoder; corrupt input surfaces as an `InvalidData` read error.
    pub fn decoder<'a, R: Read + Send + 'a>(self, inner: R) -> Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(inner),
            Compression::Lz4 => {
                Box::new(Lz4Frames(Some(lz4_flex::frame::FrameDecoder::new(inner))))
            }
            Compression::Zstd { .. } => Box::new(
                zstd::stream::read::Decoder::new(inner)
                    .map_err(|e| Error::corrupt("starting zstd decoder").with_source(e))?,
            ),
        })
    }
}

/// Reads concatenated lz4 frames as one stream (lz4_flex's decoder stops at
/// the end of the first; it reads exactly to that end, so the next frame
/// starts where it stopped).
struct Lz4Frames<R: Read>(Option<lz4_flex::frame::FrameDecoder<R>>);

impl<R: Read> Read for Lz4Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(decoder) = self.0.as_mut() else {
            return Ok(0);
        };
        let n = decoder.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        let inner = self.0.take().expect("checked above").into_inner();
        let mut next = lz4_flex::frame::FrameDecoder::new(inner);
        let n = next.read(buf)?;
        if n > 0 {
            self.0 = Some(next);
        }
        Ok(n)
    }
}

/// Compresses chunks into independent, self-contained frames.
pub enum FrameCompressor {
    Zstd(zstd::bulk::Compressor<'static>),
    Other(Compression),
}

impl FrameCompressor {
    /// Compresses `chunk` into `out` (cleared first), reusing its memory.
    pub fn compress_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        match self {
            FrameCompressor::Zstd(c) => {
                out.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
                c.compress_to_buffer(chunk, out)?;
            }
            FrameCompressor::Other(Compression::None) => out.extend_from_slice(chunk),
            FrameCompressor::Other(c) => {
                let mut encoder = c
                    .encoder(&mut *out)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                encoder.write_all(chunk)?;
                encoder
                    .finish()
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// A compressing writer that must be finished to flush its last frame.
pub enum Encoder<W: Write> {
    None(W),
    Lz4(lz4_flex::frame::FrameEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> Result<W> {
        let io = |e: std::io::Error| {
            Error::new(crate::error::ErrorKind::LocalIo, "finishing compression").with_source(e)
        };
        match self {
            Encoder::None(mut w) => {
                w.flush().map_err(io)?;
                Ok(w)
            }
            Encoder::Lz4(e) => e.finish().map_err(|e| io(std::io::Error::other(e))),
            Encoder::Zstd(e) => e.finish().map_err(io),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Lz4(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Lz4(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;

    /// `zstd`, `zstd:LEVEL` (1 to 19), `lz4` or `none`.
    fn from_str(s: &str) -> Result<Compression> {
        let bad = || {
            Error::config(format!("unknown compression {s:?}"))
                .with_hint("use zstd, zstd:LEVEL (1 to 19), lz4 or none")
        };
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (n, Some(l.parse::<i32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match (name.trim().to_ascii_lowercase().as_str(), level) {
            ("zstd", None) => Ok(Compression::default()),
            ("zstd", Some(l)) if (1..=19).contains(&l) => Ok(Compression::Zstd { level: l }),
            ("lz4", None) => Ok(Compression::Lz4),
            ("none", None) => Ok(Compression::None),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Lz4 => f.write_str("lz4"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
            Compression::default(),
        ] {
            let packed = c.compress(&data).unwrap();
            let mut out = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "{c}");
            assert_eq!(
                Compression::from_extension(c.extension()).map(|d| d.extension()),
                Some(c.extension())
            );
        }
    }

    #[test]
    fn concatenated_frames_decode_as_one_stream() {
        let data = sample();
        let (a, b) = data.split_at(data.len() / 3);
        for c in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd { level: 1 },
        ] {
            let mut fc = c.frame_compressor().unwrap();
            let (mut packed, mut second) = (Vec::new(), Vec::new());
            fc.compress_into(a, &mut packed).unwrap();
            fc.compress_into(b, &mut second).unwrap();
            packed.extend(second);
            let mut out = Vec::new();
            c.decoder(&packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data, "{c}");
        }
    }

    #[test]
    fn corrupt_input_fails_to_decode() {
        let data = sample();
        for c in [Compression::Lz4, Compression::default()] {
            let mut packed = c.compress(&data).unwrap();
            let mid = packed.len() / 2;
            packed[mid] ^= 0x55;
            packed.truncate(packed.len() - 3);
            let mut out = Vec::new();
            let result = c.decoder(&packed[..]).and_then(|mut d| {
                d.read_to_end(&mut out)
                    .map_err(|e| Error::corrupt("decode").with_source(e))
            });
            assert!(result.is_err() || out != data, "{c} accepted corrupt input");
        }
    }

    #[test]
    fn parses_settings() {
        assert_eq!(
            "zstd".parse::<Compression>().unwrap(),
            Compression::Zstd { level: 1 }
        );
        assert_eq!(
            "zstd:1".parse::<Compression>().unwrap(),
            Compression::Zstd { level: 1 }
        );
        assert_eq!("LZ4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert_eq!("none".parse::<Compression>().unwrap(), Compression::None);
        for bad in ["gzip", "zstd:0", "zstd:20", "lz4:3", "zstd:x"] {
            let err = bad.parse::<Compression>().unwrap_err();
            assert!(err.hint().unwrap().contains("lz4"), "{bad}");
        }
    }
}
