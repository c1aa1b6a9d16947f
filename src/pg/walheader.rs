//! WAL page headers (`XLogPageHeaderData` and the long form that opens every
//! segment, `XLogLongPageHeaderData`, in `access/xlog_internal.h`).
//!
//! Layout, identical for 13 to 18 on every little-endian 64-bit platform:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | xlp_magic (one value per major) |
//! | 2 | 2 | xlp_info (flags; `XLP_LONG_HEADER` = 0x0002) |
//! | 4 | 4 | xlp_tli |
//! | 8 | 8 | xlp_pageaddr |
//! | 16 | 4 | xlp_rem_len |
//! | 24 | 8 | xlp_sysid (long header only) |
//! | 32 | 4 | xlp_seg_size |
//! | 36 | 4 | xlp_xlog_blcksz |

use crate::error::{Error, Result};
use crate::pg::lsn::Lsn;
use crate::pg::version::Major;

const XLP_LONG_HEADER: u16 = 0x0002;
const LONG_HEADER_LEN: usize = 40;

/// What the first page of a segment says about the cluster that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub major: Major,
    pub timeline: u32,
    pub page_address: Lsn,
    pub system_identifier: u64,
    pub segment_size: u32,
    pub block_size: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("bounds checked by caller"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("bounds checked by caller"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("bounds checked by caller"))
}

impl SegmentHeader {
    /// Decodes the long page header at the start of a segment.
    pub fn parse(first_page: &[u8]) -> Result<SegmentHeader> {
        if first_page.len() < LONG_HEADER_LEN {
            return Err(Error::corrupt(format!(
                "only {} bytes: too short to hold a WAL page header",
                first_page.len()
            )));
        }
        let magic = u16_at(first_page, 0);
        let major = Major::from_wal_page_magic(magic).ok_or_else(|| {
            Error::corrupt(format!(
                "page magic 0x{magic:04X} is not the WAL page magic of any PostgreSQL 13 to 18"
            ))
            .with_hint(
                "this is not a WAL segment, or it comes from an unsupported PostgreSQL version",
            )
        })?;
        let info = u16_at(first_page, 2);
        if info & XLP_LONG_HEADER == 0 {
            return Err(Error::corrupt(
                "the first page lacks the long header that opens every WAL segment",
            ));
        }
        let header = SegmentHeader {
            major,
            timeline: u32_at(first_page, 4),
            page_address: Lsn(u64_at(first_page, 8)),
            system_identifier: u64_at(first_page, 24),
            segment_size: u32_at(first_page, 32),
            block_size: u32_at(first_page, 36),
        };
        let seg = header.segment_size;
        if !seg.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg) {
            return Err(Error::corrupt(format!(
                "segment size {seg} in the page header is impossible"
            )));
        }
        let blk = header.block_size;
        if !blk.is_power_of_two() || !(1 << 10..=1 << 16).contains(&blk) {
            return Err(Error::corrupt(format!(
                "WAL block size {blk} in the page header is impossible"
            )));
        }
        Ok(header)
    }

    /// Checks every page of a complete segment: each one either carries a
    /// header with this segment's magic and its own address, or is all zeros
    /// (the unused tail after a WAL switch). Catches truncated, spliced and
    /// misnamed files before they reach the archive.
    pub fn check_pages(&self, segment: &[u8]) -> Result<()> {
        let expected_len = self.segment_size as usize;
        if segment.len() != expected_len {
            return Err(Error::corrupt(format!(
                "{} bytes, but its header says segments are {expected_len} bytes: the file is truncated or padded",
                segment.len()
            )));
        }
        self.check_page_range(segment, 0)
    }

    /// Checks the pages of `data`, which starts `offset` bytes into the
    /// segment (a multiple of the block size): lets a reader check a segment
    /// chunk by chunk as it streams. A trailing partial page is left to the
    /// caller's size check.
    pub fn check_page_range(&self, data: &[u8], offset: u64) -> Result<()> {
        let block = self.block_size as usize;
        let magic = self.major.wal_page_magic();
        let first_index = (offset / block as u64) as usize;
        for (i, page) in data.chunks_exact(block).enumerate() {
            let index = first_index + i;
            let address = self.page_address.0 + (index * block) as u64;
            if u16_at(page, 0) == magic && u64_at(page, 8) == address {
                continue;
            }
            if is_all_zero(page) {
                continue;
            }
            return Err(Error::corrupt(format!(
                "page {index} (at LSN {}) has no valid WAL page header",
                Lsn(address)
            )));
        }
        Ok(())
    }
}

fn is_all_zero(page: &[u8]) -> bool {
    let mut words = page.chunks_exact(8);
    words.all(|w| u64::from_ne_bytes(w.try_into().expect("8 bytes")) == 0)
        && words.remainder().iter().all(|&b| b == 0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a minimal long page header, as the test harness of pgBackRest does.
    pub(crate) fn long_header(major: Major, tli: u32, addr: u64, sysid: u64, seg: u32) -> Vec<u8> {
        let mut page = vec![0u8; 8192];
        page[0..2].copy_from_slice(&major.wal_page_magic().to_le_bytes());
        page[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
        page[4..8].copy_from_slice(&tli.to_le_bytes());
        page[8..16].copy_from_slice(&addr.to_le_bytes());
        page[24..32].copy_from_slice(&sysid.to_le_bytes());
        page[32..36].copy_from_slice(&seg.to_le_bytes());
        page[36..40].copy_from_slice(&8192u32.to_le_bytes());
        page
    }

    #[test]
    fn decodes_a_synthetic_header() {
        let m = Major::new(16).unwrap();
        let h = SegmentHeader::parse(&long_header(m, 3, 0x1_0000_0000, 42, 16 << 20)).unwrap();
        assert_eq!(h.major, m);
        assert_eq!(h.timeline, 3);
        assert_eq!(h.page_address.to_string(), "1/0");
        assert_eq!(h.system_identifier, 42);
    }

    #[test]
    fn refuses_non_wal() {
        assert!(SegmentHeader::parse(b"short").is_err());
        let text = b"this is definitely not a WAL segment, just some text padding".repeat(4);
        let err = SegmentHeader::parse(&text).unwrap_err();
        assert!(err.to_string().contains("page magic"), "{err}");
        let mut short_header = long_header(Major::new(15).unwrap(), 1, 0, 1, 16 << 20);
        short_header[2] = 0;
        assert!(SegmentHeader::parse(&short_header).is_err());
    }

    #[test]
    fn page_check_finds_truncation_and_foreign_pages() {
        let m = Major::new(15).unwrap();
        let seg_size = 1 << 20;
        let mut seg = vec![0u8; seg_size];
        seg[..8192].copy_from_slice(&long_header(m, 1, 0x300_0000, 7, seg_size as u32));
        for i in 1..4 {
            let at = i * 8192;
            seg[at..at + 2].copy_from_slice(&m.wal_page_magic().to_le_bytes());
            seg[at + 8..at + 16].copy_from_slice(&(0x300_0000u64 + at as u64).to_le_bytes());
        }
        let h = SegmentHeader::parse(&seg).unwrap();
        h.check_pages(&seg).unwrap();
        assert!(
            h.check_pages(&seg[..seg_size / 2])
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
        seg[2 * 8192 + 8] ^= 1;
        assert!(
            h.check_pages(&seg)
                .unwrap_err()
                .to_string()
                .contains("page 2")
        );
    }

    #[test]
    fn real_first_pages_of_every_major_decode() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg");
        for major in Major::ALL {
            for variant in ["", "-csum32"] {
                let dir = base.join(format!("{major}{variant}"));
                let page = std::fs::read(dir.join("wal_first_page.bin")).unwrap();
                let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
                let want = |key: &str| {
                    expected
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{key}=")))
                        .unwrap()
                        .to_string()
                };
                let h = SegmentHeader::parse(&page).unwrap();
                assert_eq!(h.major, major);
                assert_eq!(h.system_identifier.to_string(), want("system_identifier"));
                assert_eq!(h.segment_size.to_string(), want("wal_xlp_seg_size"));
                assert_eq!(h.page_address.to_string(), want("wal_xlp_pageaddr"));
                assert_eq!(h.timeline.to_string(), want("wal_xlp_tli"));
            }
        }
    }
}
