//! File names as the filesystem holds them: bytes. PostgreSQL's data
//! directory may hold files whose names are not UTF-8 (a Latin-1 named note,
//! a log file); every name is carried byte for byte from the walk to the tar
//! header, the manifest and back to the restored directory. Text is made of
//! a name only to show it to a person.
//!
//! In a manifest a name is one of two members (docs/FORMAT.md): `path` (a
//! JSON string) when it is UTF-8, else `path_hex` (its bytes in lower-case
//! hex), as PostgreSQL's own backup manifest has `Path` and `Encoded-Path`.
//! The two can never be taken for each other, and a format 1 manifest, which
//! has only `path`, reads unchanged.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserializer, Serializer};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathBytes(Vec<u8>);

impl PathBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> PathBytes {
        PathBytes(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }

    pub fn as_path(&self) -> &Path {
        Path::new(self.as_os_str())
    }

    /// The name as text, when it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/name`, or `name` when `self` is empty (the root).
    pub fn join(&self, name: &OsStr) -> PathBytes {
        let mut bytes = Vec::with_capacity(self.0.len() + 1 + name.len());
        if !self.0.is_empty() {
            bytes.extend_from_slice(&self.0);
            bytes.push(b'/');
        }
        bytes.extend_from_slice(name.as_bytes());
        PathBytes(bytes)
    }

    /// Why this path may not be written below a restore's root, if it may
    /// not: only plain names separated by single slashes stay inside it.
    /// Stricter than `Path::components`, which would pass `a//b` and `a/./b`
    /// by normalizing them.
    pub fn unsafe_below_root(&self) -> Option<&'static str> {
        if self.0.is_empty() {
            return Some("is empty");
        }
        if self.0.starts_with(b"/") {
            return Some("is absolute");
        }
        if self.0.contains(&0) {
            return Some("contains a NUL byte");
        }
        for component in self.0.split(|&b| b == b'/') {
            match component {
                b"" => return Some("has an empty component"),
                b"." => return Some("has a `.` component"),
                b".." => return Some("has a `..` component"),
                _ => {}
            }
        }
        None
    }
}

impl From<&str> for PathBytes {
    fn from(s: &str) -> PathBytes {
        PathBytes(s.as_bytes().to_vec())
    }
}

impl From<OsString> for PathBytes {
    fn from(s: OsString) -> PathBytes {
        PathBytes(s.into_vec())
    }
}

impl From<PathBuf> for PathBytes {
    fn from(p: PathBuf) -> PathBytes {
        PathBytes::from(p.into_os_string())
    }
}

/// For people: UTF-8 as it is, any other byte as `\xNN`, which (unlike
/// U+FFFD replacement) shows which bytes they were.
impl fmt::Display for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            for b in chunk.invalid() {
                write!(f, "\\x{b:02X}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Writes `path` as `key` (UTF-8) or `hex_key` (anything else) into the
/// object the field is flattened into.
fn serialize_as<S: Serializer>(
    path: &PathBytes,
    key: &'static str,
    hex_key: &'static str,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(1))?;
    match path.to_str() {
        Some(text) => map.serialize_entry(key, text)?,
        None => map.serialize_entry(hex_key, &hex::encode(&path.0))?,
    }
    map.end()
}

struct EitherKey {
    key: &'static str,
    hex_key: &'static str,
}

impl<'de> Visitor<'de> for EitherKey {
    type Value = PathBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a `{}` string or a `{}` hex string",
            self.key, self.hex_key
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathBytes, A::Error> {
        let mut found: Option<PathBytes> = None;
        while let Some(k) = map.next_key::<String>()? {
            let value = if k == self.key {
                PathBytes::from(map.next_value::<String>()?.as_str())
            } else if k == self.hex_key {
                let text = map.next_value::<String>()?;
                let bytes = hex::decode(&text).map_err(|e| {
                    de::Error::custom(format!("`{}` {text:?} is not hex: {e}", self.hex_key))
                })?;
                PathBytes(bytes)
            } else {
                // The other members of the object this field is flattened into.
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            if found.replace(value).is_some() {
                return Err(de::Error::custom(format!(
                    "both `{}` and `{}` are given",
                    self.key, self.hex_key
                )));
            }
        }
        found.ok_or_else(|| de::Error::missing_field(self.key))
    }
}

fn deserialize_as<'de, D: Deserializer<'de>>(
    key: &'static str,
    hex_key: &'static str,
    deserializer: D,
) -> Result<PathBytes, D::Error> {
    deserializer.deserialize_map(EitherKey { key, hex_key })
}

/// `#[serde(flatten, with = "path_field")]`: `path` or `path_hex`.
pub mod path_field {
    use super::PathBytes;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &PathBytes, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_as(path, "path", "path_hex", s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBytes, D::Error> {
        super::deserialize_as("path", "path_hex", d)
    }
}

/// `#[serde(flatten, with = "location_field")]`: `location` or `location_hex`.
pub mod location_field {
    use super::PathBytes;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &PathBytes, s: S) -> Result<S::Ok, S::Error> {
        super::serialize_as(path, "location", "location_hex", s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBytes, D::Error> {
        super::deserialize_as("location", "location_hex", d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Entry {
        #[serde(flatten, with = "path_field")]
        path: PathBytes,
        size: u64,
    }

    #[test]
    fn utf8_names_stay_strings_and_others_become_hex() {
        let plain = Entry {
            path: PathBytes::from("base/5/1259"),
            size: 1,
        };
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json, serde_json::json!({"path": "base/5/1259", "size": 1}));
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), plain);

        let latin1 = Entry {
            path: PathBytes::new(b"pg_log/notes-\xe9t\xe9.txt".to_vec()),
            size: 2,
        };
        let json = serde_json::to_value(&latin1).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"path_hex": hex::encode(b"pg_log/notes-\xe9t\xe9.txt"), "size": 2})
        );
        assert_eq!(serde_json::from_value::<Entry>(json).unwrap(), latin1);
    }

    #[test]
    fn every_byte_but_nul_and_slash_round_trips() {
        let name: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
        let entry = Entry {
            path: PathBytes::new(name),
            size: 0,
        };
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), entry);
    }

    #[test]
    fn a_hex_name_never_reads_as_the_string_it_spells() {
        // A real UTF-8 file may be named like the hex of another name.
        let spelled = hex::encode(b"\xff");
        let json = serde_json::json!({"path": spelled, "size": 0});
        let entry: Entry = serde_json::from_value(json).unwrap();
        assert_eq!(entry.path.as_bytes(), spelled.as_bytes());
    }

    #[test]
    fn malformed_members_are_refused() {
        for bad in [
            serde_json::json!({"size": 0}),
            serde_json::json!({"path": "a", "path_hex": "61", "size": 0}),
            serde_json::json!({"path_hex": "zz", "size": 0}),
            serde_json::json!({"path": 5, "size": 0}),
        ] {
            assert!(
                serde_json::from_value::<Entry>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_shows_invalid_bytes_escaped() {
        let p = PathBytes::new(b"notes-\xe9t\xe9.txt".to_vec());
        assert_eq!(p.to_string(), "notes-\\xE9t\\xE9.txt");
        assert_eq!(PathBytes::from("démo").to_string(), "démo");
    }

    #[test]
    fn only_plain_relative_names_are_safe_below_a_root() {
        for ok in ["base/5/1259", "PG_VERSION", "a/b..c/.hidden"] {
            assert_eq!(PathBytes::from(ok).unsafe_below_root(), None, "{ok}");
        }
        assert_eq!(
            PathBytes::new(b"pg_log/\xe9".to_vec()).unsafe_below_root(),
            None
        );
        for bad in [
            "",
            "/etc/passwd",
            "..",
            "base/../../x",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a\0b",
        ] {
            assert!(
                PathBytes::from(bad).unsafe_below_root().is_some(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn join_builds_relative_paths() {
        let root = PathBytes::default();
        let dir = root.join(OsStr::from_bytes(b"pg_\xe9"));
        assert_eq!(dir.as_bytes(), b"pg_\xe9");
        assert_eq!(
            dir.join(OsStr::new("x")).as_path(),
            Path::new(OsStr::from_bytes(b"pg_\xe9/x"))
        );
    }
}
