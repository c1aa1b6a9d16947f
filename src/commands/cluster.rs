//! The cluster a command works for, as its own data directory describes it,
//! and the check that the repository prefix belongs to that cluster.

use crate::error::{Error, ErrorKind, Result};
use crate::pg::control::ControlFile;
use crate::pg::pidfile::PostmasterPid;
use crate::pg::server::{Connection, Endpoint, ServerIdentity};
use crate::repo::identity::Binding;
use crate::repo::{Bound, Repository};
use crate::settings::{self, Origin, Settings, Sourced};
use std::path::PathBuf;

/// A data directory and what its pg_control says.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub pgdata: PathBuf,
    pub pgdata_origin: Origin,
    pub control: ControlFile,
}

impl LocalCluster {
    /// The cluster in `pgdata`, found by `origin`.
    pub fn at(pgdata: PathBuf, origin: Origin) -> Result<LocalCluster> {
        let control = ControlFile::read(&pgdata)
            .map_err(|e| e.context(format!("data directory from {origin}")))?;
        Ok(LocalCluster {
            pgdata,
            pgdata_origin: origin,
            control,
        })
    }

    pub fn open(settings: &Settings) -> Result<LocalCluster> {
        let pgdata = settings.pgdata.clone().ok_or_else(|| {
            Error::config("no data directory is known").with_hint(
                "pass PGDATA, set --pgdata or PGPROOF_PGDATA, `pgdata` in the cluster's configuration section, or run in the data directory (as archive_command does)",
            )
        })?;
        LocalCluster::at(pgdata.value, pgdata.origin)
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
    crate::repo::open(
        &settings.repo.value,
        settings.retry,
        settings.cluster.value.clone(),
    )
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
        Bound::Mismatch(theirs) => Err(mismatch(repo, local, &theirs)),
        Bound::Older(..) => unreachable!("bind raises an older record's format"),
    }
}

/// A prefix that already belongs to the local cluster; refuses an unbound
/// one (a configuration error, with `unbound_hint`) instead of binding it,
/// one whose identity record is of an older format instead of raising it,
/// and one of another system as `bind_or_refuse` does.
pub async fn bound_or_refuse(
    repo: &Repository,
    local: &LocalCluster,
    unbound_hint: &str,
) -> Result<Binding> {
    match repo.bound(&local.binding("")).await? {
        None => Err(Error::config(format!(
            "repository prefix {} is not bound to any system yet (no identity record)",
            repo.describe()
        ))
        .with_hint(unbound_hint)),
        Some(Bound::Existing(b) | Bound::Created(b)) => Ok(b),
        Some(Bound::Mismatch(theirs)) => Err(mismatch(repo, local, &theirs)),
        Some(Bound::Older(_, format)) => Err(Error::new(
            ErrorKind::Refused,
            format!(
                "repository prefix {} is of repository format {format}, older than this pgproof's {}; raising it from here would make the pgproof archiving into it refuse the prefix",
                repo.describe(),
                crate::repo::identity::FORMAT_VERSION
            ),
        )
        .with_hint("upgrade pgproof on the primary first (its next wal-push raises the format), then back up the standby")),
    }
}

/// The refusal of a prefix bound to another system, naming both.
fn mismatch(repo: &Repository, local: &LocalCluster, theirs: &Binding) -> Error {
    Error::new(
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
            "give each cluster its own --cluster name; if this is the same cluster after pg_upgrade or a new initdb, run `pgproof rebind` for its data directory (the earlier system's backups stay restorable)",
        )
}

/// The running server of a local cluster, connected and proven to be it.
pub struct VerifiedServer {
    pub connection: Connection,
    pub identity: ServerIdentity,
    /// How the endpoint was found, for banners and manifests.
    pub reached: String,
}

impl LocalCluster {
    /// Where the cluster's server listens: `postmaster.pid` in its data
    /// directory, unless host or port settings say otherwise.
    pub fn endpoint(&self, settings: &Settings) -> Result<(Endpoint, String)> {
        self.endpoint_via(settings.host.as_ref(), settings.port.as_ref())
    }

    fn endpoint_via(
        &self,
        host: Option<&Sourced<String>>,
        port: Option<&Sourced<u16>>,
    ) -> Result<(Endpoint, String)> {
        let pid_path = self.pgdata.join("postmaster.pid");
        let pid = PostmasterPid::read(&self.pgdata)?.filter(|p| p.process_alive());
        let (host, host_origin) = match (host, &pid) {
            (Some(h), _) => (h.value.clone(), h.origin.to_string()),
            (None, Some(p)) => match &p.socket_directory {
                Some(dir) => (dir.display().to_string(), pid_path.display().to_string()),
                None => (
                    "localhost".to_string(),
                    format!("{} (no socket directory)", pid_path.display()),
                ),
            },
            (None, None) => return Err(not_running(&self.pgdata)),
        };
        let (port, port_origin) = match (port, &pid) {
            (Some(p), _) => (p.value, p.origin.to_string()),
            (None, Some(p)) => (p.port, pid_path.display().to_string()),
            (None, None) => return Err(not_running(&self.pgdata)),
        };
        let endpoint = Endpoint { host, port };
        let how = if host_origin == port_origin {
            format!("{endpoint} (from {host_origin})")
        } else {
            format!("{endpoint} (host from {host_origin}, port from {port_origin})")
        };
        Ok((endpoint, how))
    }

    /// Connects to the cluster's server and proves it is this cluster: the
    /// same system identifier as pg_control, the same data directory, the
    /// same major. Refuses, naming both sides, otherwise.
    pub async fn connect_verified(&self, settings: &Settings) -> Result<VerifiedServer> {
        self.connect_verified_via(
            settings.host.as_ref(),
            settings.port.as_ref(),
            settings.timeout,
        )
        .await
    }

    /// As `connect_verified`, with the host and port overrides given directly.
    pub async fn connect_verified_via(
        &self,
        host: Option<&Sourced<String>>,
        port: Option<&Sourced<u16>>,
        timeout: std::time::Duration,
    ) -> Result<VerifiedServer> {
        let (endpoint, reached) = self.endpoint_via(host, port)?;
        let connection =
            crate::pg::server::connect(&endpoint, &crate::pg::server::default_user(), timeout)
                .await?;
        let identity = connection.identity().await?;
        let same_dir =
            settings::canonical(&identity.data_directory) == settings::canonical(&self.pgdata);
        if identity.system_identifier != self.control.system_identifier
            || identity.major() != self.control.major.number()
            || !same_dir
        {
            return Err(Error::new(
                ErrorKind::Identity,
                format!(
                    "the server at {reached} is not the cluster in {}: the server reports system {}, PostgreSQL {}, data directory {}; {} is system {}, PostgreSQL {} per its pg_control (data directory from {})",
                    self.pgdata.display(),
                    identity.system_identifier,
                    identity.version_num,
                    identity.data_directory.display(),
                    self.pgdata.display(),
                    self.control.system_identifier,
                    self.control.major,
                    self.pgdata_origin,
                ),
            )
            .with_hint("nothing was backed up; fix the host/port settings (or PGHOST/PGPORT in the configuration) so they reach this cluster, or leave them unset to use its postmaster.pid"));
        }
        Ok(VerifiedServer {
            connection,
            identity,
            reached,
        })
    }
}

/// The start banner of a command that works on a cluster: which cluster,
/// how each fact about it was found, and which repository. The lesson of the
/// wrong-cluster backups: say it before doing anything.
pub fn announce(
    settings: &Settings,
    local: &LocalCluster,
    server: &VerifiedServer,
    repo: &Repository,
) {
    tracing::info!(
        "cluster {} (name from {}): data directory {} (from {})",
        settings.cluster.value,
        settings.cluster.origin,
        local.pgdata.display(),
        local.pgdata_origin
    );
    tracing::info!(
        "server {}: system {}, {}",
        server.reached,
        server.identity.system_identifier,
        server
            .identity
            .version
            .split(" on ")
            .next()
            .unwrap_or(&server.identity.version)
    );
    tracing::info!(
        "repository {} (from {})",
        repo.describe(),
        settings.repo.origin
    );
}

fn not_running(pgdata: &std::path::Path) -> Error {
    Error::new(
        ErrorKind::Postgres,
        format!(
            "the cluster in {} is not running (no live postmaster.pid)",
            pgdata.display()
        ),
    )
    .with_hint("start it, or give its socket directory and port with --pghost and --pgport")
}
