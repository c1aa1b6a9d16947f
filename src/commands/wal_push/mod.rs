//! `pgproof wal-push <path>`: archive_command. Exits 0 only once the file is
//! stored in the repository and its stored size read back; refuses WAL of any
//! other system; pushes segments PostgreSQL has already marked `.ready` in
//! parallel, so that a busy cluster's archiver never falls behind.

mod marker;

use super::cluster::{LocalCluster, bind_or_refuse, open_repository};
use crate::codec::{Compression, ContentHasher};
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::history::{parse_backup_history, parse_timeline_history};
use crate::pg::walheader::SegmentHeader;
use crate::pg::walname::WalFileName;
use crate::repo::identity::Binding;
use crate::repo::wal::{self, Archived, Packed, WalListings};
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings};
use futures::StreamExt;
use marker::Markers;
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

/// `pgproof wal-push`, run by PostgreSQL in the data directory, which is
/// therefore the cluster's when nothing else names it.
pub async fn invoke(over: &Overrides, opts: WalPushOptions) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::WorkingDirectory)?;
        run(&settings, &opts).await
    };
    Outcome::of(result.await.map(|()| String::new()))
}

pub async fn run(settings: &Settings, opts: &WalPushOptions) -> Result<()> {
    let started = Instant::now();
    let local = LocalCluster::open(settings).map_err(|e| e.context("wal-push"))?;
    let path = super::absolute(&opts.path)?;
    let name = wal_name_of(&path)?;
    let repo = open_repository(settings)?;
    let compression = settings.compression.value;
    let markers = Markers::new(path.parent().unwrap_or(Path::new(".")));
    if let Some(key) = markers.take(&name.to_string(), &path)
        && repo.wal_object_present(&key).await?
    {
        tracing::info!(
            "{name} was already pushed to {} by an earlier call; nothing to store ({})",
            repo.describe(),
            report::duration(started.elapsed())
        );
        return Ok(());
    }
    tracing::debug!(
        "archiving {} of {} into {}",
        path.display(),
        local.describe(),
        repo.describe()
    );

    // The listing only reads. If the prefix belongs to another system the
    // listing is of a directory that system never uses, and the binding
    // check below refuses before anything is written.
    let binding_id = Binding::id_for(local.control.system_identifier, local.control.major);
    let mut listings = WalListings::new(&repo, &binding_id);
    let existing = listings.dir_of(name).await?.to_vec();
    let stored_copy = existing.iter().find(|s| s.name == name);
    let already_stored = stored_copy.is_some();
    // A copy an older pgproof stored is named by a SHA-256: compare like with like.
    let hasher = stored_copy.map_or_else(ContentHasher::new, |s| ContentHasher::like(&s.checksum));
    tracing::debug!(
        "listed the archive at {}",
        report::duration(started.elapsed())
    );

    // Read and check the whole file before anything is stored, so that a
    // foreign or damaged file can never bind or touch the prefix. A file whose
    // name is already stored is only hashed: the checksum decides.
    let packed = pack_file(
        path.clone(),
        name,
        local.clone(),
        (!already_stored).then_some(compression),
        hasher,
    )
    .await?;
    tracing::debug!(
        "read, checked and packed {name} at {}",
        report::duration(started.elapsed())
    );
    let binding = bind_or_refuse(&repo, &local, "first archived WAL file").await?;
    let original_size = packed.size;
    let archived = repo
        .archive_wal(&binding.id, name, packed, &existing)
        .await?;

    // A backlog: push the next files PostgreSQL has marked ready, in
    // parallel, so that its next calls find them stored and return at once.
    let mut pushed_ahead = 0;
    if matches!(archived, Archived::Stored { .. }) {
        let ahead = ready_neighbours(
            &path,
            name,
            settings.push_ahead,
            local.control.wal_segment_size,
        );
        let mut todo = Vec::new();
        for (n, p) in ahead {
            if listings.find(n).await?.is_none() {
                todo.push((n, p));
            }
        }
        let results = futures::stream::iter(todo.into_iter().map(|(n, p)| {
            let (repo, local, binding, markers) = (&repo, local.clone(), &binding.id, &markers);
            async move {
                let packed =
                    pack_file(p.clone(), n, local, Some(compression), ContentHasher::new()).await?;
                let archived = repo.archive_wal(binding, n, packed, &[]).await?;
                let (Archived::Stored { key, .. } | Archived::AlreadyPresent { key }) = &archived;
                markers.record(&n.to_string(), &p, key);
                Ok::<_, Error>((n, archived))
            }
        }))
        .buffer_unordered(settings.push_ahead.max(1))
        .collect::<Vec<_>>()
        .await;
        for result in results {
            match result {
                Ok((_, Archived::Stored { .. })) => pushed_ahead += 1,
                Ok((_, Archived::AlreadyPresent { .. })) => {}
                Err(e) => tracing::warn!(
                    "could not push a ready file ahead (PostgreSQL will ask for it again): {e}"
                ),
            }
        }
    }

    markers.prune();
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
            "{name} is already in {} with identical content; nothing to store ({})",
            repo.describe(),
            report::duration(started.elapsed()),
        ),
    }
    Ok(())
}

fn wal_name_of(path: &Path) -> Result<WalFileName> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    WalFileName::parse(file_name).map_err(|e| e.context(format!("refusing {}", path.display())))
}

/// Reads, checks, checksums and (optionally) compresses one file on
/// blocking threads, streaming: segments are checked page by page as they
/// are read.
async fn pack_file(
    path: PathBuf,
    name: WalFileName,
    local: LocalCluster,
    compression: Option<Compression>,
    hasher: ContentHasher,
) -> Result<Packed> {
    tokio::task::spawn_blocking(move || {
        let open_err = |e| {
            Error::io("reading", &path, e)
                .with_hint("archive_command runs in PGDATA and is given a path relative to it (%p)")
        };
        let refuse = |e: Error| e.context(format!("refusing {}", path.display()));
        if !name.has_page_headers() {
            // History and backup history files are small text files.
            let content = std::fs::read(&path).map_err(open_err)?;
            check_text_file(name, &content).map_err(refuse)?;
            return wal::pack(&mut &content[..], compression, hasher, &mut |_, _| Ok(()));
        }
        let mut file = std::fs::File::open(&path).map_err(open_err)?;
        let mut header: Option<SegmentHeader> = None;
        let full_segment = matches!(name, WalFileName::Segment(_));
        let packed = wal::pack(&mut file, compression, hasher, &mut |offset, chunk| {
            if offset == 0 {
                header = Some(check_segment_header(name, chunk, &local)?);
            }
            match &header {
                Some(h) if full_segment => h.check_page_range(chunk, offset),
                _ => Ok(()),
            }
        })
        .map_err(refuse)?;
        let seg_size = u64::from(local.control.wal_segment_size);
        if packed.size != seg_size {
            return Err(refuse(Error::corrupt(format!(
                "it is {} bytes, not {seg_size}: the file is truncated or padded",
                packed.size
            ))));
        }
        Ok(packed)
    })
    .await
    .map_err(|e| Error::new(ErrorKind::LocalIo, "reading task failed").with_source(e))?
}

/// The first page of a segment: written by this system and major, for the
/// position its name says.
fn check_segment_header(
    name: WalFileName,
    first: &[u8],
    local: &LocalCluster,
) -> Result<SegmentHeader> {
    let control = &local.control;
    let seg = name.segment().expect("only segments have page headers");
    let header = SegmentHeader::parse(first).map_err(|e| e.context("not a valid WAL segment"))?;
    if header.system_identifier != control.system_identifier || header.major != control.major {
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
    let seg_size = u64::from(control.wal_segment_size);
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
    Ok(header)
}

/// History and backup history files must parse as the server writes them.
fn check_text_file(name: WalFileName, content: &[u8]) -> Result<()> {
    match name {
        WalFileName::Segment(_) | WalFileName::Partial(_) => {
            unreachable!("segments are checked page by page as they stream")
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
