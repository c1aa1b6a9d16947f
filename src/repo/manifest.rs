//! The manifest of a base backup: everything needed to restore it and to
//! prove what it is. Written last; a backup without one is incomplete.

use crate::codec::Checksum;
use crate::pg::lsn::Lsn;
use crate::pg::version::Major;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub cluster: String,
    pub binding: String,
    #[serde(with = "super::identity::u64_as_string")]
    pub system_identifier: u64,
    pub major: Major,
    /// `version()` of the server, in full.
    pub server_version: String,
    pub server_version_num: u32,
    pub timeline: u32,
    pub start_lsn: Lsn,
    pub stop_lsn: Lsn,
    /// First and last WAL segment a restore needs to reach consistency.
    pub start_wal: String,
    pub stop_wal: String,
    pub started_at: DateTime<Utc>,
    pub stopped_at: DateTime<Utc>,
    pub wal_segment_size: u32,
    pub block_size: u32,
    pub data_checksums: bool,
    pub compression: String,
    pub host: String,
    pub pgdata: String,
    /// How the server was reached, and where that came from.
    pub reached: String,
    /// Owner of the data directory, restored when pgproof runs as root.
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub backup_label: String,
    pub tablespace_map: String,
    pub tablespaces: Vec<Tablespace>,
    /// Bytes read from the cluster, and bytes stored.
    pub size: u64,
    pub stored_size: u64,
    pub parts: Vec<Part>,
    pub directories: Vec<Directory>,
    pub files: Vec<FileEntry>,
    /// Pages that failed their data checksum when read (and when re-read).
    pub bad_pages: Vec<BadPage>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    pub location: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// Object name inside the backup's directory.
    pub name: String,
    /// `None` for the main data directory, else a tablespace's oid.
    pub tablespace: Option<u32>,
    pub size: u64,
    pub stored_size: u64,
    /// SHA-256 of the stored (compressed) object.
    pub stored_checksum: Checksum,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Directory {
    /// Relative to the data directory, or to the tablespace for tablespace parts.
    pub path: String,
    pub tablespace: Option<u32>,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub tablespace: Option<u32>,
    pub size: u64,
    pub checksum: Checksum,
    pub mode: u32,
    pub mtime: i64,
    /// Index into `parts`.
    pub part: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BadPage {
    pub path: String,
    pub block: u64,
}

impl Manifest {
    /// The first WAL segment a restore of this backup needs.
    pub fn start_segment(&self) -> crate::error::Result<crate::pg::walname::Segment> {
        crate::pg::walname::WalFileName::parse(&self.start_wal)
            .ok()
            .and_then(|n| n.segment())
            .ok_or_else(|| {
                crate::error::Error::corrupt(format!(
                    "manifest of backup {} names start WAL {:?}, which is not a segment",
                    self.name, self.start_wal
                ))
            })
    }
}
