//! What the cluster's own server says about WAL not yet archived. Status
//! works from any host that reads the repository, so a server it cannot
//! reach is reported, never an error.

use super::objectives::ServerView;
use crate::commands::cluster::LocalCluster;
use crate::pg::lsn::Lsn;
use crate::pg::walname::WalFileName;
use crate::repo::wal_dirs::WalArchive;
use crate::settings::Settings;

/// Asks the server of the configured data directory, once it is proven to
/// be the system the prefix is bound to. `archived_end` is where the
/// binding's newest archived segment ends, whatever its timeline.
pub async fn ask(
    settings: &Settings,
    bound_system: u64,
    archive: &mut WalArchive<'_>,
    segment_size: u64,
    archived_end: Option<Lsn>,
) -> ServerView {
    let Some(pgdata) = &settings.pgdata else {
        return ServerView::NotAsked;
    };
    let local = match LocalCluster::at(pgdata.value.clone(), pgdata.origin.clone()) {
        Ok(l) => l,
        Err(e) => return ServerView::Unreachable(format!("{e}")),
    };
    if local.control.system_identifier != bound_system {
        return ServerView::Unreachable(format!(
            "{} is system {}, not the prefix's system {bound_system}; its server was not asked",
            local.pgdata.display(),
            local.control.system_identifier
        ));
    }
    // Monitoring runs status every minute: a hung server must not hang it.
    let timeout = settings.timeout.min(std::time::Duration::from_secs(10));
    let connected = local
        .connect_verified_via(settings.host.as_ref(), settings.port.as_ref(), timeout)
        .await;
    let server = match connected {
        Ok(s) => s,
        Err(e) => return ServerView::Unreachable(format!("server not reached: {e}")),
    };
    let (flush_lsn, segment) = match server.connection.flushed_wal().await {
        Ok(Some(position)) => position,
        Ok(None) => {
            return ServerView::Unreachable(format!(
                "the server at {} is a standby: its primary's WAL is what would be lost",
                server.reached
            ));
        }
        Err(e) => return ServerView::Unreachable(format!("{e}")),
    };
    let timeline = WalFileName::parse(&segment).map(|n| n.timeline()).ok();
    let of_its_timeline = match timeline {
        Some(tli) => archive.newest_segment_of(tli).await,
        None => Ok(None),
    };
    match of_its_timeline {
        Ok(newest) => ServerView::Primary {
            reached: server.reached,
            flush_lsn,
            // A timeline with nothing archived yet continues from its parent's.
            archived_end: newest
                .and_then(|n| n.name.segment())
                .map(|s| s.next(segment_size).start_lsn(segment_size))
                .or(archived_end),
        },
        Err(e) => ServerView::Unreachable(format!("listing the archive: {e}")),
    }
}
