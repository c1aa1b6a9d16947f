//! The cluster's backup lock (`<cluster>/locks/backup.json`) as commands
//! use it: this process as its holder, and the judgement of a recorded
//! holder from this host (`process`), which decides whether a lock left
//! behind may be taken over.

use crate::error::Result;
use crate::process::{Liveness, ProcessId};
use crate::repo::Repository;
use crate::repo::lock::{HeldLock, Judged, LockHolder};

/// The lock backup-push holds while it runs.
pub const BACKUP: &str = "backup";

/// This process, as a lock's holder.
pub fn this_process(command: &str) -> LockHolder {
    let me = ProcessId::current();
    LockHolder::new(command, &me.host, &me.boot_id, me.pid, me.start_ticks)
}

/// Stale only when provably gone: on this host, and its pid runs no more
/// or runs a later process, or the host has booted since.
pub fn judge(holder: &LockHolder) -> Judged {
    let recorded = ProcessId {
        host: holder.host.clone(),
        boot_id: holder.boot_id.clone(),
        pid: holder.pid,
        start_ticks: holder.process_start,
    };
    match recorded.liveness() {
        Liveness::Running(why) => Judged::Held(why),
        Liveness::Gone(why) => Judged::Stale(why),
    }
}

/// Takes the backup lock, saying so when a stale one is taken over.
pub async fn take_backup_lock(repo: &Repository, command: &str) -> Result<HeldLock> {
    let held = repo
        .acquire_lock(BACKUP, &this_process(command), &judge)
        .await?;
    if let Some((stale, why)) = &held.took_over {
        tracing::warn!(
            "took over the backup lock {} left by {}: {why}",
            held.key,
            stale.describe()
        );
    }
    Ok(held)
}
