//! `global/pg_control`: the cluster's identity and state as the server last
//! wrote them (`ControlFileData` in `catalog/pg_control.h`).
//!
//! Offsets (little-endian, 64-bit), checked against real files of every major
//! in `tests/fixtures/pg`:
//!
//! | field | 13–17 | 18 |
//! |---|---|---|
//! | system_identifier u64 | 0 | 0 |
//! | pg_control_version u32 | 8 | 8 |
//! | catalog_version_no u32 | 12 | 12 |
//! | state u32 | 16 | 16 |
//! | checkPoint u64 | 32 | 32 |
//! | checkPointCopy.redo u64 | 40 | 40 |
//! | checkPointCopy.ThisTimeLineID u32 | 48 | 48 |
//! | minRecoveryPoint u64 | 136 | 136 |
//! | backupStartPoint u64 | 152 | 152 |
//! | backupEndPoint u64 | 160 | 160 |
//! | wal_level i32 | 172 | 172 |
//! | blcksz u32 | 216 | 216 |
//! | xlog_blcksz u32 | 224 | 224 |
//! | xlog_seg_size u32 | 228 | 228 |
//! | data_checksum_version u32 | 252 | 252 |
//! | crc (CRC-32C of all bytes before it) | 288 | 292 |
//!
//! 18 inserted `default_char_signedness` before the authentication nonce,
//! which moves the CRC by four bytes.

use crate::error::{Error, Result};
use crate::pg::lsn::Lsn;
use crate::pg::version::Major;
use std::path::Path;

/// `DBState`, identical in 13 to 18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterState {
    Starting,
    ShutDown,
    ShutDownInRecovery,
    ShuttingDown,
    InCrashRecovery,
    InArchiveRecovery,
    InProduction,
}

impl ClusterState {
    fn from_raw(raw: u32) -> Option<ClusterState> {
        use ClusterState::*;
        Some(match raw {
            0 => Starting,
            1 => ShutDown,
            2 => ShutDownInRecovery,
            3 => ShuttingDown,
            4 => InCrashRecovery,
            5 => InArchiveRecovery,
            6 => InProduction,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ClusterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use ClusterState::*;
        f.write_str(match self {
            Starting => "starting up",
            ShutDown => "shut down",
            ShutDownInRecovery => "shut down in recovery",
            ShuttingDown => "shutting down",
            InCrashRecovery => "in crash recovery",
            InArchiveRecovery => "in archive recovery",
            InProduction => "in production",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlFile {
    pub major: Major,
    pub system_identifier: u64,
    pub catalog_version: u32,
    pub state: ClusterState,
    pub checkpoint: Lsn,
    pub checkpoint_redo: Lsn,
    pub timeline: u32,
    pub min_recovery_point: Lsn,
    pub backup_start_point: Lsn,
    pub backup_end_point: Lsn,
    pub block_size: u32,
    pub wal_block_size: u32,
    pub wal_segment_size: u32,
    /// 0 when data checksums are off, else the checksum algorithm version.
    pub data_checksum_version: u32,
}

const CONTROL_FILE_MIN_LEN: usize = 296;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("length checked"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("length checked"))
}

fn crc_offset(major: Major) -> usize {
    if major.number() >= 18 { 292 } else { 288 }
}

/// Catalog versions of each release; a control version shared by several
/// majors (1300 for 13 to 16) is told apart by these when `PG_VERSION` is not at hand.
const FIRST_CATALOG_VERSION: &[(u32, u32)] = &[
    (13, 202007201),
    (14, 202107181),
    (15, 202209061),
    (16, 202307071),
    (17, 202406281),
    (18, 202506291),
];

impl ControlFile {
    /// Decodes pg_control. `major` comes from the data directory's
    /// `PG_VERSION` when there is one; pg_control must agree with it.
    pub fn parse(bytes: &[u8], major: Option<Major>) -> Result<ControlFile> {
        if bytes.len() < CONTROL_FILE_MIN_LEN {
            return Err(Error::corrupt(format!(
                "pg_control is {} bytes, too short",
                bytes.len()
            )));
        }
        let control_version = u32_at(bytes, 8);
        let catalog_version = u32_at(bytes, 12);
        let candidates = Major::with_control_version(control_version);
        if candidates.is_empty() {
            return Err(Error::corrupt(format!(
                "pg_control version {control_version} belongs to no PostgreSQL 13 to 18"
            ))
            .with_hint("pgproof supports PostgreSQL 13 to 18"));
        }
        let major = match major {
            Some(m) if candidates.contains(&m) => m,
            Some(m) => {
                return Err(Error::identity(format!(
                    "PG_VERSION says {m} but pg_control version {control_version} is not PostgreSQL {m}'s"
                )));
            }
            None => infer_major(&candidates, catalog_version),
        };
        let offset = crc_offset(major);
        let stored = u32_at(bytes, offset);
        let computed = crc32c::crc32c(&bytes[..offset]);
        if stored != computed {
            return Err(Error::corrupt(format!(
                "pg_control checksum mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
            ))
            .with_hint("the control file is damaged or belongs to another PostgreSQL version"));
        }
        let raw_state = u32_at(bytes, 16);
        let state = ClusterState::from_raw(raw_state).ok_or_else(|| {
            Error::corrupt(format!(
                "pg_control holds unknown cluster state {raw_state}"
            ))
        })?;
        Ok(ControlFile {
            major,
            system_identifier: u64_at(bytes, 0),
            catalog_version,
            state,
            checkpoint: Lsn(u64_at(bytes, 32)),
            checkpoint_redo: Lsn(u64_at(bytes, 40)),
            timeline: u32_at(bytes, 48),
            min_recovery_point: Lsn(u64_at(bytes, 136)),
            backup_start_point: Lsn(u64_at(bytes, 152)),
            backup_end_point: Lsn(u64_at(bytes, 160)),
            block_size: u32_at(bytes, 216),
            wal_block_size: u32_at(bytes, 224),
            wal_segment_size: u32_at(bytes, 228),
            data_checksum_version: u32_at(bytes, 252),
        })
    }

    /// Reads `PGDATA/global/pg_control`, using `PGDATA/PG_VERSION` to pick the layout.
    pub fn read(pgdata: &Path) -> Result<ControlFile> {
        let version_path = pgdata.join("PG_VERSION");
        let version_text = std::fs::read_to_string(&version_path).map_err(|e| {
            Error::io("reading", &version_path, e).with_hint(format!(
                "{} does not look like a PostgreSQL data directory",
                pgdata.display()
            ))
        })?;
        let major = Major::from_pg_version_file(&version_text)?;
        let control_path = pgdata.join("global").join("pg_control");
        let bytes =
            std::fs::read(&control_path).map_err(|e| Error::io("reading", &control_path, e))?;
        ControlFile::parse(&bytes, Some(major)).map_err(|e| e.context(control_path.display()))
    }

    pub fn data_checksums(&self) -> bool {
        self.data_checksum_version != 0
    }
}

fn infer_major(candidates: &[Major], catalog_version: u32) -> Major {
    let mut best = candidates[0];
    for &(major, first) in FIRST_CATALOG_VERSION {
        if catalog_version >= first
            && let Some(&m) = candidates.iter().find(|m| m.number() == major)
        {
            best = m;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn fixture(dir: &str) -> (Vec<u8>, HashMap<String, String>) {
        let base = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pg")
            .join(dir);
        let bytes = std::fs::read(base.join("pg_control")).unwrap();
        let expected = std::fs::read_to_string(base.join("expected.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (bytes, expected)
    }

    #[test]
    fn real_control_files_of_every_major_decode() {
        for major in Major::ALL {
            for variant in ["", "-csum32"] {
                let dir = format!("{major}{variant}");
                let (bytes, want) = fixture(&dir);
                for hint in [Some(major), None] {
                    let c =
                        ControlFile::parse(&bytes, hint).unwrap_or_else(|e| panic!("{dir}: {e}"));
                    assert_eq!(c.major, major, "{dir}");
                    assert_eq!(
                        c.system_identifier.to_string(),
                        want["system_identifier"],
                        "{dir}"
                    );
                    assert_eq!(
                        c.wal_segment_size.to_string(),
                        want["xlog_seg_size"],
                        "{dir}"
                    );
                    assert_eq!(c.block_size.to_string(), want["blcksz"], "{dir}");
                    assert_eq!(
                        c.data_checksum_version.to_string(),
                        want["data_checksum_version"],
                        "{dir}"
                    );
                    assert_eq!(c.timeline.to_string(), want["timeline"], "{dir}");
                    assert_eq!(c.checkpoint.to_string(), want["checkpoint_lsn"], "{dir}");
                    assert_eq!(c.state, ClusterState::ShutDown, "{dir}");
                }
            }
        }
    }

    #[test]
    fn damaged_control_file_is_refused() {
        let (mut bytes, _) = fixture("16");
        bytes[0] ^= 0xFF;
        let err = ControlFile::parse(&bytes, None).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        assert!(ControlFile::parse(&bytes[..100], None).is_err());
    }

    #[test]
    fn version_disagreement_is_an_identity_error() {
        let (bytes, _) = fixture("17");
        let err = ControlFile::parse(&bytes, Some(Major::new(15).unwrap())).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Identity);
    }
}
