//! Markers of files already pushed ahead: `<pg_wal>/.pgproof-pushed/<name>`.
//!
//! When wal-push stores files PostgreSQL has marked ready but not yet asked
//! for, it leaves a marker holding the object's key and the file's size,
//! modification time and inode. PostgreSQL's later call for that file finds
//! the marker, sees the file unchanged, confirms the object exists with one
//! cheap lookup and returns, without reading the file again. A marker is
//! used once; one that does not match is ignored and the file is pushed
//! (and compared) in full.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

pub struct Markers {
    dir: PathBuf,
}

fn fingerprint(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    Some(format!(
        "{} {} {} {}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    ))
}

impl Markers {
    /// Markers for the files of the directory `wal_dir` (pg_wal).
    pub fn new(wal_dir: &Path) -> Markers {
        Markers {
            dir: wal_dir.join(".pgproof-pushed"),
        }
    }

    /// Records that `path`, as it is now, is stored under `key`. Best effort:
    /// a missing marker only costs a full check later.
    pub fn record(&self, name: &str, path: &Path, key: &str) {
        let Some(print) = fingerprint(path) else {
            return;
        };
        if std::fs::create_dir_all(&self.dir).is_err() {
            return;
        }
        let tmp = self.dir.join(format!(".{name}.{}", std::process::id()));
        if std::fs::write(&tmp, format!("{key}\n{print}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, self.dir.join(name));
        }
    }

    /// The stored key of `path` if a marker says it was pushed and the file
    /// has not changed since. The marker is consumed either way.
    pub fn take(&self, name: &str, path: &Path) -> Option<String> {
        let marker = self.dir.join(name);
        let text = std::fs::read_to_string(&marker).ok()?;
        let _ = std::fs::remove_file(&marker);
        let (key, print) = text.split_once('\n')?;
        (fingerprint(path)?.as_str() == print.trim_end()).then(|| key.to_string())
    }

    /// Removes markers nobody came back for (files archived by other means).
    pub fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a > STALE_AFTER));
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_used_once_and_only_for_the_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("000000010000000000000003");
        std::fs::write(&file, b"segment").unwrap();
        let markers = Markers::new(dir.path());
        markers.record("000000010000000000000003", &file, "main/wal/x/key");
        assert_eq!(
            markers.take("000000010000000000000003", &file).as_deref(),
            Some("main/wal/x/key")
        );
        assert_eq!(markers.take("000000010000000000000003", &file), None);

        markers.record("000000010000000000000003", &file, "main/wal/x/key");
        std::thread::sleep(Duration::from_millis(10));
        std::fs::write(&file, b"changed").unwrap();
        assert_eq!(markers.take("000000010000000000000003", &file), None);
    }
}
