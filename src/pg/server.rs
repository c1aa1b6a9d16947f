//! Talking to a running server: connecting over its Unix socket (or TCP),
//! and asking who it is. Used to prove that the server reached is the
//! cluster whose data directory a command was given.

use crate::error::{Error, ErrorKind, Result};
use std::path::PathBuf;

/// Where to connect: a socket directory (an absolute path) or a host name,
/// and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.starts_with('/') {
            write!(
                f,
                "socket {}/.s.PGSQL.{}",
                self.host.trim_end_matches('/'),
                self.port
            )
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    pub system_identifier: u64,
    pub data_directory: PathBuf,
    /// `server_version_num`, e.g. 150018.
    pub version_num: u32,
    /// `version()`, the full string.
    pub version: String,
    pub in_recovery: bool,
}

impl ServerIdentity {
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

/// The user to connect as: `PGUSER`, else the operating system user (as libpq does).
pub fn default_user() -> String {
    if let Ok(u) = std::env::var("PGUSER")
        && !u.is_empty()
    {
        return u;
    }
    // getpwuid_r underneath: the runtime is multi-threaded.
    match nix::unistd::User::from_uid(nix::unistd::geteuid()) {
        Ok(Some(user)) => user.name,
        _ => "postgres".to_string(),
    }
}

/// A connection whose background task runs on the current runtime.
pub struct Connection {
    pub client: tokio_postgres::Client,
    pub endpoint: Endpoint,
    /// The connect timeout, also the limit of quick queries.
    pub timeout: std::time::Duration,
}

pub async fn connect(
    endpoint: &Endpoint,
    user: &str,
    timeout: std::time::Duration,
) -> Result<Connection> {
    connect_to(endpoint, user, "postgres", timeout).await
}

/// Like `connect`, to a named database.
pub async fn connect_to(
    endpoint: &Endpoint,
    user: &str,
    dbname: &str,
    timeout: std::time::Duration,
) -> Result<Connection> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&endpoint.host)
        .port(endpoint.port)
        .user(user)
        .dbname(dbname)
        .application_name("pgproof")
        .connect_timeout(timeout);
    if let Ok(password) = std::env::var("PGPASSWORD") {
        config.password(password);
    }
    let connected = tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls)).await;
    let (client, connection) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return Err(Error::new(ErrorKind::Postgres, format!("cannot connect to {endpoint} as {user} (database {dbname})"))
                .with_source(e)
                .with_hint("is the server running, and may this user connect through that socket (pg_hba.conf)?"));
        }
        Err(_) => {
            return Err(Error::new(
                ErrorKind::Postgres,
                format!("connecting to {endpoint} timed out after {timeout:?}"),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed: {e}");
        }
    });
    Ok(Connection {
        client,
        endpoint: endpoint.clone(),
        timeout,
    })
}

impl Connection {
    pub async fn identity(&self) -> Result<ServerIdentity> {
        let row = self
            .bounded(
                "asking the server who it is",
                self.timeout,
                self.client.query_one(
                    "SELECT (SELECT system_identifier FROM pg_control_system())::text, \
                        current_setting('data_directory'), \
                        current_setting('server_version_num'), \
                        version(), \
                        pg_is_in_recovery()",
                    &[],
                ),
            )
            .await?;
        let sysid: String = row.get(0);
        let version_num: String = row.get(2);
        Ok(ServerIdentity {
            system_identifier: sysid.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Postgres,
                    format!("server reported system identifier {sysid:?}"),
                )
            })?,
            data_directory: PathBuf::from(row.get::<_, String>(1)),
            version_num: version_num.parse().map_err(|_| {
                Error::new(
                    ErrorKind::Postgres,
                    format!("server reported version {version_num:?}"),
                )
            })?,
            version: row.get(3),
            in_recovery: row.get(4),
        })
    }

    /// How far a primary has flushed WAL (committed work is durable there)
    /// and the name of the segment holding it, which carries its timeline.
    /// A standby has no WAL of its own to lose: `None`.
    pub async fn flushed_wal(&self) -> Result<Option<(crate::pg::lsn::Lsn, String)>> {
        let row = self
            .bounded(
                "asking the server how far it flushed WAL",
                self.timeout,
                self.client.query_one(
                    "SELECT pg_is_in_recovery(), \
                        CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_flush_lsn()::text END, \
                        CASE WHEN NOT pg_is_in_recovery() THEN pg_walfile_name(pg_current_wal_flush_lsn()) END",
                    &[],
                ),
            )
            .await?;
        if row.get::<_, bool>(0) {
            return Ok(None);
        }
        let lsn: String = row.get(1);
        let lsn = lsn.parse().map_err(|_| {
            Error::new(
                ErrorKind::Postgres,
                format!("server reported flush LSN {lsn:?}"),
            )
        })?;
        Ok(Some((lsn, row.get(2))))
    }

    /// Runs one query of this session, `what` in words, for at most
    /// `limit`; past it the server is asked to cancel the query, so that
    /// neither side waits on.
    pub async fn bounded<T>(
        &self,
        what: &str,
        limit: std::time::Duration,
        query: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, query).await {
            Ok(result) => result.map_err(|e| self.query_error(what, e)),
            Err(_) => {
                let cancel = self.client.cancel_token();
                let _ =
                    tokio::time::timeout(limit, cancel.cancel_query(tokio_postgres::NoTls)).await;
                Err(Error::new(
                    ErrorKind::Postgres,
                    format!("{what} on {} did not finish within {limit:?}", self.endpoint),
                )
                .with_hint("look at the server's log and pg_stat_activity for what it waits on; raise --timeout if the server is just slow"))
            }
        }
    }

    pub fn query_error(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::new(ErrorKind::Postgres, format!("{what} on {}", self.endpoint)).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_as_operators_know_them() {
        let socket = Endpoint {
            host: "/var/run/postgresql".into(),
            port: 5433,
        };
        assert_eq!(
            socket.to_string(),
            "socket /var/run/postgresql/.s.PGSQL.5433"
        );
        let tcp = Endpoint {
            host: "db1".into(),
            port: 5432,
        };
        assert_eq!(tcp.to_string(), "db1:5432");
    }
}
