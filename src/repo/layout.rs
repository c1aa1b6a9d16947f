//! The only code that turns repository concepts into object keys. The
//! layout is specified in docs/FORMAT.md; change both together.

use crate::codec::{Compression, ContentChecksum};
use crate::error::{Error, Result};
use crate::pg::walname::WalFileName;
use std::fmt;

/// A cluster's name in the repository: the first path element of all its keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn new(name: &str) -> Result<ClusterName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(ClusterName(name.to_string()))
        } else {
            Err(
                Error::config(format!("{name:?} is not a valid cluster name")).with_hint(
                    "use 1 to 64 letters, digits, '.', '-' or '_', not starting with '.'",
                ),
            )
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity record of a cluster prefix.
pub fn identity_record(cluster: &ClusterName) -> String {
    format!("{cluster}/cluster.json")
}

/// The directory holding the WAL of one binding (one system identifier and major).
pub fn wal_root(cluster: &ClusterName, binding: &str) -> String {
    format!("{cluster}/wal/{binding}")
}

/// The directory a WAL file of this name is stored in: history files at the
/// binding's WAL root, everything else grouped by timeline and log.
pub fn wal_dir(cluster: &ClusterName, binding: &str, name: WalFileName) -> String {
    match name.segment() {
        Some(seg) => format!("{}/{}", wal_root(cluster, binding), seg.directory()),
        None => wal_root(cluster, binding),
    }
}

/// `<dir>/<wal name>-<checksum of the uncompressed file>.<compression>`,
/// the checksum's hex digits (32 for XXH3-128, 64 for the SHA-256 of
/// formats 1 to 3): the checksum in the key lets one listing tell an
/// identical re-push from a conflicting one, without downloading anything.
pub fn wal_object(
    cluster: &ClusterName,
    binding: &str,
    name: WalFileName,
    sum: ContentChecksum,
    c: Compression,
) -> String {
    format!(
        "{}/{name}-{}.{}",
        wal_dir(cluster, binding, name),
        sum.to_hex(),
        c.extension()
    )
}

/// `<dir>/<wal name>.claim`: created (if absent) before the WAL object, it
/// holds the checksum of the one content that may ever be stored under the
/// name. Keyed without the checksum so that two pushes of different content
/// compete for the same key and a conditional create picks one.
pub fn wal_claim(cluster: &ClusterName, binding: &str, name: WalFileName) -> String {
    format!("{}/{name}{CLAIM_SUFFIX}", wal_dir(cluster, binding, name))
}

const CLAIM_SUFFIX: &str = ".claim";

/// The WAL name a claim key is for; `None` for anything else.
pub fn parse_wal_claim(key: &str) -> Option<WalFileName> {
    let file = key.rsplit('/').next()?;
    WalFileName::parse(file.strip_suffix(CLAIM_SUFFIX)?).ok()
}

/// The directory holding every binding's backups.
pub fn all_backups(cluster: &ClusterName) -> String {
    format!("{cluster}/backups")
}

/// The directory holding one binding's backups, one subdirectory each.
pub fn backups_root(cluster: &ClusterName, binding: &str) -> String {
    format!("{}/{binding}", all_backups(cluster))
}

pub fn backup_dir(cluster: &ClusterName, binding: &str, backup: &str) -> String {
    format!("{}/{backup}", backups_root(cluster, binding))
}

/// A part of a backup: a compressed tar stream of some of its files.
pub fn backup_part(cluster: &ClusterName, binding: &str, backup: &str, part: &str) -> String {
    format!("{}/{part}", backup_dir(cluster, binding, backup))
}

/// Written last: a backup without its manifest is incomplete.
pub fn backup_manifest(cluster: &ClusterName, binding: &str, backup: &str) -> String {
    format!("{}/manifest.json", backup_dir(cluster, binding, backup))
}

/// Present while the backup is exempt from retention (`delete`); removing
/// the object lifts the exemption. Separate because manifests never change.
pub fn permanent_mark(cluster: &ClusterName, binding: &str, backup: &str) -> String {
    format!("{}/permanent.json", backup_dir(cluster, binding, backup))
}

/// The proofs of one backup, one document per attempt.
pub fn proofs_dir(cluster: &ClusterName, binding: &str, backup: &str) -> String {
    format!("{}/proofs", backup_dir(cluster, binding, backup))
}

/// One proof, named by when it started, to the millisecond (`20261125T140207.123Z`).
pub fn proof(cluster: &ClusterName, binding: &str, backup: &str, started: &str) -> String {
    format!("{}/{started}.json", proofs_dir(cluster, binding, backup))
}

/// Created before any part: whoever creates it owns the backup's name, so
/// that two backups started in one second never share a directory.
pub fn backup_claim(cluster: &ClusterName, binding: &str, backup: &str) -> String {
    format!("{}/claim.json", backup_dir(cluster, binding, backup))
}

/// A backup's name: its start time to the second, UTC (`20261125T140207Z`).
pub fn backup_name(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format(BACKUP_NAME_FORMAT).to_string()
}

pub const BACKUP_NAME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A lock of the cluster prefix, present while held (`backup` for
/// backup-push).
pub fn lock(cluster: &ClusterName, name: &str) -> String {
    format!("{cluster}/locks/{name}.json")
}

/// The lock whose holder may replace the stale lock `name` held by
/// `token`: created with create-if-absent, so two runs finding one stale
/// lock never both take it over.
pub fn lock_takeover(name: &str, token: &str) -> String {
    format!("{name}.takeover-{token}")
}

/// A short-lived object `check` writes, reads back and removes.
pub fn check_probe(cluster: &ClusterName, token: &str) -> String {
    format!("{cluster}/check-{token}.tmp")
}

/// A WAL object's key, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalObjectName {
    pub name: WalFileName,
    pub checksum: ContentChecksum,
    pub compression: Compression,
}

/// Decodes the last path element of a WAL object key; `None` for anything else.
pub fn parse_wal_object(key: &str) -> Option<WalObjectName> {
    let file = key.rsplit('/').next()?;
    let (stem, ext) = file.rsplit_once('.')?;
    let (name, sum) = stem.rsplit_once('-')?;
    Some(WalObjectName {
        name: WalFileName::parse(name).ok()?,
        checksum: ContentChecksum::from_hex(sum).ok()?,
        compression: Compression::from_extension(ext)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(ClusterName::new("main").is_ok());
        assert!(ClusterName::new("pg15-main_2.a").is_ok());
        for bad in ["", ".hidden", "a/b", "x y", &"n".repeat(65)] {
            assert!(ClusterName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wal_keys_round_trip() {
        let c = ClusterName::new("main").unwrap();
        let legacy = ContentChecksum::from(crate::codec::Checksum::of(b"x"));
        for (n, sum) in [
            ("000000010000000A000000FF", ContentChecksum::of(b"x")),
            ("00000002.history", ContentChecksum::of(b"y")),
            ("000000010000000000000003.partial", legacy),
            ("000000010000000000000002.00000028.backup", legacy),
        ] {
            let name = WalFileName::parse(n).unwrap();
            let key = wal_object(&c, "15-42", name, sum, Compression::Lz4);
            let parsed = parse_wal_object(&key).unwrap();
            assert_eq!(parsed.name, name);
            assert_eq!(parsed.checksum, sum);
            assert_eq!(parsed.compression, Compression::Lz4);
        }
        let seg = WalFileName::parse("000000010000000A000000FF").unwrap();
        // printf x | xxhsum -H2
        let sum = ContentChecksum::of(b"x");
        assert_eq!(
            wal_object(&c, "15-42", seg, sum, Compression::None),
            "main/wal/15-42/000000010000000A/000000010000000A000000FF-5c7401c0ec22eeeeeaf06c6480b2cd11.raw"
        );
        assert_eq!(
            wal_object(&c, "15-42", seg, legacy, Compression::None),
            format!(
                "main/wal/15-42/000000010000000A/000000010000000A000000FF-{}.raw",
                legacy.to_hex()
            )
        );
        assert!(parse_wal_object("main/wal/15-42/0000000100000000/junk.txt").is_none());
    }

    #[test]
    fn claim_keys_round_trip_and_are_never_wal_objects() {
        let c = ClusterName::new("main").unwrap();
        for n in [
            "000000010000000A000000FF",
            "00000002.history",
            "000000010000000000000003.partial",
            "000000010000000000000002.00000028.backup",
        ] {
            let name = WalFileName::parse(n).unwrap();
            let key = wal_claim(&c, "15-42", name);
            assert_eq!(parse_wal_claim(&key), Some(name));
            assert!(parse_wal_object(&key).is_none(), "{key}");
            let object = wal_object(
                &c,
                "15-42",
                name,
                ContentChecksum::of(b"x"),
                Compression::Lz4,
            );
            assert_eq!(parse_wal_claim(&object), None);
        }
        assert_eq!(
            wal_claim(
                &c,
                "15-42",
                WalFileName::parse("000000010000000A000000FF").unwrap()
            ),
            "main/wal/15-42/000000010000000A/000000010000000A000000FF.claim"
        );
    }
}
