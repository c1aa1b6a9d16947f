//! `pgproof wal-push <path>`: archive_command. Exits 0 only once the file is
//! stored in the repository and its stored size read back; refuses WAL of any
//! other system; pushes segments PostgreSQL has already marked `.ready` in
//! parallel, so that a busy cluster's archiver never falls behind.

use super::cluster::{LocalCluster, bind_or_refuse, open_repository};
use crate::codec::Checksum;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::history::{parse_backup_history, parse_timeline_history};
use crate::pg::walheader::SegmentHeader;
use crate::pg::walname::{Segment, WalFileName};
use crate::repo::Repository;
use crate::repo::wal::{Archived, StoredWal};
use crate::report;
use crate::settings::Settings;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct WalPushOptions {
    /// The file to archive, relative to the working directory (`%p`).
    pub path: PathBuf,
}

/// Memory the look-ahead may hold: segments are read whole, so fewer are
/// pushed ahead when segments are large.
const PUSH_AHEAD_MEMORY: u64 = 256 << 20;

/// A file read, checked and checksummed, ready to store.
struct Prepared {
    name: WalFileName,
    content: Bytes,
    checksum: Checksum,
}

pub async fn run(settings: &Settings, opts: &WalPushOptions) -> Result<()> {
    let started = Instant::now();
    let local = LocalCluster::open(settings).map_err(|e| e.context("wal-push"))?;
    let path = absolute(&opts.path)?;
    let name = wal_name_of(&path)?;
    let repo = open_repository(settings)?;
    tracing::debug!(
        "archiving {} of {} into {}",
        path.display(),
        local.describe(),
        repo.describe()
    );

    // Read and check the file before anything is stored, so a foreign or
    // damaged file can never bind or touch the prefix.
    let primary = prepare(path.clone(), name, local.clone()).await?;
    let binding = bind_or_refuse(&repo, &local, "first archived WAL file").await?;

    let ahead = ready_neighbours(
        &path,
        name,
        settings.push_ahead,
        local.control.wal_segment_size,
    );
    let mut listings: BTreeMap<String, Vec<StoredWal>> = BTreeMap::new();
    for n in std::iter::once(name).chain(ahead.iter().map(|(n, _)| *n)) {
        let dir = dir_key(n);
        if let std::collections::btree_map::Entry::Vacant(slot) = listings.entry(dir) {
            slot.insert(repo.list_wal_dir(&binding.id, n).await?);
        }
    }
    let already = |n: WalFileName| listings[&dir_key(n)].iter().any(|s| s.name == n);
    let ahead: Vec<(WalFileName, PathBuf)> =
        ahead.into_iter().filter(|(n, _)| !already(*n)).collect();

    let compression = settings.compression.value;
    let primary_existing = listings[&dir_key(name)].clone();
    let push_primary = store(&repo, &binding.id, primary, compression, &primary_existing);
    let push_ahead = futures::stream::iter(ahead.into_iter().map(|(n, p)| {
        let repo = &repo;
        let local = local.clone();
        let binding = &binding.id;
        let existing = &listings[&dir_key(n)];
        async move {
            let result = match prepare(p, n, local).await {
                Ok(prepared) => store(repo, binding, prepared, compression, existing).await,
                Err(e) => Err(e),
            };
            (n, result)
        }
    }))
    .buffer_unordered(settings.push_ahead.max(1))
    .collect::<Vec<_>>();
    let (primary_result, ahead_results) = futures::join!(push_primary, push_ahead);

    let mut pushed_ahead = 0;
    for (n, result) in ahead_results {
        match result {
            Ok((Archived::Stored { .. }, _)) => pushed_ahead += 1,
            Ok((Archived::AlreadyPresent { .. }, _)) => {}
            Err(e) => {
                tracing::warn!("could not push {n} ahead (PostgreSQL will ask for it again): {e}")
            }
        }
    }
    let (archived, original_size) = primary_result?;
    let ahead_note = match pushed_ahead {
        0 => String::new(),
        1 => "; pushed 1 more ready file ahead".to_string(),
        k => format!("; pushed {k} more ready files ahead"),
    };
    match archived {
        Archived::Stored { stored_size, .. } => tracing::info!(
            "archived {name} to {} (system {}, PostgreSQL {}): {} -> {} ({}, {}) in {}{ahead_note}",
            repo.describe(),
            binding.system_identifier,
            binding.major,
            report::bytes(original_size),
            report::bytes(stored_size),
            report::ratio(stored_size, original_size),
            compression,
            report::duration(started.elapsed()),
        ),
        Archived::AlreadyPresent { .. } => tracing::info!(
            "{name} is already in {} with identical content; nothing to store ({}){ahead_note}",
            repo.describe(),
            report::duration(started.elapsed()),
        ),
    }
    Ok(())
}

async fn store(
    repo: &Repository,
    binding: &str,
    prepared: Prepared,
    compression: crate::codec::Compression,
    existing: &[StoredWal],
) -> Result<(Archived, u64)> {
    let size = prepared.content.len() as u64;
    let archived = repo
        .archive_wal(
            binding,
            prepared.name,
            prepared.content,
            prepared.checksum,
            compression,
            existing,
        )
        .await?;
    Ok((archived, size))
}

fn dir_key(name: WalFileName) -> String {
    name.segment().map(Segment::directory).unwrap_or_default()
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::io("reading the working directory", Path::new("."), e))?;
    Ok(cwd.join(path))
}

fn wal_name_of(path: &Path) -> Result<WalFileName> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    WalFileName::parse(file_name).map_err(|e| e.context(format!("refusing {}", path.display())))
}

/// Reads, checks and checksums one file on a blocking thread.
async fn prepare(path: PathBuf, name: WalFileName, local: LocalCluster) -> Result<Prepared> {
    tokio::task::spawn_blocking(move || {
        let content = std::fs::read(&path).map_err(|e| {
            Error::io("reading", &path, e)
                .with_hint("archive_command runs in PGDATA and is given a path relative to it (%p)")
        })?;
        check_content(name, &content, &local)
            .map_err(|e| e.context(format!("refusing {}", path.display())))?;
        let checksum = Checksum::of(&content);
        Ok(Prepared {
            name,
            content: Bytes::from(content),
            checksum,
        })
    })
    .await
    .map_err(|e| Error::new(ErrorKind::LocalIo, "reading task failed").with_source(e))?
}

/// What makes a file fit to archive for this cluster: WAL of this system
/// and major, named for the position it holds, complete; history files that
/// parse as the server writes them.
pub fn check_content(name: WalFileName, content: &[u8], local: &LocalCluster) -> Result<()> {
    let control = &local.control;
    match name {
        WalFileName::Segment(seg) | WalFileName::Partial(seg) => {
            let header =
                SegmentHeader::parse(content).map_err(|e| e.context("not a valid WAL segment"))?;
            let seg_size = u64::from(control.wal_segment_size);
            if content.len() as u64 != seg_size {
                return Err(Error::corrupt(format!(
                    "it is {} bytes, not {seg_size}: the file is truncated or padded",
                    content.len()
                )));
            }
            if header.system_identifier != control.system_identifier
                || header.major != control.major
            {
                return Err(Error::identity(format!(
                    "it was written by system {} (PostgreSQL {}, per its page header), but {} is system {} (PostgreSQL {}, per its pg_control; data directory from {}); nothing was archived",
                    header.system_identifier,
                    header.major,
                    local.pgdata.display(),
                    control.system_identifier,
                    control.major,
                    local.pgdata_origin,
                ))
                .with_hint("the file belongs to another cluster; check which data directory archive_command runs in and what was copied into pg_wal"));
            }
            if header.segment_size != control.wal_segment_size || !seg.fits(seg_size) {
                return Err(Error::corrupt(format!(
                    "its header says {}-byte segments, the cluster uses {}-byte segments",
                    header.segment_size, control.wal_segment_size
                )));
            }
            let expected = seg.start_lsn(seg_size);
            if header.page_address != expected || header.timeline > seg.timeline {
                return Err(Error::corrupt(format!(
                    "it is named {name} but its first page is for LSN {} on timeline {} (expected {expected} on timeline {} or earlier)",
                    header.page_address, header.timeline, seg.timeline
                )));
            }
            if matches!(name, WalFileName::Segment(_)) {
                header.check_pages(content)?;
            }
            Ok(())
        }
        WalFileName::History(tli) => {
            let text = std::str::from_utf8(content)
                .map_err(|_| Error::corrupt("timeline history file is not text"))?;
            let switches = parse_timeline_history(text)?;
            match switches.last() {
                Some(last) if last.parent < tli => Ok(()),
                _ => Err(Error::corrupt(format!(
                    "history of timeline {tli} does not end with a parent timeline below {tli}"
                ))),
            }
        }
        WalFileName::BackupHistory(..) => {
            let text = std::str::from_utf8(content)
                .map_err(|_| Error::corrupt("backup history file is not text"))?;
            parse_backup_history(text).map(|_| ())
        }
    }
}

/// Files PostgreSQL has marked ready to archive besides `name`, oldest first,
/// as many as the look-ahead setting and its memory bound allow.
fn ready_neighbours(
    path: &Path,
    name: WalFileName,
    push_ahead: usize,
    segment_size: u32,
) -> Vec<(WalFileName, PathBuf)> {
    let limit = push_ahead.min((PUSH_AHEAD_MEMORY / u64::from(segment_size.max(1))) as usize);
    let Some(wal_dir) = path.parent() else {
        return Vec::new();
    };
    if limit == 0 || !name.has_page_headers() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(wal_dir.join("archive_status")) else {
        return Vec::new();
    };
    let mut ready: Vec<WalFileName> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|f| f.strip_suffix(".ready"))
                .map(str::to_string)
        })
        .filter_map(|stem| WalFileName::parse(&stem).ok())
        .filter(|n| *n != name)
        .collect();
    ready.sort();
    ready
        .into_iter()
        .take(limit)
        .map(|n| (n, wal_dir.join(n.to_string())))
        .collect()
}
