//! Full or incremental: what the operator asked for, and whether there is
//! a parent an incremental can rest on.

use crate::error::{Error, Result};
use crate::repo::Repository;
use crate::repo::chain::MAX_CHAIN;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::settings::Settings;
use std::time::Duration;

/// The first repository format whose backups hold block hashes.
const HASHES_FORMAT: u32 = 5;

#[derive(Debug, Clone)]
pub struct KindChoice {
    pub kind: BackupKind,
    /// Asked by --full/--incremental, not by the default.
    pub explicit: bool,
    /// An incremental default takes a full once the newest full is older.
    pub full_every: Option<Duration>,
}

impl KindChoice {
    /// The flags first, then `--backup-type`/`PGPROOF_BACKUP_TYPE`, then
    /// the configuration file, then full.
    pub fn resolve(
        full: bool,
        incremental: bool,
        backup_type: Option<&str>,
        full_every: Option<&str>,
        settings: &Settings,
    ) -> Result<KindChoice> {
        let from_file = |s: &Option<crate::settings::Sourced<String>>| {
            s.as_ref().map(|s| (s.value.clone(), s.origin.to_string()))
        };
        let typed = backup_type
            .map(|t| (t.to_string(), "--backup-type".to_string()))
            .or_else(|| from_file(&settings.backup_type));
        let default = match typed {
            None => BackupKind::Full,
            Some((t, _)) if t == "full" => BackupKind::Full,
            Some((t, _)) if t == "incremental" => BackupKind::Incremental,
            Some((t, origin)) => {
                return Err(Error::config(format!(
                    "backup type {t:?} (from {origin}) is neither full nor incremental"
                )));
            }
        };
        let every = full_every
            .map(|t| (t.to_string(), "--full-every".to_string()))
            .or_else(|| from_file(&settings.full_every));
        let full_every = match every {
            None => None,
            Some((t, _)) if t.trim() == "0" || t.trim() == "off" => None,
            Some((t, origin)) => Some(
                crate::settings::parse_duration(&t)
                    .map_err(|e| e.context(format!("full_every from {origin}")))?,
            ),
        };
        Ok(match (full, incremental) {
            (true, _) => KindChoice {
                kind: BackupKind::Full,
                explicit: true,
                full_every: None,
            },
            (_, true) => KindChoice {
                kind: BackupKind::Incremental,
                explicit: true,
                full_every: None,
            },
            _ => KindChoice {
                kind: default,
                explicit: false,
                full_every,
            },
        })
    }
}

/// The chain an incremental extends (oldest first, ending with its
/// parent), or `None` for a full, each reason said.
pub async fn choose_base(
    repo: &Repository,
    binding: &str,
    choice: &KindChoice,
    block_size: u32,
) -> Result<Option<Vec<Manifest>>> {
    if choice.kind == BackupKind::Full {
        return Ok(None);
    }
    let full = |why: String| {
        tracing::info!("{why}; taking a full backup");
        Ok(None)
    };
    let Some(newest) = repo.newest_backup(binding).await? else {
        return full("no complete backup of this system to base an incremental on".into());
    };
    if newest.format < HASHES_FORMAT || newest.block_hash_seed.is_none() {
        return full(format!(
            "the newest backup, {}, was written by an older pgproof (repository format {}) and holds no block hashes",
            newest.name, newest.format
        ));
    }
    if newest.block_size != block_size {
        return full(format!(
            "the newest backup, {}, has blocks of {} bytes, this cluster {block_size}",
            newest.name, newest.block_size
        ));
    }
    let chain = match repo.chain(&newest).await {
        Ok(chain) => chain,
        Err(e) => {
            tracing::warn!("{e}");
            return full(format!(
                "the newest backup, {}, cannot be restored, so nothing can rest on it",
                newest.name
            ));
        }
    };
    if chain.len() >= MAX_CHAIN {
        return full(format!(
            "the chain of {} already holds {} backups, the most one may",
            newest.name,
            chain.len()
        ));
    }
    if let Some(every) = choice.full_every.filter(|_| !choice.explicit) {
        let age = chrono::Utc::now() - chain[0].started_at;
        if age.to_std().is_ok_and(|age| age > every) {
            return full(format!(
                "the newest full backup, {}, is older than full_every ({})",
                chain[0].name,
                humantime::format_duration(every)
            ));
        }
    }
    Ok(Some(chain))
}
