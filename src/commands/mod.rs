//! One module per command. Commands compose PostgreSQL knowledge, the
//! repository and reporting; they do not reach around them.

pub mod archiver;
pub mod backup_list;
pub mod backup_mark;
pub mod backup_push;
pub mod check;
pub mod cluster;
pub mod clusters;
pub mod delete;
pub mod enable;
pub mod interrupt;
pub mod locks;
mod outcome;
pub mod prove;
pub mod rebind;
pub mod restore;
pub mod status;
pub mod verify;
pub mod wal_fetch;
pub mod wal_push;

pub use cluster::open_repository;
pub use outcome::Outcome;

/// A path as given, made absolute against the working directory (which is
/// PGDATA when PostgreSQL runs pgproof).
pub fn absolute(path: &std::path::Path) -> crate::error::Result<std::path::PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        crate::error::Error::io(
            "reading the working directory",
            std::path::Path::new("."),
            e,
        )
    })?;
    Ok(cwd.join(path))
}
