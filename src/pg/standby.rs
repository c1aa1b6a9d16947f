//! A standby as the source of a base backup: what PostgreSQL (13 to 18,
//! `do_pg_backup_start` / `do_pg_backup_stop` in xlog.c) does differently
//! when the non-exclusive backup runs during recovery.
//!
//! - Start: the checkpoint the backup asks for is a restartpoint, which can
//!   only be made at a checkpoint record replayed from the primary; the
//!   start LSN is that restartpoint's redo, possibly well behind replay.
//! - Stop: a standby can write no end-of-backup record and switch no
//!   segment. The stop LSN is pg_control's minimum recovery point at that
//!   moment, and the label says `BACKUP FROM: standby`. Recovery from the
//!   backup ends the backup at the *restored* pg_control's minimum recovery
//!   point, so pg_control must be copied after every other file (as
//!   pg_basebackup sends it last): copied earlier, it could promise
//!   consistency before the pages copied after it were replayed.
//! - A promotion during the backup makes the stop fail ("the standby was
//!   promoted during online backup"); a timeline switch followed from
//!   upstream is not detected by the server.
//! - WAL: a standby archives nothing unless `archive_mode = always`; the
//!   segments come from the primary's archiver, and the stop segment only
//!   once the primary leaves it (`archive_timeout`, `pg_switch_wal()`, or
//!   filling it).

use crate::error::{Error, ErrorKind, Result};
use crate::pg::server::Connection;
use std::path::Path;

/// The file whose presence makes a server in recovery a standby (12 on);
/// with `recovery.signal` instead it is an archive recovery that will end.
pub const SIGNAL_FILE: &str = "standby.signal";

/// Whether the server of `pgdata` starts (or runs) in standby mode: the
/// signal file exists, of whatever type, as PostgreSQL's `stat` test asks.
pub fn has_signal_file(pgdata: &Path) -> bool {
    pgdata.join(SIGNAL_FILE).exists()
}

/// Where a server in recovery stands, from its own pg_control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryState {
    pub in_recovery: bool,
    /// The timeline of pg_control's minimum recovery point: what a stop in
    /// recovery returns as the stop timeline. 0 once promoted.
    pub min_recovery_timeline: u32,
}

pub async fn recovery_state(conn: &Connection) -> Result<RecoveryState> {
    let row = conn
        .bounded(
            "asking the standby where recovery stands",
            conn.timeout,
            conn.client.query_one(
                "SELECT pg_is_in_recovery(), min_recovery_end_timeline FROM pg_control_recovery()",
                &[],
            ),
        )
        .await?;
    let timeline: i32 = row.get(1);
    Ok(RecoveryState {
        in_recovery: row.get(0),
        min_recovery_timeline: u32::try_from(timeline).map_err(|_| {
            Error::new(
                ErrorKind::Postgres,
                format!("the server reported minimum recovery timeline {timeline}"),
            )
        })?,
    })
}
