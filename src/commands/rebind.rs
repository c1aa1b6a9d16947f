//! `pgproof rebind [PGDATA] [--confirm]`: hands a cluster prefix to a new
//! system after `pg_upgrade` or a new `initdb` of the same cluster. The
//! identity record gains a binding; the earlier ones stay, and with them
//! their backups and WAL, which restore and wal-fetch still read under
//! their own binding directories. A dry run unless `--confirm`.
//!
//! Only pg_control is read: the system identifier and major it records are
//! what every later wal-push and backup-push will be compared with, and
//! right after pg_upgrade the new server may not be running yet.

use super::cluster::{LocalCluster, open_repository};
use crate::commands::Outcome;
use crate::error::Result;
use crate::repo::identity::Binding;
use crate::settings::{Overrides, PgdataFallback, Settings};
use std::path::PathBuf;

pub struct RebindOptions {
    pub confirm: bool,
    /// Recorded with the binding, for whoever reads the record later.
    pub reason: Option<String>,
}

/// What rebind found, and did.
#[derive(Debug, PartialEq, Eq)]
pub enum Rebinding {
    /// The prefix holds nothing yet: the first push will bind it.
    NothingBound,
    AlreadyBound,
    /// A dry run: the binding that `--confirm` would add.
    WouldRebind,
    Rebound,
}

/// `pgproof rebind`: what it found and did is logged; nothing is printed.
pub async fn invoke(over: &Overrides, pgdata: Option<PathBuf>, opts: RebindOptions) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, pgdata, PgdataFallback::PgdataEnv)?;
        run(&settings, &opts).await
    };
    Outcome::of(result.await.map(|_| String::new()))
}

pub async fn run(settings: &Settings, opts: &RebindOptions) -> Result<Rebinding> {
    let local = LocalCluster::open(settings)?;
    let repo = open_repository(settings)?;
    let Some(record) = repo.load_record().await? else {
        tracing::info!(
            "{} holds nothing yet; the first wal-push or backup-push of {} binds it",
            repo.describe(),
            local.describe()
        );
        return Ok(Rebinding::NothingBound);
    };
    let current = record.current().clone();
    if current.is_system(local.control.system_identifier, local.control.major) {
        tracing::info!(
            "{} already belongs to {}; nothing to change",
            repo.describe(),
            local.describe()
        );
        return Ok(Rebinding::AlreadyBound);
    }
    let reason = opts
        .reason
        .clone()
        .unwrap_or_else(|| "rebind: the same cluster after pg_upgrade or a new initdb".into());
    let next = local.binding(&reason);
    tracing::info!(
        "{} belongs to {}\n  it would belong to system {} (PostgreSQL {}, {}:{}, data directory from {})",
        repo.describe(),
        describe(&current),
        next.system_identifier,
        next.major,
        next.host,
        next.pgdata,
        local.pgdata_origin
    );
    if let Some(earlier) = record.find(next.system_identifier, next.major) {
        tracing::warn!(
            "this system was bound here before (from {}); its earlier backups and WAL are in the same binding directory",
            earlier.bound_at.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    if next.major < current.major {
        tracing::warn!(
            "PostgreSQL {} is older than the current binding's {}: check that this is the cluster you mean",
            next.major,
            current.major
        );
    }
    if !opts.confirm {
        tracing::info!(
            "dry run: nothing was changed; run again with --confirm to rebind. Afterwards WAL and backups of system {} are refused here",
            current.system_identifier
        );
        return Ok(Rebinding::WouldRebind);
    }
    let updated = repo.append_binding(&current, next.clone()).await?;
    tracing::info!(
        "rebound {} to system {} (PostgreSQL {}); {} earlier binding(s) stay readable, backups of system {} under backups/{}/",
        repo.describe(),
        next.system_identifier,
        next.major,
        updated.bindings.len() - 1,
        current.system_identifier,
        current.id
    );
    tracing::info!(
        "next: take a base backup now (pgproof backup-push): until one exists, system {} cannot be restored from this repository",
        next.system_identifier
    );
    Ok(Rebinding::Rebound)
}

/// "system 7712… (PostgreSQL 15, bound 2026-11-25 14:02:07 UTC from db1:/var/lib/postgresql/15/main)"
fn describe(b: &Binding) -> String {
    format!(
        "system {} (PostgreSQL {}, bound {} from {}:{})",
        b.system_identifier,
        b.major,
        b.bound_at.format("%Y-%m-%d %H:%M:%S UTC"),
        b.host,
        b.pgdata
    )
}
