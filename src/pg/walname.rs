//! Names of the files PostgreSQL archives: WAL segments, partial segments,
//! timeline history files and backup history files.

use crate::error::{Error, Result};
use crate::pg::lsn::Lsn;
use std::fmt;

/// One WAL segment on one timeline, as its 24-hex-digit name spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    pub timeline: u32,
    /// The high 32 bits of the segment's start LSN.
    pub log: u32,
    /// The segment's index within `log`; its range depends on the segment size.
    pub seg: u32,
}

impl Segment {
    pub fn from_number(timeline: u32, segno: u64, segment_size: u64) -> Segment {
        let per_log = segments_per_log(segment_size);
        Segment {
            timeline,
            log: (segno / per_log) as u32,
            seg: (segno % per_log) as u32,
        }
    }

    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment::from_number(timeline, lsn.segment_number(segment_size), segment_size)
    }

    pub fn number(self, segment_size: u64) -> u64 {
        u64::from(self.log) * segments_per_log(segment_size) + u64::from(self.seg)
    }

    pub fn start_lsn(self, segment_size: u64) -> Lsn {
        Lsn(self.number(segment_size) * segment_size)
    }

    pub fn next(self, segment_size: u64) -> Segment {
        Segment::from_number(self.timeline, self.number(segment_size) + 1, segment_size)
    }

    /// Whether `seg` is in range for this segment size (a name like
    /// `...000000FF` is impossible with 64 MiB segments).
    pub fn fits(self, segment_size: u64) -> bool {
        u64::from(self.seg) < segments_per_log(segment_size)
    }

    /// `TTTTTTTTLLLLLLLL`: the timeline and log parts, which group segments
    /// into directories of at most 256 entries (16 MiB segments).
    pub fn directory(self) -> String {
        format!("{:08X}{:08X}", self.timeline, self.log)
    }

    fn parse(hex: &str) -> Option<Segment> {
        if hex.len() != 24 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let part = |i: usize| u32::from_str_radix(&hex[i..i + 8], 16).ok();
        Some(Segment {
            timeline: part(0)?,
            log: part(8)?,
            seg: part(16)?,
        })
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

fn segments_per_log(segment_size: u64) -> u64 {
    0x1_0000_0000 / segment_size
}

/// Any file name `archive_command` can be handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFileName {
    Segment(Segment),
    /// The last, incomplete segment of a timeline left at promotion.
    Partial(Segment),
    /// `TTTTTTTT.history`: how a timeline branched from its parents.
    History(u32),
    /// `<segment>.<offset>.backup`: written by `pg_backup_stop`.
    BackupHistory(Segment, u32),
}

impl WalFileName {
    pub fn parse(name: &str) -> Result<WalFileName> {
        Self::try_parse(name).ok_or_else(|| {
            Error::config(format!("{name:?} is not the name of a WAL file")).with_hint(
                "expected a WAL segment (24 hex digits), a .partial segment, a TTTTTTTT.history file or a .backup file",
            )
        })
    }

    fn try_parse(name: &str) -> Option<WalFileName> {
        if let Some(seg) = Segment::parse(name) {
            return Some(WalFileName::Segment(seg));
        }
        if let Some(stem) = name.strip_suffix(".partial") {
            return Segment::parse(stem).map(WalFileName::Partial);
        }
        if let Some(stem) = name.strip_suffix(".history") {
            if stem.len() == 8 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
                return u32::from_str_radix(stem, 16).ok().map(WalFileName::History);
            }
            return None;
        }
        if let Some(stem) = name.strip_suffix(".backup") {
            let (seg, offset) = stem.split_once('.')?;
            if offset.len() != 8 || !offset.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            return Some(WalFileName::BackupHistory(
                Segment::parse(seg)?,
                u32::from_str_radix(offset, 16).ok()?,
            ));
        }
        None
    }

    /// The segment this file belongs to, if any (history files belong to none).
    pub fn segment(self) -> Option<Segment> {
        match self {
            WalFileName::Segment(s)
            | WalFileName::Partial(s)
            | WalFileName::BackupHistory(s, _) => Some(s),
            WalFileName::History(_) => None,
        }
    }

    pub fn timeline(self) -> u32 {
        match self {
            WalFileName::History(tli) => tli,
            other => other.segment().map(|s| s.timeline).unwrap_or_default(),
        }
    }

    /// Segment-shaped files (full or partial) carry WAL page headers that can be checked.
    pub fn has_page_headers(self) -> bool {
        matches!(self, WalFileName::Segment(_) | WalFileName::Partial(_))
    }
}

impl fmt::Display for WalFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalFileName::Segment(s) => write!(f, "{s}"),
            WalFileName::Partial(s) => write!(f, "{s}.partial"),
            WalFileName::History(tli) => write!(f, "{tli:08X}.history"),
            WalFileName::BackupHistory(s, offset) => write!(f, "{s}.{offset:08X}.backup"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB16: u64 = 16 << 20;

    #[test]
    fn every_kind_round_trips() {
        for name in [
            "000000010000000000000001",
            "00000002000000A3000000FF",
            "000000010000000000000005.partial",
            "0000000A.history",
            "000000010000000000000002.00000028.backup",
        ] {
            assert_eq!(WalFileName::parse(name).unwrap().to_string(), name);
        }
    }

    #[test]
    fn rejects_other_files() {
        for name in [
            "",
            "00000001000000000000001",
            "0000000100000000000000010",
            "00000001000000000000000g",
            "RECOVERYXLOG",
            "0000001.history",
            "000000010000000000000002.backup",
            "000000010000000000000002.0028.backup",
            "000000010000000000000002.ready",
            "archive_status",
        ] {
            assert!(WalFileName::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn numbering_depends_on_segment_size() {
        let s = match WalFileName::parse("0000000100000001000000FF").unwrap() {
            WalFileName::Segment(s) => s,
            _ => unreachable!(),
        };
        assert_eq!(s.number(MIB16), 0x1FF);
        assert_eq!(s.next(MIB16).to_string(), "000000010000000200000000");
        assert_eq!(s.start_lsn(MIB16).to_string(), "1/FF000000");
        assert!(s.fits(MIB16));
        assert!(!s.fits(64 << 20));
        let lsn: Lsn = "2/3000028".parse().unwrap();
        assert_eq!(
            Segment::containing(3, lsn, MIB16).to_string(),
            "000000030000000200000003"
        );
        assert_eq!(
            Segment::containing(1, lsn, 64 << 20).to_string(),
            "000000010000000200000000"
        );
    }

    #[test]
    fn ordering_follows_the_archive() {
        let mut names: Vec<WalFileName> = [
            "000000010000000000000003",
            "000000010000000000000002",
            "000000020000000000000001",
        ]
        .iter()
        .map(|n| WalFileName::parse(n).unwrap())
        .collect();
        names.sort();
        assert_eq!(names[0].to_string(), "000000010000000000000002");
        assert_eq!(names[2].timeline(), 2);
    }
}
