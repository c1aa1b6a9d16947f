//! The non-exclusive backup API, per major: `pg_backup_start` /
//! `pg_backup_stop` from 15, `pg_start_backup(label, fast, false)` /
//! `pg_stop_backup(false, ...)` before. Both calls must happen on the
//! same session, which is held for the whole backup; if the session ends,
//! the server ends the backup itself.
//!
//! Every call is bounded. The stop does not wait for archiving (its wait
//! has no limit a client can set, so a broken archive_command would hang
//! the backup): the caller waits for the WAL in the archive, bounded. The
//! stop still switches to a new segment (`RequestXLogSwitch` in
//! `do_pg_backup_stop` runs whatever `wait_for_archive` says), so the stop
//! segment is archived without waiting for `archive_timeout`; on a
//! standby it cannot (see `standby`).

use crate::error::Result;
use crate::pg::lsn::Lsn;
use crate::pg::server::Connection;
use crate::pg::version::Major;
use std::time::Duration;

/// What the server hands back when a backup stops: the files that must go
/// into the backup (never into the live data directory).
#[derive(Debug, Clone)]
pub struct BackupStop {
    pub lsn: Lsn,
    pub backup_label: String,
    /// Empty when the cluster has no tablespaces.
    pub tablespace_map: String,
}

/// How long starting may take: the checkpoint it waits for. A spread one
/// may first wait for a running spread checkpoint, so twice
/// `checkpoint_timeout`, plus `slack` for everything else; an immediate
/// one on a slow disk takes no longer than a spread one.
pub async fn start_limit(conn: &Connection, slack: Duration) -> Result<Duration> {
    let row = conn
        .bounded(
            "reading checkpoint_timeout",
            conn.timeout,
            conn.client.query_one(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'checkpoint_timeout'",
                &[],
            ),
        )
        .await?;
    let seconds: i64 = row.get(0);
    Ok(Duration::from_secs(seconds.max(0) as u64) * 2 + slack)
}

pub async fn start(
    conn: &Connection,
    major: Major,
    label: &str,
    fast: bool,
    limit: Duration,
) -> Result<Lsn> {
    let sql = if major.uses_pg_backup_start() {
        "SELECT pg_backup_start($1, $2)::text"
    } else {
        "SELECT pg_start_backup($1, $2, false)::text"
    };
    let row = conn
        .bounded(
            "starting the backup",
            limit,
            conn.client.query_one(sql, &[&label, &fast]),
        )
        .await?;
    row.get::<_, String>(0).parse()
}

/// Ends backup mode without waiting for the archiver.
pub async fn stop(conn: &Connection, major: Major, limit: Duration) -> Result<BackupStop> {
    let sql = if major.uses_pg_backup_start() {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
    };
    let row = conn
        .bounded(
            "stopping the backup",
            limit,
            conn.client.query_one(sql, &[]),
        )
        .await?;
    Ok(BackupStop {
        lsn: row.get::<_, String>(0).parse()?,
        backup_label: row.get(1),
        tablespace_map: row.get::<_, Option<String>>(2).unwrap_or_default(),
    })
}
