//! `pgproof wal-fetch <name> <dest>`: restore_command.
//!
//! Exit status contract (invariant 4): 0 with the file in place (written to
//! a temporary name, synced, renamed); 1 when the file is not in the
//! archive; any other failure exits 128 during archive recovery, so that
//! PostgreSQL stops instead of ending recovery early on a file it could not
//! read, and 1 in standby mode (`standby.signal`), so that a standby retries.

mod prefetch;
mod spool;

pub use prefetch::run_prefetcher;

use super::cluster::open_repository;
use crate::commands::Outcome;
use crate::error::{Error, Result};
use crate::pg::control::ControlFile;
use crate::pg::walheader::SegmentHeader;
use crate::pg::walname::WalFileName;
use crate::repo::Repository;
use crate::repo::identity::Binding;
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings};
use spool::Spool;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The status that makes PostgreSQL abort recovery (above 125, as for a
/// command killed by a signal) rather than take the failure as "not archived".
pub const EXIT_STOP_RECOVERY: i32 = 128;
pub const EXIT_NOT_IN_ARCHIVE: i32 = 1;

#[derive(Debug, Clone)]
pub struct WalFetchOptions {
    pub name: String,
    pub dest: PathBuf,
    /// Answer "not archived" for every segment, fetching only timeline
    /// history files: the restore of an offline backup at its shutdown
    /// point replays nothing, but the server still needs the archive's
    /// histories to choose a timeline no other cluster took.
    pub history_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    Restored,
    NotInArchive,
}

/// The exit status for a failed fetch (see the module documentation).
pub fn failure_exit_code(settings: &Settings) -> i32 {
    if in_standby_mode(settings) {
        EXIT_NOT_IN_ARCHIVE
    } else {
        EXIT_STOP_RECOVERY
    }
}

fn in_standby_mode(settings: &Settings) -> bool {
    settings
        .pgdata
        .as_ref()
        .is_some_and(|p| crate::pg::standby::has_signal_file(&p.value))
}

/// `pgproof wal-fetch`, run by PostgreSQL as restore_command, whose exit
/// status tells recovery whether to go on, wait or stop.
pub async fn invoke(over: &Overrides, opts: WalFetchOptions) -> Outcome {
    let settings = match Settings::resolve(over, None, PgdataFallback::WorkingDirectory) {
        Ok(s) => s,
        // Without settings we cannot know whether this is a standby:
        // stopping recovery is the safe answer.
        Err(e) => return Outcome::failure_with_exit(e, EXIT_STOP_RECOVERY),
    };
    match run(&settings, &opts).await {
        Ok(fetched) => Outcome::report("", fetched.into()),
        Err(e) => Outcome::failure_with_exit(e, failure_exit_code(&settings)),
    }
}

/// `pgproof wal-prefetch` (internal, started by wal-fetch in the data directory).
pub async fn invoke_prefetcher(over: &Overrides, after: &str) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::WorkingDirectory)?;
        run_prefetcher(&settings, after).await
    };
    Outcome::of(result.await.map(|()| String::new()))
}

pub async fn run(settings: &Settings, opts: &WalFetchOptions) -> Result<Fetched> {
    let started = Instant::now();
    let name = WalFileName::parse(&opts.name)?;
    if opts.history_only && !matches!(name, WalFileName::History(_)) {
        tracing::info!(
            "not fetching {name}: this recovery stops where the offline backup was shut down"
        );
        return Ok(Fetched::NotInArchive);
    }
    let pgdata = settings.pgdata.as_ref().map(|p| p.value.clone());
    let control = pgdata.as_deref().and_then(|p| ControlFile::read(p).ok());
    let repo = open_repository(settings)?;
    let binding = choose_binding(&repo, control.as_ref()).await?;
    let dest = super::absolute(&opts.dest)?;
    let spool = pgdata
        .as_deref()
        .filter(|_| settings.prefetch > 0)
        .map(|p| Spool::new(p, &binding.id));

    if let (Some(spool), Some(seg)) = (&spool, name.segment()) {
        spool.discard_before(seg);
        if let Some(content) = spool.take(name)? {
            check_segment_identity(name, &content, &binding)?;
            write_atomically(&dest, &content)?;
            tracing::info!(
                "restored {name} from {} (prefetched, {}) in {}",
                repo.describe(),
                report::bytes(content.len() as u64),
                report::duration(started.elapsed())
            );
            spawn_prefetcher(settings, name);
            return Ok(Fetched::Restored);
        }
    }

    let Some(stored) = repo.find_wal(&binding.id, name).await? else {
        tracing::info!(
            "{name} is not in {} ({})",
            repo.describe(),
            report::duration(started.elapsed())
        );
        return Ok(Fetched::NotInArchive);
    };
    let content = repo.fetch_wal(&stored, binding.wal_segment_size).await?;
    check_segment_identity(name, &content, &binding)?;
    write_atomically(&dest, &content)?;
    tracing::info!(
        "restored {name} from {} ({} -> {}) in {}",
        repo.describe(),
        report::bytes(stored.stored_size),
        report::bytes(content.len() as u64),
        report::duration(started.elapsed())
    );
    if spool.is_some() && matches!(name, WalFileName::Segment(_)) {
        spawn_prefetcher(settings, name);
    }
    Ok(Fetched::Restored)
}

/// The binding of the system being recovered: the one its pg_control names
/// when there is one, else the prefix's current binding.
pub(crate) async fn choose_binding(
    repo: &Repository,
    control: Option<&ControlFile>,
) -> Result<Binding> {
    let record = repo.load_record().await?.ok_or_else(|| {
        Error::config(format!(
            "{} has no identity record: nothing was ever archived there",
            repo.describe()
        ))
        .with_hint("check the repository and cluster name that restore_command passes to pgproof")
    })?;
    match control {
        None => Ok(record.current().clone()),
        Some(c) => record.find(c.system_identifier, c.major).cloned().ok_or_else(|| {
            let known: Vec<String> =
                record.bindings.iter().map(|b| format!("{} (PostgreSQL {})", b.system_identifier, b.major)).collect();
            Error::identity(format!(
                "this data directory is system {} (PostgreSQL {}) per its pg_control, but {} holds WAL of system {} only",
                c.system_identifier,
                c.major,
                repo.describe(),
                known.join(", ")
            ))
            .with_hint("restore_command points at another cluster's prefix; fix --cluster or --repo")
        }),
    }
}

/// Defence in depth: wal-push checked this, but WAL of another system must
/// never be handed to PostgreSQL whatever happened to the repository since.
pub(crate) fn check_segment_identity(
    name: WalFileName,
    content: &[u8],
    binding: &Binding,
) -> Result<()> {
    if !name.has_page_headers() {
        return Ok(());
    }
    let header = SegmentHeader::parse(content).map_err(|e| e.context(format!("stored {name}")))?;
    if header.system_identifier != binding.system_identifier || header.major != binding.major {
        return Err(Error::identity(format!(
            "stored {name} belongs to system {} (PostgreSQL {}), not to system {} (PostgreSQL {}); it was not used",
            header.system_identifier, header.major, binding.system_identifier, binding.major
        )));
    }
    Ok(())
}

/// Writes `dest` so that it appears whole or not at all: a temporary name in
/// the same directory, synced, renamed, then the directory synced.
pub(crate) fn write_atomically(dest: &Path, content: &[u8]) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let file_name = dest.file_name().and_then(|f| f.to_str()).unwrap_or("wal");
    let tmp = dir.join(format!(".{file_name}.pgproof-tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("writing", &tmp, e));
    }
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("renaming into place", dest, e)
    })?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Starts a detached `pgproof wal-prefetch` that downloads the next segments
/// into the spool while PostgreSQL replays this one. Settings travel as
/// arguments; credentials stay in the inherited environment, never in argv.
fn spawn_prefetcher(settings: &Settings, name: WalFileName) {
    let Some(pgdata) = settings.pgdata.as_ref() else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--repo")
        .arg(settings.repo.value.to_string())
        .arg("--cluster")
        .arg(settings.cluster.value.as_str())
        .arg("--pgdata")
        .arg(&pgdata.value)
        .arg("--timeout")
        .arg(settings.timeout.as_secs().max(1).to_string())
        .arg("--prefetch")
        .arg(settings.prefetch.to_string())
        .arg("-q")
        .arg("wal-prefetch")
        .arg(name.to_string())
        .env_remove("PGPROOF_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // Its own process group: signals PostgreSQL sends to restore_command's
    // group must not kill a download half-way (the spool only ever holds
    // complete, verified files anyway).
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    if let Err(e) = cmd.spawn() {
        tracing::debug!("could not start the prefetcher: {e}");
    }
}

impl From<Fetched> for i32 {
    fn from(f: Fetched) -> i32 {
        match f {
            Fetched::Restored => 0,
            Fetched::NotInArchive => EXIT_NOT_IN_ARCHIVE,
        }
    }
}
