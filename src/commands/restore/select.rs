//! Choosing the backup to restore: by name, the latest, or the newest one
//! that ends before the recovery target.

use crate::error::{Error, ErrorKind, Result};
use crate::repo::manifest::Manifest;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub name: Option<String>,
    pub before_time: Option<chrono::DateTime<chrono::Utc>>,
    pub before_lsn: Option<crate::pg::lsn::Lsn>,
}

pub fn choose(backups: &[Manifest], how: &Selection, describe: &str) -> Result<Manifest> {
    if backups.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{describe} holds no complete backup"),
        )
        .with_hint("take one with `pgproof backup-push`"));
    }
    if let Some(name) = how.name.as_deref().filter(|n| *n != "latest") {
        return backups
            .iter()
            .find(|b| b.name == name)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{describe} has no complete backup named {name}"),
                )
                .with_hint("`pgproof backup-list` shows the backups there are")
            });
    }
    let fits = |b: &&Manifest| {
        how.before_time.is_none_or(|t| b.stopped_at < t)
            && how.before_lsn.is_none_or(|l| b.stop_lsn <= l)
    };
    backups.iter().rev().find(fits).cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("no backup in {describe} ends before the recovery target"),
        )
        .with_hint("a point-in-time restore needs a backup taken before the target")
    })
}
