//! The non-exclusive backup API, per major: `pg_backup_start` /
//! `pg_backup_stop` from 15, `pg_start_backup(label, fast, false)` /
//! `pg_stop_backup(false, true)` before. Both calls must happen on the
//! same session, which is held for the whole backup.

use crate::error::Result;
use crate::pg::lsn::Lsn;
use crate::pg::server::Connection;
use crate::pg::version::Major;

/// What the server hands back when a backup stops: the files that must go
/// into the backup (never into the live data directory).
#[derive(Debug, Clone)]
pub struct BackupStop {
    pub lsn: Lsn,
    pub backup_label: String,
    /// Empty when the cluster has no tablespaces.
    pub tablespace_map: String,
}

pub async fn start(conn: &Connection, major: Major, label: &str, fast: bool) -> Result<Lsn> {
    let sql = if major.uses_pg_backup_start() {
        "SELECT pg_backup_start($1, $2)::text"
    } else {
        "SELECT pg_start_backup($1, $2, false)::text"
    };
    let row = conn
        .client
        .query_one(sql, &[&label, &fast])
        .await
        .map_err(|e| conn.query_error("starting the backup", e))?;
    row.get::<_, String>(0).parse()
}

/// Stops the backup; waits for the server to archive the last segment.
pub async fn stop(conn: &Connection, major: Major) -> Result<BackupStop> {
    let sql = if major.uses_pg_backup_start() {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(true)"
    } else {
        "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, true)"
    };
    let row = conn
        .client
        .query_one(sql, &[])
        .await
        .map_err(|e| conn.query_error("stopping the backup", e))?;
    Ok(BackupStop {
        lsn: row.get::<_, String>(0).parse()?,
        backup_label: row.get(1),
        tablespace_map: row.get::<_, Option<String>>(2).unwrap_or_default(),
    })
}
