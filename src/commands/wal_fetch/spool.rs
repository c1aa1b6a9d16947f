//! The prefetch spool: `PGDATA/pg_wal/.pgproof-prefetch/<binding>/`, on the
//! same filesystem as pg_wal so a prefetched file is renamed into place.
//! Files are named `<wal name>-<checksum digits>` (as the object's key has
//! them) and appear only once complete;
//! their checksum is verified again when taken, so a damaged spool file is
//! discarded rather than handed to PostgreSQL.

use crate::codec::ContentChecksum;
use crate::error::{Error, Result};
use crate::pg::walname::{Segment, WalFileName};
use std::path::{Path, PathBuf};

pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn new(pgdata: &Path, binding: &str) -> Spool {
        Spool {
            dir: pgdata
                .join("pg_wal")
                .join(".pgproof-prefetch")
                .join(binding),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating", &self.dir, e))
    }

    fn entries(&self) -> Vec<(WalFileName, ContentChecksum, PathBuf)> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        read.filter_map(|e| e.ok())
            .filter_map(|e| {
                let file = e.file_name().to_str()?.to_string();
                let (name, sum) = file.rsplit_once('-')?;
                Some((
                    WalFileName::parse(name).ok()?,
                    ContentChecksum::from_hex(sum).ok()?,
                    e.path(),
                ))
            })
            .collect()
    }

    pub fn contains(&self, name: WalFileName) -> bool {
        self.entries().iter().any(|(n, _, _)| *n == name)
    }

    /// Removes and returns a prefetched file if its content verifies.
    pub fn take(&self, name: WalFileName) -> Result<Option<Vec<u8>>> {
        for (n, sum, path) in self.entries() {
            if n != name {
                continue;
            }
            let content = std::fs::read(&path);
            let _ = std::fs::remove_file(&path);
            match content {
                Ok(bytes) => {
                    if sum.recompute(&bytes) == sum {
                        return Ok(Some(bytes));
                    }
                    tracing::warn!("discarded damaged prefetched file {}", path.display());
                }
                Err(e) => tracing::warn!("could not read prefetched file {}: {e}", path.display()),
            }
        }
        Ok(None)
    }

    /// Stores a verified file under its final name, atomically.
    pub fn put(&self, name: WalFileName, sum: ContentChecksum, content: &[u8]) -> Result<()> {
        let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
        std::fs::write(&tmp, content).map_err(|e| Error::io("writing", &tmp, e))?;
        let dest = self.dir.join(format!("{name}-{}", sum.to_hex()));
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io("renaming", &dest, e))
    }

    /// Drops files recovery has moved past, and leftovers of killed prefetchers.
    pub fn discard_before(&self, current: Segment) {
        for (n, _, path) in self.entries() {
            if n.segment()
                .is_some_and(|s| (s.log, s.seg) < (current.log, current.seg))
            {
                let _ = std::fs::remove_file(path);
            }
        }
        if let Ok(read) = std::fs::read_dir(&self.dir) {
            for e in read.filter_map(|e| e.ok()) {
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 600));
                if e.file_name().to_string_lossy().starts_with(".tmp-") && stale {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}
