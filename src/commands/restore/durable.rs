//! The last step of a restore: every file and directory it wrote is synced
//! before it says "restored". Without it a crash soon after would leave a
//! data directory whose backup_label promises pages the disk never got, and
//! recovery would replay onto holes. Writeback of each file's data was
//! already started as it was written, so this mostly waits for the disk.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// What was synced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub files: usize,
    pub directories: usize,
}

/// Syncs every regular file under each root, then every directory, deepest
/// first, so that a directory's entries are durable after its files are,
/// then the roots' ancestors.
/// Symbolic links (pg_tblspc) are not followed: their targets are roots of
/// their own.
pub fn sync_trees(roots: &[&Path]) -> Result<Synced> {
    let mut files = Vec::new();
    let mut directories = Vec::new();
    for root in roots {
        collect(root, &mut files, &mut directories)?;
    }
    for file in &files {
        sync_path(file)?;
    }
    for dir in directories.iter().rev() {
        sync_path(dir)?;
    }
    // The roots' own entries in their parents, up to /: restore may have
    // created several levels of new directories, each an entry a crash
    // could lose. Syncing a directory that was already durable is cheap.
    let mut ancestors = std::collections::BTreeSet::new();
    for root in roots {
        ancestors.extend(
            root.ancestors()
                .skip(1)
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf),
        );
    }
    for dir in ancestors.iter().rev() {
        sync_path(dir)?;
    }
    Ok(Synced {
        files: files.len(),
        directories: directories.len(),
    })
}

fn collect(root: &Path, files: &mut Vec<PathBuf>, directories: &mut Vec<PathBuf>) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io("reading", &dir, e))? {
            let entry = entry.map_err(|e| Error::io("reading", &dir, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| Error::io("reading", &entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
        directories.push(dir);
    }
    Ok(())
}

fn sync_path(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| {
            Error::io("syncing", path, e)
                .with_hint("the disk did not confirm the restored data; check the system log for I/O errors and restore again")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_and_directory_once_links_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pgdata");
        let elsewhere = tmp.path().join("ts");
        std::fs::create_dir_all(root.join("base/1")).unwrap();
        std::fs::create_dir_all(root.join("pg_tblspc")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::write(root.join("PG_VERSION"), "15\n").unwrap();
        std::fs::write(root.join("base/1/1259"), [0u8; 8192]).unwrap();
        std::fs::write(elsewhere.join("x"), "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("pg_tblspc/16384")).unwrap();

        let synced = sync_trees(&[&root]).unwrap();
        assert_eq!(
            synced,
            Synced {
                files: 2,
                directories: 4
            }
        );
        let both = sync_trees(&[&root, &elsewhere]).unwrap();
        assert_eq!(
            both,
            Synced {
                files: 3,
                directories: 5
            }
        );
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("gone");
        let err = sync_trees(&[&gone]).unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
    }
}
