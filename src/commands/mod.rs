//! One module per command. Commands compose PostgreSQL knowledge, the
//! repository and reporting; they do not reach around them.

pub mod backup_list;
pub mod backup_push;
pub mod cluster;
pub mod restore;
pub mod wal_fetch;
pub mod wal_push;

pub use cluster::open_repository;
