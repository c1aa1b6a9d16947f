//! A backup whose source is a streaming standby (see `pg::standby` for what
//! PostgreSQL does differently there): the source proven to be a standby,
//! the prefix already the primary's, the stop checked for a promotion or a
//! timeline switch, and a WAL wait that points at the primary.

use super::super::cluster::{LocalCluster, VerifiedServer};
use crate::error::{Error, ErrorKind, Result};
use crate::pg::backup_api::{self, BackupStop};
use crate::pg::backup_label::BackupLabel;
use crate::pg::standby;
use crate::pg::version::Major;
use std::time::Duration;

/// Why an unbound prefix is refused from a standby: binding is the
/// primary's first archived segment's to do, so that the prefix holds the
/// WAL the standby's backups need before any backup exists.
pub const UNBOUND_HINT: &str = "a standby never binds a prefix: make the primary archive into this repository and cluster name first (archive_command = 'pgproof --cluster NAME wal-push %p' on the primary), then back up the standby with the same --cluster";

/// What to do when the stop segment does not arrive: only the primary can
/// finish it.
pub const WAIT_HINT: &str = "the stop segment is archived by the primary once it leaves that segment: set archive_timeout on the primary (for example '60s'), or run `SELECT pg_switch_wal()` on the primary; check that the primary's archive_command pushes to this repository and cluster name";

/// Whether a verified server in recovery is a standby to back up; one in
/// archive recovery (recovery.signal) is refused: it is about to end
/// recovery on a timeline of its own, and its backup would need WAL
/// nobody archives yet.
pub fn is_standby(local: &LocalCluster, server: &VerifiedServer) -> Result<bool> {
    if !server.identity.in_recovery {
        return Ok(false);
    }
    if standby::has_signal_file(&local.pgdata) {
        return Ok(true);
    }
    Err(Error::new(
        ErrorKind::Refused,
        format!(
            "the server at {} is in recovery but {} has no {}: it is an archive recovery, not a standby",
            server.reached,
            local.pgdata.display(),
            standby::SIGNAL_FILE
        ),
    )
    .with_hint("back it up once recovery has ended, or back up a streaming standby or the primary"))
}

/// Ends backup mode on the standby and checks that the backup is still one
/// of a standby on one timeline. A promotion or a timeline switch during
/// the copy is refused: the data is then a mix of two histories whose WAL
/// this backup's wait does not cover.
pub async fn stop(server: &VerifiedServer, major: Major, limit: Duration) -> Result<BackupStop> {
    let conn = &server.connection;
    let promoted = |detail: String| {
        Error::new(
            ErrorKind::Refused,
            format!(
                "the standby at {} was promoted during the backup ({detail}); the copy mixes two histories and is not a backup",
                server.reached
            ),
        )
        .with_hint("run backup-push again: on the new primary it is an ordinary backup")
    };
    let stop = match backup_api::stop(conn, major, limit).await {
        Ok(stop) => stop,
        Err(e) => {
            if let Ok(s) = standby::recovery_state(conn).await
                && !s.in_recovery
            {
                return Err(promoted(e.to_string()));
            }
            return Err(e);
        }
    };
    let state = standby::recovery_state(conn).await?;
    let label = BackupLabel::parse(&stop.backup_label)?;
    if !label.from_standby {
        // Promoted between the check and the start: the server ran a
        // primary's backup, which its stop finished as such.
        tracing::info!(
            "the server was promoted before the backup started; it is a backup of a primary"
        );
        return Ok(stop);
    }
    // Conservative: a promotion right after a good stop is refused too,
    // since pg_control then no longer says which timeline the stop was on.
    if !state.in_recovery {
        return Err(promoted("it is no longer in recovery".to_string()));
    }
    if state.min_recovery_timeline != label.timeline {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the standby at {} switched from timeline {} to {} during the backup (its upstream was promoted); the backup is not used",
                server.reached, label.timeline, state.min_recovery_timeline
            ),
        )
        .with_hint("run backup-push again; a standby that followed a promotion shows the new timeline at its first restartpoint there, so if this repeats, run CHECKPOINT on the new primary first"));
    }
    Ok(stop)
}
