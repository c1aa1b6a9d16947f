//! One module per command. Commands compose PostgreSQL knowledge, the
//! repository and reporting; they do not reach around them.

pub mod cluster;
pub mod wal_fetch;
pub mod wal_push;

pub use cluster::open_repository;
