//! The cluster a command works for, as its own data directory describes it,
//! and the check that the repository prefix belongs to that cluster.

use crate::error::{Error, ErrorKind, Result};
use crate::pg::control::ControlFile;
use crate::repo::identity::Binding;
use crate::repo::{Bound, Repository};
use crate::settings::{Origin, Settings};
use crate::storage::Storage;
use std::path::PathBuf;

/// A data directory and what its pg_control says.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub pgdata: PathBuf,
    pub pgdata_origin: Origin,
    pub control: ControlFile,
}

impl LocalCluster {
    pub fn open(settings: &Settings) -> Result<LocalCluster> {
        let pgdata = settings.pgdata.clone().ok_or_else(|| {
            Error::config("no data directory is known").with_hint(
                "pass PGDATA, set --pgdata or PGPROOF_PGDATA, `pgdata` in the cluster's configuration section, or run in the data directory (as archive_command does)",
            )
        })?;
        let control = ControlFile::read(&pgdata.value)
            .map_err(|e| e.context(format!("data directory from {}", pgdata.origin)))?;
        Ok(LocalCluster {
            pgdata: pgdata.value,
            pgdata_origin: pgdata.origin,
            control,
        })
    }

    /// "system 7712155677582176724, PostgreSQL 15, /var/lib/postgresql/15/main"
    pub fn describe(&self) -> String {
        format!(
            "system {}, PostgreSQL {}, {}",
            self.control.system_identifier,
            self.control.major,
            self.pgdata.display()
        )
    }

    pub fn binding(&self, reason: &str) -> Binding {
        Binding {
            id: Binding::id_for(self.control.system_identifier, self.control.major),
            system_identifier: self.control.system_identifier,
            major: self.control.major,
            wal_segment_size: self.control.wal_segment_size,
            bound_at: chrono::Utc::now(),
            host: hostname::get()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pgdata: self.pgdata.display().to_string(),
            pgproof_version: env!("CARGO_PKG_VERSION").to_string(),
            reason: reason.to_string(),
        }
    }
}

pub fn open_repository(settings: &Settings) -> Result<Repository> {
    let storage = Storage::open(&settings.repo.value, settings.timeout)?;
    Ok(Repository::new(storage, settings.cluster.value.clone()))
}

/// Binds an empty prefix to the local cluster, or confirms that it belongs
/// to it; refuses, naming both systems, when it belongs to another.
pub async fn bind_or_refuse(
    repo: &Repository,
    local: &LocalCluster,
    reason: &str,
) -> Result<Binding> {
    match repo.bind(local.binding(reason)).await? {
        Bound::Created(b) => {
            tracing::info!(
                "bound {} to system {} (PostgreSQL {}); it will refuse WAL and backups of any other system",
                repo.describe(),
                b.system_identifier,
                b.major
            );
            Ok(b)
        }
        Bound::Existing(b) => Ok(b),
        Bound::Mismatch(theirs) => Err(Error::new(
            ErrorKind::Identity,
            format!(
                "repository prefix {} belongs to system {} (PostgreSQL {}, bound from {}:{} on {}), but this cluster is system {} (PostgreSQL {}, {} per its pg_control; data directory from {})",
                repo.describe(),
                theirs.system_identifier,
                theirs.major,
                theirs.host,
                theirs.pgdata,
                theirs.bound_at.format("%Y-%m-%d %H:%M:%S UTC"),
                local.control.system_identifier,
                local.control.major,
                local.pgdata.display(),
                local.pgdata_origin,
            ),
        )
        .with_hint(
            "give each cluster its own --cluster name; if this is the same cluster after pg_upgrade or a new initdb, run `pgproof rebind --confirm` (earlier backups stay readable)",
        )),
    }
}
