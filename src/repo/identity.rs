//! The identity record of a cluster prefix: which PostgreSQL system the
//! prefix belongs to. Written once, when the first WAL or backup arrives;
//! changed only by an explicit rebind, which appends a binding and keeps the
//! earlier ones so their backups and WAL stay readable.

use crate::pg::version::Major;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The repository format this build writes; see docs/FORMAT.md.
pub const FORMAT_VERSION: u32 = 6;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub format: u32,
    pub cluster: String,
    /// Oldest first; the last one is the binding new WAL and backups go to.
    pub bindings: Vec<Binding>,
}

/// One system (a system identifier and a major version) a prefix was bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `<major>-<system identifier>`: the directory under `wal/` and `backups/`.
    pub id: String,
    /// A string: JSON numbers lose precision above 2^53 in many readers.
    #[serde(with = "u64_as_string")]
    pub system_identifier: u64,
    pub major: Major,
    pub wal_segment_size: u32,
    pub bound_at: DateTime<Utc>,
    /// Where the binding was made from: the host and data directory.
    pub host: String,
    pub pgdata: String,
    pub pgproof_version: String,
    pub reason: String,
}

impl Binding {
    pub fn id_for(system_identifier: u64, major: Major) -> String {
        format!("{major}-{system_identifier}")
    }

    pub fn is_system(&self, system_identifier: u64, major: Major) -> bool {
        self.system_identifier == system_identifier && self.major == major
    }
}

impl ClusterRecord {
    pub fn current(&self) -> &Binding {
        self.bindings.last().expect("a record always has a binding")
    }

    /// Each binding directory once, oldest first: a system bound again
    /// after a rolled-back upgrade appears twice in `bindings`.
    pub fn distinct_bindings(&self) -> Vec<&Binding> {
        let mut seen = std::collections::BTreeSet::new();
        self.bindings
            .iter()
            .filter(|b| seen.insert(b.id.as_str()))
            .collect()
    }

    pub fn find(&self, system_identifier: u64, major: Major) -> Option<&Binding> {
        self.bindings
            .iter()
            .find(|b| b.is_system(system_identifier, major))
    }
}

pub(crate) mod u64_as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(system_identifier: u64, major: u32) -> Binding {
        Binding {
            id: Binding::id_for(system_identifier, Major::new(major).unwrap()),
            system_identifier,
            major: Major::new(major).unwrap(),
            wal_segment_size: 16 << 20,
            bound_at: Utc::now(),
            host: "db1".into(),
            pgdata: "/var/lib/postgresql/main".into(),
            pgproof_version: "0.1.0".into(),
            reason: "test".into(),
        }
    }

    #[test]
    fn a_system_bound_again_is_one_binding_directory_and_current() {
        let record = ClusterRecord {
            format: FORMAT_VERSION,
            cluster: "main".into(),
            bindings: vec![binding(1, 15), binding(2, 17), binding(1, 15)],
        };
        let ids: Vec<&str> = record
            .distinct_bindings()
            .iter()
            .map(|b| b.id.as_str())
            .collect();
        assert_eq!(ids, ["15-1", "17-2"]);
        assert_eq!(record.current().system_identifier, 1);
    }
}
