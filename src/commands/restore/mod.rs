//! `pgproof restore <DEST>` (alias `backup-fetch`): phases select, validate,
//! mark in progress (or start an interrupted restore over), process
//! (download, decompress, verify every checksum, write), configure
//! recovery, sync, put pg_control in place and unmark (`unfinished.rs`).

mod compose;
mod configure;
mod disk;
mod durable;
mod request;
pub(crate) mod select;
mod unfinished;

use super::cluster::open_repository;
use crate::error::{Error, Result};
use crate::pg::recovery::{self, Recovery};
use crate::repo::manifest::Manifest;
use crate::report;
use crate::settings::Settings;
pub use disk::WriteMode;
pub use request::{RestoreRequest, invoke, parse_tablespace_move};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Time(String),
    Lsn(String),
    Xid(String),
    Name(String),
    Immediate,
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub dest: PathBuf,
    pub backup: Option<String>,
    pub target: Option<Target>,
    /// pause, promote or shutdown.
    pub target_action: Option<String>,
    /// Tablespace oid to new location.
    pub tablespace_map: Vec<(u32, PathBuf)>,
    pub jobs: usize,
    /// Direct I/O for large files, or everything through the page cache.
    pub write_mode: WriteMode,
    /// Sync every file and directory before returning. Off only for a copy
    /// that is thrown away after use (prove's scratch directory).
    pub durable: bool,
}

/// What a restore restored, and from where.
pub struct Restored {
    pub manifest: Manifest,
    /// The repository prefix, as operators read it.
    pub repository: String,
}

/// `pgproof restore`: restores, then says what to run next.
pub async fn run(settings: &Settings, opts: &RestoreOptions) -> Result<()> {
    let started = Instant::now();
    let Restored {
        manifest,
        repository,
    } = restore(settings, opts).await?;
    tracing::info!(
        "restored {} files ({}) in {}; next: start PostgreSQL {} on {} (for example: pg_ctl -D {} start); it will replay WAL from {} through `pgproof wal-fetch`",
        manifest.files.len(),
        report::bytes(manifest.size),
        report::duration(started.elapsed()),
        manifest.major,
        opts.dest.display(),
        opts.dest.display(),
        repository
    );
    Ok(())
}

/// Restores the chosen backup into `opts.dest` and configures its recovery.
pub async fn restore(settings: &Settings, opts: &RestoreOptions) -> Result<Restored> {
    let repo = open_repository(settings)?;
    let mut selection = select::Selection {
        name: opts.backup.clone(),
        ..Default::default()
    };
    match &opts.target {
        Some(Target::Time(t)) => selection.before_time = Some(parse_time(t)?),
        Some(Target::Lsn(l)) => selection.before_lsn = Some(l.parse()?),
        _ => {}
    }
    let backups = repo.backups().await?;
    let manifest = select::choose(&backups, &selection, &repo.describe())?;
    let recovery = recovery_asked(settings, opts, &manifest)?;
    tracing::info!(
        "restoring backup {} of {} (system {}, {}; {} to {}) into {}",
        manifest.name,
        repo.describe(),
        manifest.system_identifier,
        manifest
            .server_version
            .split(" on ")
            .next()
            .unwrap_or(&manifest.server_version),
        manifest.start_lsn,
        manifest.stop_lsn,
        opts.dest.display()
    );
    manifest.check_paths()?;
    // Before anything is written: a backup whose chain is broken is named,
    // never restored in part.
    let chain = repo.chain(&manifest).await?;
    if chain.len() > 1 {
        tracing::info!(
            "backup {} is incremental; composing it from {} backups, starting with the full backup {}",
            manifest.name,
            chain.len(),
            chain[0].name
        );
    }
    let (roots, tablespace_dirs) =
        validate_destination(&opts.dest, &manifest, &opts.tablespace_map)?;
    let note = format!(
        "backup: {}\ndata directory: {}",
        manifest.name,
        opts.dest.display()
    );
    let in_progress = unfinished::begin(roots, &note, opts.durable)?;
    if let Err(e) = write_everything(&repo, opts, &chain, &tablespace_dirs, &recovery).await {
        tracing::warn!(
            "{} holds an unfinished restore, which PostgreSQL will not start on; run the restore again to start over",
            opts.dest.display()
        );
        return Err(e);
    }
    in_progress.finish()?;
    Ok(Restored {
        manifest,
        repository: repo.describe(),
    })
}

/// Everything but pg_control, written and (when durable) synced.
async fn write_everything(
    repo: &crate::repo::Repository,
    opts: &RestoreOptions,
    chain: &[Manifest],
    tablespace_dirs: &HashMap<u32, PathBuf>,
    recovery: &Recovery,
) -> Result<()> {
    let manifest = chain.last().expect("a chain holds the backup restored");
    create_directories(&opts.dest, manifest, tablespace_dirs)?;
    let target = compose::Target {
        dest: &opts.dest,
        tablespace_dirs,
        jobs: opts.jobs,
        write_mode: opts.write_mode,
    };
    compose::write_files(repo, chain, &target).await?;
    configure::write(&opts.dest, manifest, tablespace_dirs, recovery)?;
    if nix::unistd::geteuid().is_root() {
        chown_tree(&opts.dest, manifest.owner_uid, manifest.owner_gid)?;
        for dir in tablespace_dirs.values() {
            chown_tree(dir, manifest.owner_uid, manifest.owner_gid)?;
        }
    }
    if opts.durable {
        let sync_started = Instant::now();
        let roots: Vec<&Path> = std::iter::once(opts.dest.as_path())
            .chain(tablespace_dirs.values().map(PathBuf::as_path))
            .collect();
        let synced = durable::sync_trees(&roots)?;
        tracing::info!(
            "synced {} files and {} directories to disk in {}",
            synced.files,
            synced.directories,
            report::duration(sync_started.elapsed())
        );
    }
    Ok(())
}

/// The recovery asked for, checked before anything is written.
fn recovery_asked(
    settings: &Settings,
    opts: &RestoreOptions,
    manifest: &Manifest,
) -> Result<Recovery> {
    let target = match &opts.target {
        None => None,
        Some(Target::Time(t)) => Some(recovery::Target::Time(parse_time(t)?)),
        Some(Target::Lsn(l)) => Some(recovery::Target::Lsn(l.parse()?)),
        Some(Target::Xid(x)) => Some(recovery::Target::Xid(x.parse().map_err(|_| {
            Error::config(format!("{x:?} is not a transaction id"))
                .with_hint("give the number as txid_current() or pg_current_xact_id() shows it")
        })?)),
        Some(Target::Name(n)) => Some(recovery::Target::Name(n.clone())),
        Some(Target::Immediate) => Some(recovery::Target::Immediate),
    };
    let action = opts
        .target_action
        .as_deref()
        .map(str::parse::<recovery::TargetAction>)
        .transpose()?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding", Path::new("pgproof"), e))?;
    let args = settings.wal_fetch_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exe = exe.display().to_string();
    if manifest.offline && target == Some(recovery::Target::Immediate) {
        return at_shutdown_point(manifest, action, &exe, &args);
    }
    Ok(Recovery {
        restore_command: recovery::wal_fetch_command(&exe, &args),
        target,
        action,
    })
}

/// An offline backup is consistent as it was shut down, with nothing to
/// replay: PostgreSQL never reaches `recovery_target = 'immediate'` there
/// (it stops with "recovery ended before configured recovery target was
/// reached"), nor can it pause or shut down at a point it never replays
/// to. Its immediate target is a recovery that reads no segment from the
/// archive (history files still, so that the new timeline is one no other
/// cluster took) and ends at once, on a new timeline.
fn at_shutdown_point(
    manifest: &Manifest,
    action: Option<recovery::TargetAction>,
    exe: &str,
    args: &[&str],
) -> Result<Recovery> {
    match action {
        None | Some(recovery::TargetAction::Promote) => {}
        Some(action) => {
            return Err(Error::config(format!(
                "--target-action {}: backup {} is an offline backup, consistent as it was shut down with no WAL to replay, so recovery ends at once and cannot {} there",
                action.as_str(),
                manifest.name,
                action.as_str()
            ))
            .with_hint("use --target-action promote, or a later target (--target-time, --target-lsn, ...) to replay archived WAL and pause there"));
        }
    }
    tracing::info!(
        "backup {} is an offline backup: recovery replays no archived WAL and ends at once, at the shutdown checkpoint {}, on a new timeline",
        manifest.name,
        manifest.stop_lsn
    );
    Ok(Recovery {
        restore_command: recovery::wal_fetch_command_with(exe, args, &["--history-only"]),
        target: None,
        action: None,
    })
}

/// `2026-11-25 14:02:07.123+00` as psql prints it, or RFC 3339.
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let t = text.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&chrono::Utc));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = chrono::DateTime::parse_from_str(t, fmt) {
            return Ok(d.with_timezone(&chrono::Utc));
        }
    }
    Err(Error::config(format!("{text:?} is not a time with a time zone"))
        .with_hint("write it as psql prints it (2026-11-25 14:02:07.123+00) or as RFC 3339 (2026-11-25T14:02:07Z)"))
}

/// Each destination root (the data directory first) as found.
type Roots = Vec<(PathBuf, unfinished::Found)>;

/// Each root as found, and where each tablespace goes; refuses a
/// destination that is neither empty nor an interrupted restore's, before
/// anything is written.
fn validate_destination(
    dest: &Path,
    m: &Manifest,
    map: &[(u32, PathBuf)],
) -> Result<(Roots, HashMap<u32, PathBuf>)> {
    let mut roots = vec![(dest.to_path_buf(), unfinished::inspect(dest, true)?)];
    let mut dirs = HashMap::new();
    for ts in &m.tablespaces {
        let target = map
            .iter()
            .find(|(oid, _)| *oid == ts.oid)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| ts.location.as_path().to_path_buf());
        let found = unfinished::inspect(&target, false).map_err(|e| {
            e.with_hint(format!(
                "tablespace {} was at {}; give it a new empty place with --tablespace {}=DIR",
                ts.oid, ts.location, ts.oid
            ))
        })?;
        roots.push((target.clone(), found));
        dirs.insert(ts.oid, target);
    }
    Ok((roots, dirs))
}

fn root_of<'a>(
    dest: &'a Path,
    tablespace: Option<u32>,
    ts_dirs: &'a HashMap<u32, PathBuf>,
) -> &'a Path {
    match tablespace {
        None => dest,
        Some(oid) => ts_dirs.get(&oid).map(PathBuf::as_path).unwrap_or(dest),
    }
}

fn create_directories(dest: &Path, m: &Manifest, ts_dirs: &HashMap<u32, PathBuf>) -> Result<()> {
    for root in std::iter::once(dest).chain(ts_dirs.values().map(PathBuf::as_path)) {
        std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("setting the mode of", root, e))?;
    }
    for d in &m.directories {
        let path = root_of(dest, d.tablespace, ts_dirs).join(d.path.as_path());
        std::fs::create_dir_all(&path).map_err(|e| Error::io("creating", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(d.mode & 0o7777))
            .map_err(|e| Error::io("setting the mode of", &path, e))?;
    }
    for (oid, dir) in ts_dirs {
        let link = dest.join("pg_tblspc").join(oid.to_string());
        std::os::unix::fs::symlink(dir, &link).map_err(|e| Error::io("linking", &link, e))?;
    }
    Ok(())
}

fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(|e| Error::io("changing the owner of", &p, e))?;
        if std::fs::symlink_metadata(&p)
            .map(|m| m.is_dir())
            .unwrap_or(false)
        {
            for e in std::fs::read_dir(&p)
                .map_err(|e| Error::io("reading", &p, e))?
                .flatten()
            {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_operators_copy_them() {
        let want = "2026-11-25T14:02:07.123Z";
        for text in [
            "2026-11-25 14:02:07.123+00",
            "2026-11-25 16:02:07.123+02",
            "2026-11-25T14:02:07.123Z",
            "2026-11-25T14:02:07.123+00:00",
            "2026-11-25T14:02:07.123+00",
        ] {
            let t = parse_time(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                want,
                "{text}"
            );
        }
        assert_eq!(
            parse_time("2026-11-25 14:02:07+00").unwrap().timestamp() % 60,
            7
        );
        for bad in ["2026-11-25 14:02:07", "yesterday", "14:02"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
