//! `pgproof restore <DEST>` (alias `backup-fetch`): phases select, validate,
//! process (download, decompress, verify every checksum, write), configure
//! recovery, sync.

mod disk;
mod durable;
pub(crate) mod select;

use super::cluster::open_repository;
use crate::codec::Compression;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::pidfile::PostmasterPid;
use crate::progress::{Progress, Unit};
use crate::repo::layout;
use crate::repo::manifest::Manifest;
use crate::repo::part_reader::{expected_files, read_part};
use crate::report;
use crate::settings::Settings;
use disk::DiskSink;
pub use disk::WriteMode;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    let tablespace_dirs = validate_destination(&opts.dest, &manifest, &opts.tablespace_map)?;
    create_directories(&opts.dest, &manifest, &tablespace_dirs)?;
    download_parts(
        &repo,
        &manifest,
        &opts.dest,
        &tablespace_dirs,
        opts.jobs,
        opts.write_mode,
    )
    .await?;
    configure_recovery(settings, opts, &manifest, &tablespace_dirs)?;
    if unsafe { libc::geteuid() } == 0 {
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
    Ok(Restored {
        manifest,
        repository: repo.describe(),
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

fn validate_destination(
    dest: &Path,
    m: &Manifest,
    map: &[(u32, PathBuf)],
) -> Result<HashMap<u32, PathBuf>> {
    refuse_unless_empty(dest)?;
    let mut dirs = HashMap::new();
    for ts in &m.tablespaces {
        let target = map
            .iter()
            .find(|(oid, _)| *oid == ts.oid)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| ts.location.as_path().to_path_buf());
        refuse_unless_empty(&target).map_err(|e| {
            e.with_hint(format!(
                "tablespace {} was at {}; give it a new empty place with --tablespace {}=DIR",
                ts.oid, ts.location, ts.oid
            ))
        })?;
        dirs.insert(ts.oid, target);
    }
    Ok(dirs)
}

fn refuse_unless_empty(dir: &Path) -> Result<()> {
    if let Ok(Some(pid)) = PostmasterPid::read(dir)
        && pid.process_alive()
    {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("a server is running in {} (pid {})", dir.display(), pid.pid),
        )
        .with_hint(
            "restore into another directory, or stop that server and empty the directory first",
        ));
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!("{} is not empty; nothing was written", dir.display()),
                )
                .with_hint("restore into an empty or new directory"));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("reading", dir, e)),
    }
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

async fn download_parts(
    repo: &crate::repo::Repository,
    m: &Manifest,
    dest: &Path,
    ts_dirs: &HashMap<u32, PathBuf>,
    jobs: usize,
    write_mode: WriteMode,
) -> Result<()> {
    let compression: Compression = m.compression.parse()?;
    let expected = Arc::new(expected_files(&m.files));
    let progress = Progress::start("restoring", Unit::Bytes, m.size);
    let results = futures::stream::iter(m.parts.iter().enumerate().map(|(index, part)| {
        let progress = progress.clone();
        let key = layout::backup_part(repo.cluster(), &m.binding, &m.name, &part.name);
        let root = root_of(dest, part.tablespace, ts_dirs).to_path_buf();
        let expected = expected.clone();
        let stored_checksum = part.stored_checksum;
        async move {
            let reader = repo.storage().blocking_reader(&key).await?;
            tokio::task::spawn_blocking(move || {
                let mut sink = DiskSink::new(root, progress, write_mode);
                let totals = read_part(
                    reader,
                    compression,
                    index,
                    &expected,
                    &key,
                    stored_checksum,
                    &mut sink,
                )?;
                sink.finish()?;
                Ok(totals.files)
            })
            .await
            .map_err(|e| Error::new(ErrorKind::LocalIo, "restore task failed").with_source(e))?
        }
    }))
    .buffer_unordered(jobs.max(1))
    .collect::<Vec<_>>()
    .await;
    progress.finish();
    let mut restored = 0usize;
    for r in results {
        restored += r?;
    }
    if restored != m.files.len() {
        return Err(Error::corrupt(format!(
            "backup {} lists {} files but its parts held {restored}",
            m.name,
            m.files.len()
        )));
    }
    Ok(())
}

fn configure_recovery(
    settings: &Settings,
    opts: &RestoreOptions,
    m: &Manifest,
    ts_dirs: &HashMap<u32, PathBuf>,
) -> Result<()> {
    let dest = &opts.dest;
    let write = |name: &str, content: &[u8]| -> Result<()> {
        let path = dest.join(name);
        std::fs::write(&path, content).map_err(|e| Error::io("writing", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("setting the mode of", &path, e))
    };
    write("backup_label", m.backup_label.as_bytes())?;
    if !m.tablespace_map.is_empty() {
        // Rewritten to the chosen locations, whose names are bytes.
        let mut map = Vec::new();
        for line in m.tablespace_map.lines() {
            let chosen = line
                .split_once(' ')
                .and_then(|(oid, _)| Some((oid, ts_dirs.get(&oid.parse::<u32>().ok()?)?)));
            match chosen {
                Some((oid, dir)) => {
                    map.extend_from_slice(oid.as_bytes());
                    map.push(b' ');
                    map.extend_from_slice(dir.as_os_str().as_bytes());
                }
                None => map.extend_from_slice(line.as_bytes()),
            }
            map.push(b'\n');
        }
        write("tablespace_map", &map)?;
    }
    write("recovery.signal", b"")?;
    let exe = std::env::current_exe().map_err(|e| Error::io("finding", Path::new("pgproof"), e))?;
    let quote = |s: &str| s.replace('\'', "''");
    let mut conf = format!(
        "\n# Added by pgproof restore of backup {} ({})\nrestore_command = '{} --repo {} --cluster {} wal-fetch %f %p'\n",
        m.name,
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
        quote(&exe.display().to_string()),
        quote(&settings.repo.value.to_string()),
        quote(settings.cluster.value.as_str()),
    );
    match &opts.target {
        Some(Target::Time(t)) => {
            conf += &format!(
                "recovery_target_time = '{}'\n",
                parse_time(t)?.format("%Y-%m-%d %H:%M:%S%.6f+00")
            )
        }
        Some(Target::Lsn(l)) => {
            conf += &format!(
                "recovery_target_lsn = '{}'\n",
                l.parse::<crate::pg::lsn::Lsn>()?
            )
        }
        Some(Target::Xid(x)) => {
            x.parse::<u64>()
                .map_err(|_| Error::config(format!("{x:?} is not a transaction id")))?;
            conf += &format!("recovery_target_xid = '{x}'\n")
        }
        Some(Target::Name(n)) => conf += &format!("recovery_target_name = '{}'\n", quote(n)),
        Some(Target::Immediate) => conf += "recovery_target = 'immediate'\n",
        None => {}
    }
    if let Some(action) = &opts.target_action {
        if !matches!(action.as_str(), "pause" | "promote" | "shutdown") {
            return Err(Error::config(format!(
                "target action {action:?} is not pause, promote or shutdown"
            )));
        }
        conf += &format!("recovery_target_action = '{action}'\n");
    }
    let auto = dest.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(|e| Error::io("writing", &auto, e))?;
    f.write_all(conf.as_bytes())
        .map_err(|e| Error::io("writing", &auto, e))?;
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
