//! Choosing the backup to restore: by name, the latest, or the newest one
//! that ends before the recovery target. A backup whose manifest is damaged
//! is never chosen: asked for by name it is an error naming it; skipped in
//! favour of an older one it is a warning, so the operator knows the
//! restore is older than the newest backup taken.

use crate::error::{Error, ErrorKind, Result};
use crate::repo::backups::BackupSet;
use crate::repo::manifest::Manifest;

#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub name: Option<String>,
    pub before_time: Option<chrono::DateTime<chrono::Utc>>,
    pub before_lsn: Option<crate::pg::lsn::Lsn>,
}

pub fn choose(set: &BackupSet, how: &Selection, describe: &str) -> Result<Manifest> {
    let backups = &set.complete;
    let named = how.name.as_deref().filter(|n| *n != "latest");
    if let Some(d) = named.and_then(|n| set.damaged_named(n)) {
        return Err(Error::new(
            d.problem.kind(),
            format!("cannot use backup {} of {describe}: {}", d.name, d.problem),
        )
        .with_hint(format!(
            "its manifest {} is damaged; `pgproof verify` lists what is wrong, `pgproof backup-list` the backups that can be used",
            d.manifest_key
        )));
    }
    if backups.is_empty() {
        let damaged = match set.damaged.len() {
            0 => String::new(),
            n => format!(
                " ({n} backup{} with a damaged manifest: {})",
                if n == 1 { "" } else { "s" },
                set.damaged
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{describe} holds no complete backup{damaged}"),
        )
        .with_hint("take one with `pgproof backup-push`"));
    }
    if let Some(name) = named {
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
    let chosen = backups.iter().rev().find(fits).cloned().ok_or_else(|| {
        Error::new(
            ErrorKind::NotFound,
            format!("no backup in {describe} ends before the recovery target"),
        )
        .with_hint("a point-in-time restore needs a backup taken before the target")
    })?;
    // Names are start times: a damaged backup named later might have been chosen.
    for d in set.damaged.iter().filter(|d| d.name > chosen.name) {
        tracing::warn!(
            "SKIPPED backup {} of {describe}, newer than backup {} which is used instead: {}",
            d.name,
            chosen.name,
            d.problem
        );
    }
    Ok(chosen)
}
