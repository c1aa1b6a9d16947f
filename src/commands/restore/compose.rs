//! Writing a backup's files from its chain: a full backup is a chain of
//! one. The members are read oldest first, each member's parts in
//! parallel as a full restore reads them, and each writes only the layers
//! the restored backup still uses: a file's whole copy, then the blocks
//! each later member changed, written over it in place. Files made of
//! more than one layer (or cut shorter since their whole copy) are then
//! cut to their size and read back against the checksum of the bytes the
//! backup read: every block is where it belongs, or the restore fails.

use super::disk::{DiskSink, WriteMode};
use super::root_of;
use crate::codec::{Compression, ContentHasher};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::{Progress, Unit};
use crate::repo::manifest::{FileEntry, Manifest};
use crate::repo::part_reader::{expected_layers, read_part};
use crate::repo::{Repository, layout};
use futures::StreamExt;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Target<'a> {
    pub dest: &'a Path,
    pub tablespace_dirs: &'a HashMap<u32, PathBuf>,
    pub jobs: usize,
    pub write_mode: WriteMode,
}

/// Writes `chain`'s last backup's files (`chain` oldest first).
pub async fn write_files(repo: &Repository, chain: &[Manifest], to: &Target<'_>) -> Result<()> {
    let m = chain.last().expect("a chain holds the backup restored");
    // Every layer must come from the chain, or its file would be neither
    // written nor checked.
    for f in &m.files {
        for layer in f.layers_in(&m.name) {
            let member = chain.iter().find(|c| c.name == layer.backup);
            if member.is_none_or(|c| layer.part >= c.parts.len()) {
                return Err(Error::corrupt(format!(
                    "backup {} says {} is in part {} of backup {}, which its chain does not hold",
                    m.name, f.path, layer.part, layer.backup
                ))
                .with_hint("the manifest is damaged; restore another backup"));
            }
        }
    }
    let total: u64 = m
        .files
        .iter()
        .flat_map(|f| f.layers_in(&m.name))
        .map(|l| l.size)
        .sum();
    let progress = Progress::start("restoring", Unit::Bytes, total);
    for member in chain {
        if let Err(e) = write_member(repo, m, member, to, &progress).await {
            progress.abandon();
            return Err(e);
        }
    }
    progress.finish();
    let composed: Vec<FileEntry> = m.files.iter().filter(|f| !f.is_plain()).cloned().collect();
    if !composed.is_empty() {
        check_composed(m, composed, to).await?;
    }
    Ok(())
}

/// The layers `member` holds of `m`'s files.
async fn write_member(
    repo: &Repository,
    m: &Manifest,
    member: &Manifest,
    to: &Target<'_>,
    progress: &Progress,
) -> Result<()> {
    let compression: Compression = member.compression.parse()?;
    let expected = Arc::new(expected_layers(
        &m.files,
        &m.name,
        &member.name,
        m.block_size,
    ));
    let needed: Vec<(usize, usize)> = (0..member.parts.len())
        .map(|i| (i, expected.count_in(i)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let results = futures::stream::iter(needed.iter().map(|&(index, _)| {
        let part = &member.parts[index];
        let progress = progress.clone();
        let key = layout::backup_part(repo.cluster(), &member.binding, &member.name, &part.name);
        let root = root_of(to.dest, part.tablespace, to.tablespace_dirs).to_path_buf();
        let expected = expected.clone();
        let stored_checksum = part.stored_checksum;
        let write_mode = to.write_mode;
        async move {
            let reader = repo
                .open_backup_part(&member.binding, &member.name, &part.name)
                .await
                .map_err(|e| missing(e, &key, &member.name, &m.name))?;
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
    .buffer_unordered(to.jobs.max(1))
    .collect::<Vec<_>>()
    .await;
    let mut restored = 0usize;
    for r in results {
        restored += r?;
    }
    let wanted = expected.wanted.len();
    if restored != wanted || needed.iter().map(|(_, n)| n).sum::<usize>() != wanted {
        return Err(Error::corrupt(format!(
            "backup {} should hold {wanted} entries of backup {}'s files, and its parts held {restored}",
            member.name, m.name
        ))
        .with_hint("the stored backup is damaged; restore another backup"));
    }
    Ok(())
}

/// A part that is not there is damage to the chain, named as such.
fn missing(e: Error, key: &str, member: &str, restored: &str) -> Error {
    if e.kind() != ErrorKind::NotFound {
        return e;
    }
    let whose = if member == restored {
        String::new()
    } else {
        format!(", which backup {restored} rests on,")
    };
    Error::corrupt(format!("part {key} of backup {member}{whose} is missing"))
        .with_hint("the stored backup is damaged; restore another backup")
}

/// Cuts each composed file to its size and compares it with the checksum
/// of what the backup read.
async fn check_composed(m: &Manifest, files: Vec<FileEntry>, to: &Target<'_>) -> Result<()> {
    let results = futures::stream::iter(files.into_iter().map(|f| {
        let path = root_of(to.dest, f.tablespace, to.tablespace_dirs)
            .join(super::unfinished::written_as(f.path.as_path()));
        let name = m.name.clone();
        async move {
            tokio::task::spawn_blocking(move || check_file(&path, &f, &name))
                .await
                .map_err(|e| Error::new(ErrorKind::LocalIo, "restore task failed").with_source(e))?
        }
    }))
    .buffer_unordered(to.jobs.max(1))
    .collect::<Vec<_>>()
    .await;
    results.into_iter().collect()
}

fn check_file(path: &Path, f: &FileEntry, backup: &str) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    file.set_len(f.size)
        .map_err(|e| Error::io("setting the length of", path, e))?;
    let mut hasher = ContentHasher::like(&f.checksum);
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < f.size {
        let want = buf.len().min((f.size - at) as usize);
        let n = file
            .read_at(&mut buf[..want], at)
            .map_err(|e| Error::io("reading back", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let sum = hasher.finish();
    if sum != f.checksum {
        let from: Vec<&str> = f.layers.iter().map(|l| l.backup.as_str()).collect();
        return Err(Error::corrupt(format!(
            "{} of backup {backup}, composed from backups {}, fails its checksum: stored {}, read back {sum}",
            f.path,
            from.join(", "),
            f.checksum
        ))
        .with_hint("the stored backup chain is damaged; restore another backup"));
    }
    Ok(())
}
