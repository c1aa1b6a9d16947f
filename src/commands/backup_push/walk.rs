//! Listing what a base backup contains: the data directory as PostgreSQL's
//! own base backup reads it (see `pg::datadir`), and each tablespace behind
//! `pg_tblspc`, separately.

use crate::error::{Error, Result};
use crate::pg::datadir::{self, Decision};
use crate::repo::manifest::{Directory, Tablespace};
use crate::repo::path_bytes::PathBytes;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the data directory, or to the tablespace's directory.
    pub path: PathBytes,
    pub tablespace: Option<u32>,
    pub full: PathBuf,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
}

#[derive(Debug, Default)]
pub struct Walked {
    pub directories: Vec<Directory>,
    pub files: Vec<SourceFile>,
    pub tablespaces: Vec<Tablespace>,
}

pub fn walk(pgdata: &Path) -> Result<Walked> {
    let mut walked = Walked::default();
    walk_dir(pgdata, &PathBytes::default(), None, &mut walked)?;
    let tblspc = pgdata.join("pg_tblspc");
    if let Ok(entries) = std::fs::read_dir(&tblspc) {
        let mut links: Vec<_> = entries.flatten().collect();
        links.sort_by_key(|e| e.file_name());
        for e in links {
            let Some(oid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let location = std::fs::read_link(e.path()).unwrap_or_else(|_| e.path());
            walked.tablespaces.push(Tablespace {
                oid,
                location: PathBytes::from(location.clone()),
            });
            walk_dir(&location, &PathBytes::default(), Some(oid), &mut walked)?;
        }
    }
    Ok(walked)
}

fn walk_dir(
    root: &Path,
    relative: &PathBytes,
    tablespace: Option<u32>,
    out: &mut Walked,
) -> Result<()> {
    let dir = if relative.is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative.as_path())
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // Dropped while we walked (a database, a temporary directory): PostgreSQL
        // replays the drop from WAL.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", &dir, e)),
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| (e.file_name(), e)).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // PostgreSQL's rules name only ASCII files and directories: a name that
    // is not UTF-8 is never one of them, and is judged by its readable form
    // (any byte that is not UTF-8 becomes U+FFFD there, which no rule
    // matches). The name itself is kept as bytes.
    let relative_text = relative.as_path().to_string_lossy();
    // Unlogged relations are reset from their init fork at startup.
    let in_database_dir =
        tablespace.is_some() || relative_text.starts_with("base/") || relative_text == "global";
    let unlogged = if in_database_dir {
        datadir::unlogged_relations(entries.iter().filter_map(|(name, _)| name.to_str()))
    } else {
        Default::default()
    };

    for (name, entry) in &entries {
        let rel = relative.join(name);
        let name_text = name.to_string_lossy();
        if tablespace.is_none() && relative.is_empty() && name_text == "pg_tblspc" {
            record_dir(&entry.path(), &rel, None, out);
            continue;
        }
        let meta = match std::fs::metadata(entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading the metadata of", &entry.path(), e)),
        };
        let decision = if tablespace.is_some() {
            tablespace_decision(&name_text)
        } else {
            datadir::classify(&rel.as_path().to_string_lossy(), meta.is_dir())
        };
        match decision {
            Decision::Skip => continue,
            Decision::KeepEmpty => record_dir(&entry.path(), &rel, tablespace, out),
            Decision::Include if meta.is_dir() => {
                record_dir(&entry.path(), &rel, tablespace, out);
                walk_dir(root, &rel, tablespace, out)?;
            }
            Decision::Include => {
                if datadir::is_unlogged_data(&name_text, &unlogged)
                    || (in_database_dir && datadir::is_temp_relation(&name_text))
                    || !meta.is_file()
                {
                    continue;
                }
                out.files.push(SourceFile {
                    path: rel,
                    tablespace,
                    full: entry.path(),
                    size: meta.len(),
                    mode: meta.permissions().mode() & 0o7777,
                    mtime: meta.mtime(),
                });
            }
        }
    }
    Ok(())
}

/// In a tablespace only temporary files are left out.
fn tablespace_decision(name: &str) -> Decision {
    if name.starts_with("pgsql_tmp") {
        Decision::Skip
    } else {
        Decision::Include
    }
}

fn record_dir(path: &Path, rel: &PathBytes, tablespace: Option<u32>, out: &mut Walked) {
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o700);
    out.directories.push(Directory {
        path: rel.clone(),
        tablespace,
        mode,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_name_that_is_not_utf8_is_walked_with_its_own_content() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let latin1: &[u8] = b"notes-\xe9t\xe9.txt";
        // Names sorting before, between and after the Latin-1 ones, at the
        // top and inside a directory that is itself named in Latin-1.
        let names: Vec<Vec<u8>> = vec![
            b"PG_VERSION".to_vec(),
            b"a-first".to_vec(),
            latin1.to_vec(),
            b"z-last".to_vec(),
            b"pg_log/a.log".to_vec(),
            [b"pg_log/".as_slice(), latin1].concat(),
            b"pg_log/z.log".to_vec(),
            b"d\xe9p\xf4t/inside".to_vec(),
        ];
        std::fs::create_dir(root.join("pg_log")).unwrap();
        std::fs::create_dir(root.join(OsStr::from_bytes(b"d\xe9p\xf4t"))).unwrap();
        for (i, name) in names.iter().enumerate() {
            let content = format!("content {i} of {}", PathBytes::new(name.clone()));
            std::fs::write(root.join(OsStr::from_bytes(name)), content).unwrap();
        }

        let walked = walk(root).unwrap();
        // Compared as readable text, for the failure message.
        let mut got: Vec<String> = walked.files.iter().map(|f| f.path.to_string()).collect();
        got.sort();
        let mut want: Vec<String> = names
            .iter()
            .map(|n| PathBytes::new(n.clone()).to_string())
            .collect();
        want.sort();
        assert_eq!(got, want, "every file is listed once under its own name");
        for f in &walked.files {
            let i = names.iter().position(|n| n == f.path.as_bytes()).unwrap();
            let expected = format!("content {i} of {}", f.path);
            assert_eq!(f.full, root.join(f.path.as_path()), "{}", f.path);
            assert_eq!(std::fs::read(&f.full).unwrap(), expected.as_bytes());
            assert_eq!(f.size, expected.len() as u64, "{}", f.path);
        }
        let dirs: Vec<&[u8]> = walked
            .directories
            .iter()
            .map(|d| d.path.as_bytes())
            .collect();
        assert_eq!(dirs, vec![b"d\xe9p\xf4t".as_slice(), b"pg_log"]);
        assert_eq!(walked.files.len(), names.len());
    }
}
