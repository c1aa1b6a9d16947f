//! The settings a server in hot standby must match: pg_control keeps the
//! primary's values, and recovery with `hot_standby = on` refuses (or, from
//! 14, pauses) when the recovering server's are lower.
//!
//! Offsets in `ControlFileData` (the same in 13 to 18, after `wal_level` at 172):
//! `MaxConnections` 180, `max_worker_processes` 184, `max_wal_senders` 188,
//! `max_prepared_xacts` 192, `max_locks_per_xact` 196 (all `int`).

use crate::error::{Error, Result};
use crate::pg::control::ControlFile;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StandbyParams {
    pub max_connections: u32,
    pub max_worker_processes: u32,
    pub max_wal_senders: u32,
    pub max_prepared_transactions: u32,
    pub max_locks_per_transaction: u32,
}

impl StandbyParams {
    /// From pg_control bytes already checked by `ControlFile::parse`.
    pub fn parse(bytes: &[u8]) -> Result<StandbyParams> {
        if bytes.len() < 200 {
            return Err(Error::corrupt("pg_control is too short"));
        }
        let at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("length checked"));
        Ok(StandbyParams {
            max_connections: at(180),
            max_worker_processes: at(184),
            max_wal_senders: at(188),
            max_prepared_transactions: at(192),
            max_locks_per_transaction: at(196),
        })
    }

    /// Reads `PGDATA/global/pg_control`, checking it first.
    pub fn read(pgdata: &Path) -> Result<StandbyParams> {
        ControlFile::read(pgdata)?;
        let path = pgdata.join("global").join("pg_control");
        let bytes = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
        StandbyParams::parse(&bytes)
    }

    /// `(name, value)` pairs as PostgreSQL settings.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("max_connections", self.max_connections.to_string()),
            (
                "max_worker_processes",
                self.max_worker_processes.to_string(),
            ),
            ("max_wal_senders", self.max_wal_senders.to_string()),
            (
                "max_prepared_transactions",
                self.max_prepared_transactions.to_string(),
            ),
            (
                "max_locks_per_transaction",
                self.max_locks_per_transaction.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::version::Major;

    #[test]
    fn initdb_defaults_in_every_major() {
        for major in Major::ALL {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/pg")
                .join(major.to_string())
                .join("pg_control");
            let p = StandbyParams::parse(&std::fs::read(path).unwrap()).unwrap();
            // The fixtures are initdb's defaults.
            assert_eq!(p.max_worker_processes, 8, "{major}");
            assert_eq!(p.max_wal_senders, 10, "{major}");
            assert_eq!(p.max_prepared_transactions, 0, "{major}");
            assert_eq!(p.max_locks_per_transaction, 64, "{major}");
            assert!(p.max_connections >= 20, "{major}");
        }
    }
}
