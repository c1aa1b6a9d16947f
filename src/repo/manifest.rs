//! The manifest of a base backup: everything needed to restore it and to
//! prove what it is. Written last; a backup without one is incomplete.

use super::path_bytes::{PathBytes, location_field, path_field};
use crate::codec::{Checksum, ContentChecksum};
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
    /// Empty for an offline backup.
    pub backup_label: String,
    pub tablespace_map: String,
    /// Taken of a cleanly shut down cluster: consistent at pg_control's
    /// checkpoint with the WAL it carries in pg_wal, no backup_label, no
    /// archived WAL needed (format 6; older manifests are online).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline: bool,
    /// Taken on a streaming standby (`BACKUP FROM: standby` in its label):
    /// recovery ends the backup at the restored pg_control's minimum
    /// recovery point, and the stop segment was archived by the primary.
    /// Absent means false; readers that predate it restore it alike.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_standby: bool,
    pub tablespaces: Vec<Tablespace>,
    /// Bytes read from the cluster, and bytes stored.
    pub size: u64,
    pub stored_size: u64,
    pub parts: Vec<Part>,
    pub directories: Vec<Directory>,
    pub files: Vec<FileEntry>,
    /// Pages that failed their data checksum when read (and when re-read).
    pub bad_pages: Vec<BadPage>,
    /// Full or incremental (format 5; older manifests are full).
    #[serde(rename = "type", default)]
    pub kind: BackupKind,
    /// The backup an incremental is based on, pinned by its manifest's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// The seed of the block hashes (format 5): drawn at random for a full
    /// backup, inherited by the incrementals of its chain. Secret to the
    /// repository, so that a database user cannot craft a changed block
    /// that hashes as the old one did.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_seed")]
    pub block_hash_seed: Option<u64>,
    /// SHA-256 of this manifest as stored, set when it is read: what a
    /// child pins. Not part of the document.
    #[serde(skip)]
    pub document_checksum: Option<Checksum>,
}

/// A seed as 16 hex digits: JSON numbers past 2^53 are not safe in every reader.
mod hex_seed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seed: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match seed {
            Some(v) => s.serialize_str(&format!("{v:016x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(t) if t.len() == 16 => u64::from_str_radix(&t, 16)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(t) => Err(serde::de::Error::custom(format!("{t:?} is not a seed"))),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    #[default]
    Full,
    Incremental,
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ParentRef {
    pub name: String,
    /// SHA-256 of the parent's manifest as stored: a parent replaced by
    /// another document of the same name is not this backup's parent.
    pub manifest_sha256: Checksum,
    pub stop_lsn: Lsn,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    #[serde(flatten, with = "location_field")]
    pub location: PathBytes,
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
    /// The block hashes of the part's relation files (format 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashes: Option<HashObject>,
}

/// An uncompressed object of XXH3-64 block hashes beside a part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HashObject {
    pub name: String,
    pub size: u64,
    /// SHA-256 of the object.
    pub stored_checksum: Checksum,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Directory {
    /// Relative to the data directory, or to the tablespace for tablespace parts.
    #[serde(flatten, with = "path_field")]
    pub path: PathBytes,
    pub tablespace: Option<u32>,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    #[serde(flatten, with = "path_field")]
    pub path: PathBytes,
    pub tablespace: Option<u32>,
    pub size: u64,
    /// SHA-256 (formats 1 and 2) or XXH3-128 (format 3) of the content.
    pub checksum: ContentChecksum,
    pub mode: u32,
    pub mtime: i64,
    /// Index into `parts`: where the file is stored whole when it has no
    /// `layers`. Ignored when it has.
    pub part: usize,
    /// Where the content lives, newest first, ending with the one whole
    /// copy; each later layer holds the blocks that changed (format 5,
    /// incremental backups). Empty: stored whole in this backup's `part`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Layer>,
    /// The XXH3-64 of each block as this backup holds it, for the next
    /// incremental to compare with: newest first, ending with a full
    /// vector; each earlier record overlays the blocks it names. Only for
    /// relation files of at least `MIN_BLOCKS` blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<HashRecord>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    /// The file's content, in a regular tar entry named by its path.
    Whole,
    /// Changed blocks, in entries of type `7` named `INCREMENTAL.<name>`.
    Blocks,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    /// The backup holding the entry.
    pub backup: String,
    /// Index into that backup's `parts`.
    pub part: usize,
    pub kind: LayerKind,
    /// Bytes of the entries' content together.
    pub size: u64,
    /// XXH3-128 of the entries' content together.
    pub checksum: ContentChecksum,
    /// Blocks entries: how many entries, and how many blocks they hold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entries: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blocks: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HashRecord {
    pub backup: String,
    /// Index into that backup's `parts`, whose `hashes` object holds it.
    pub part: usize,
    /// Byte offset in the object.
    pub offset: u64,
    pub count: u64,
    /// `false`: `count` u64 hashes of blocks 0.. `true`: `count` u32 block
    /// numbers, then their `count` u64 hashes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
}

impl FileEntry {
    /// The file's layers, newest first, with the implicit whole copy of a
    /// file that has none spelled out.
    pub fn layers_in(&self, backup: &str) -> Vec<Layer> {
        if !self.layers.is_empty() {
            return self.layers.clone();
        }
        vec![Layer {
            backup: backup.to_string(),
            part: self.part,
            kind: LayerKind::Whole,
            size: self.size,
            checksum: self.checksum,
            entries: 0,
            blocks: 0,
        }]
    }

    /// Stored as one whole copy whose content is the file's: no blocks to
    /// apply, no length to set.
    pub fn is_plain(&self) -> bool {
        match &self.layers[..] {
            [] => true,
            [only] => {
                only.kind == LayerKind::Whole
                    && only.size == self.size
                    && only.checksum == self.checksum
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BadPage {
    #[serde(flatten, with = "path_field")]
    pub path: PathBytes,
    pub block: u64,
}

impl Manifest {
    /// Refuses a manifest naming a directory or file that would land
    /// outside the directory it is restored into (absolute, `..`, empty or
    /// `.` components): a damaged or crafted manifest must not make restore
    /// create or write anything elsewhere.
    pub fn check_paths(&self) -> crate::error::Result<()> {
        let directories = self.directories.iter().map(|d| ("directory", &d.path));
        let files = self.files.iter().map(|f| ("file", &f.path));
        for (what, path) in directories.chain(files) {
            if let Some(why) = path.unsafe_below_root() {
                return Err(crate::error::Error::corrupt(format!(
                    "manifest of backup {} lists the {what} {path:?}, which {why}",
                    self.name
                ))
                .with_hint(
                    "the manifest was damaged or crafted; nothing was written from it; restore another backup",
                ));
            }
        }
        Ok(())
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::document;

    /// A manifest as format 1 wrote it: every path a JSON string.
    fn format1() -> serde_json::Value {
        let sum = Checksum::of(b"x").to_hex();
        serde_json::json!({
            "format": 1, "name": "20261125T182907Z", "cluster": "main", "binding": "15-1",
            "system_identifier": "1", "major": 15, "server_version": "PostgreSQL 15",
            "server_version_num": 150000, "timeline": 1, "start_lsn": "0/1000028",
            "stop_lsn": "0/1000100", "start_wal": "000000010000000000000001",
            "stop_wal": "000000010000000000000001", "started_at": "2026-11-25T18:29:07Z",
            "stopped_at": "2026-11-25T18:29:08Z", "wal_segment_size": 16777216,
            "block_size": 8192, "data_checksums": true, "compression": "zstd:3",
            "host": "h", "pgdata": "/d", "reached": "r", "owner_uid": 0, "owner_gid": 0,
            "backup_label": "", "tablespace_map": "",
            "tablespaces": [{"oid": 16400, "location": "/srv/ts1"}], "size": 1,
            "stored_size": 1,
            "parts": [{"name": "part-00001.tar.zst", "tablespace": null, "size": 1,
                       "stored_size": 1, "stored_checksum": sum}],
            "directories": [{"path": "base", "tablespace": null, "mode": 448}],
            "files": [{"path": "base/5/1259", "tablespace": null, "size": 1,
                       "checksum": sum, "mode": 384, "mtime": 1795628000, "part": 0}],
            "bad_pages": [{"path": "base/5/1259", "block": 0}]
        })
    }

    #[test]
    fn a_format_1_manifest_reads_and_writes_back_unchanged() {
        let m: Manifest = serde_json::from_value(format1()).unwrap();
        assert_eq!(m.files[0].path.as_bytes(), b"base/5/1259");
        assert_eq!(m.directories[0].path.as_bytes(), b"base");
        assert_eq!(m.bad_pages[0].path.as_bytes(), b"base/5/1259");
        assert_eq!(m.tablespaces[0].location.as_bytes(), b"/srv/ts1");
        assert_eq!(m.kind, BackupKind::Full, "older manifests are full");
        // UTF-8 names are written as format 1 wrote them: its readers agree.
        // Only the type is added.
        let mut written = serde_json::to_value(&m).unwrap();
        assert_eq!(written["type"], "full");
        written.as_object_mut().unwrap().remove("type");
        assert_eq!(written, format1());
    }

    #[test]
    fn names_that_are_not_utf8_survive_a_stored_manifest() {
        let mut m: Manifest = serde_json::from_value(format1()).unwrap();
        let name = |b: &[u8]| PathBytes::new(b.to_vec());
        m.directories.push(Directory {
            path: name(b"pg_log\xff"),
            tablespace: None,
            mode: 0o700,
        });
        let mut file = m.files[0].clone();
        file.path = name(b"pg_log\xff/notes-\xe9t\xe9.txt");
        m.files.push(file);
        m.bad_pages[0].path = name(b"base/5/\xe9");
        m.tablespaces[0].location = name(b"/srv/\xe9t\xe9");

        let stored = document::encode(&m).unwrap();
        let text = String::from_utf8(stored.clone()).unwrap();
        assert!(text.contains(&format!("\"path_hex\": \"{}\"", hex::encode(b"pg_log\xff"))));
        assert!(text.contains("\"location_hex\""));
        let back: Manifest = document::decode(&stored, "manifest").unwrap();
        assert_eq!(back.directories, m.directories);
        assert_eq!(back.files[1].path, m.files[1].path);
        assert_eq!(back.files[0].path, m.files[0].path);
        assert_eq!(back.bad_pages, m.bad_pages);
        assert_eq!(back.tablespaces, m.tablespaces);
    }

    #[test]
    fn paths_leaving_the_restored_directory_are_refused() {
        let good: Manifest = serde_json::from_value(format1()).unwrap();
        good.check_paths().unwrap();
        for bad in ["/etc", "../x", "base/../../x", "", "base//5", "./base"] {
            let mut m = good.clone();
            m.directories[0].path = PathBytes::from(bad);
            let err = m.check_paths().unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Corrupt);
            assert!(err.to_string().contains("directory"), "{err}");

            let mut m = good.clone();
            m.files[0].path = PathBytes::from(bad);
            let err = m.check_paths().unwrap_err();
            assert!(err.to_string().contains("file"), "{err}");
        }
    }
}
