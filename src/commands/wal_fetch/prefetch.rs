//! `pgproof wal-prefetch <name>` (internal, started by wal-fetch): downloads
//! the segments after `name` into the spool, a few at a time, so that replay
//! does not wait on one download at a time. One prefetcher per spool runs at
//! once (an advisory lock); it stops at the first segment not yet archived.

use super::spool::Spool;
use super::{check_segment_identity, choose_binding};
use crate::error::{Error, Result};
use crate::pg::control::ControlFile;
use crate::pg::walname::WalFileName;
use crate::repo::wal::WalListings;
use crate::settings::Settings;
use futures::StreamExt;

const PARALLEL_DOWNLOADS: usize = 4;

pub async fn run_prefetcher(settings: &Settings, after: &str) -> Result<()> {
    let name = WalFileName::parse(after)?;
    let Some(first) = (match name {
        WalFileName::Segment(s) => Some(s),
        _ => None,
    }) else {
        return Ok(());
    };
    let pgdata = settings
        .pgdata
        .as_ref()
        .ok_or_else(|| Error::config("wal-prefetch needs the data directory"))?
        .value
        .clone();
    let control = ControlFile::read(&pgdata)?;
    let repo = super::open_repository(settings)?;
    let binding = choose_binding(&repo, Some(&control)).await?;
    let spool = Spool::new(&pgdata, &binding.id);
    spool.ensure()?;
    let lock_path = spool.dir().join(".lock");
    let lock =
        std::fs::File::create(&lock_path).map_err(|e| Error::io("creating", &lock_path, e))?;
    // flock: released when `lock` drops, or when a killed process's descriptors close.
    if lock.try_lock().is_err() {
        return Ok(());
    }

    let seg_size = u64::from(binding.wal_segment_size);
    let mut wanted = Vec::new();
    let mut seg = first;
    for _ in 0..settings.prefetch {
        seg = seg.next(seg_size);
        let n = WalFileName::Segment(seg);
        if !spool.contains(n) {
            wanted.push(n);
        }
    }
    let mut listings = WalListings::new(&repo, &binding.id);
    let mut found = Vec::new();
    for n in wanted {
        match listings.find(n).await? {
            Some(stored) => found.push(stored.clone()),
            None => break,
        }
    }
    let results = futures::stream::iter(found.into_iter().map(|stored| {
        let repo = &repo;
        let spool = &spool;
        let binding = &binding;
        async move {
            let content = repo.fetch_wal(&stored, binding.wal_segment_size).await?;
            check_segment_identity(stored.name, &content, binding)?;
            spool.put(stored.name, stored.checksum, &content)
        }
    }))
    .buffer_unordered(PARALLEL_DOWNLOADS)
    .collect::<Vec<Result<()>>>()
    .await;
    for r in results {
        r?;
    }
    Ok(())
}
