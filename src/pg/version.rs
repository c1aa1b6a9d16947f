//! The one table of supported PostgreSQL majors and what differs between them.

use crate::error::{Error, Result};

/// A supported PostgreSQL major version and its per-release constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Major(u32);

struct Release {
    major: u32,
    /// `XLOG_PAGE_MAGIC` from `access/xlog_internal.h`.
    wal_page_magic: u16,
    /// `PG_CONTROL_VERSION` from `catalog/pg_control.h`.
    control_version: u32,
}

const RELEASES: &[Release] = &[
    Release {
        major: 13,
        wal_page_magic: 0xD106,
        control_version: 1300,
    },
    Release {
        major: 14,
        wal_page_magic: 0xD10D,
        control_version: 1300,
    },
    Release {
        major: 15,
        wal_page_magic: 0xD110,
        control_version: 1300,
    },
    Release {
        major: 16,
        wal_page_magic: 0xD113,
        control_version: 1300,
    },
    Release {
        major: 17,
        wal_page_magic: 0xD116,
        control_version: 1700,
    },
    Release {
        major: 18,
        wal_page_magic: 0xD118,
        control_version: 1800,
    },
];

const SUPPORTED_HINT: &str = "pgproof supports PostgreSQL 13 to 18";

impl Major {
    pub const ALL: [Major; 6] = [
        Major(13),
        Major(14),
        Major(15),
        Major(16),
        Major(17),
        Major(18),
    ];

    pub fn new(major: u32) -> Result<Major> {
        if RELEASES.iter().any(|r| r.major == major) {
            Ok(Major(major))
        } else {
            Err(
                Error::config(format!("PostgreSQL {major} is not supported"))
                    .with_hint(SUPPORTED_HINT),
            )
        }
    }

    /// Parses the contents of a `PG_VERSION` file ("15\n").
    pub fn from_pg_version_file(text: &str) -> Result<Major> {
        let trimmed = text.trim();
        let major = trimmed.parse::<u32>().map_err(|_| {
            Error::config(format!(
                "PG_VERSION holds {trimmed:?}, not a major version number"
            ))
        })?;
        Major::new(major)
    }

    pub fn from_wal_page_magic(magic: u16) -> Option<Major> {
        RELEASES
            .iter()
            .find(|r| r.wal_page_magic == magic)
            .map(|r| Major(r.major))
    }

    pub fn number(self) -> u32 {
        self.0
    }

    pub fn wal_page_magic(self) -> u16 {
        self.release().wal_page_magic
    }

    pub fn control_version(self) -> u32 {
        self.release().control_version
    }

    /// Majors whose pg_control carries this `PG_CONTROL_VERSION`; several
    /// releases share one, so the caller disambiguates with `PG_VERSION`.
    pub fn with_control_version(version: u32) -> Vec<Major> {
        RELEASES
            .iter()
            .filter(|r| r.control_version == version)
            .map(|r| Major(r.major))
            .collect()
    }

    /// Before 15 the non-exclusive backup API is `pg_start_backup(label, fast, false)`.
    pub fn uses_pg_backup_start(self) -> bool {
        self.0 >= 15
    }

    fn release(self) -> &'static Release {
        RELEASES
            .iter()
            .find(|r| r.major == self.0)
            .expect("Major is only built from RELEASES")
    }
}

impl std::fmt::Display for Major {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for Major {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Major {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let n = u32::deserialize(d)?;
        Major::new(n).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_major_is_refused_with_hint() {
        let err = Major::new(12).unwrap_err();
        assert!(err.to_string().contains("PostgreSQL 12 is not supported"));
        assert!(err.hint().unwrap().contains("13 to 18"));
    }

    #[test]
    fn pg_version_file_parses() {
        assert_eq!(Major::from_pg_version_file("17\n").unwrap().number(), 17);
        assert!(Major::from_pg_version_file("9.6\n").is_err());
    }

    #[test]
    fn magic_maps_back_to_major() {
        for m in Major::ALL {
            assert_eq!(Major::from_wal_page_magic(m.wal_page_magic()), Some(m));
        }
        assert_eq!(Major::from_wal_page_magic(0xD101), None);
    }
}
