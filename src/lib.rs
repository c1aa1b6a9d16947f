//! pgproof: PostgreSQL continuous archiving and point-in-time recovery to
//! object storage, where every backup and WAL file is bound to the cluster it
//! came from.
//!
//! Dependencies point one way: `cli` calls `commands`; commands use `repo`,
//! `pg` and `report`; `repo` uses `storage` and `codec`; `storage`, `codec`
//! and `pg` know nothing of each other or of anything above them.

pub mod cli;
pub mod codec;
pub mod commands;
pub mod error;
pub mod pg;
pub mod process;
pub mod progress;
pub mod rate;
pub mod repo;
pub mod report;
pub mod settings;
pub mod storage;
