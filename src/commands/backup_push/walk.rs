//! Listing what a base backup contains: the data directory as PostgreSQL's
//! own base backup reads it (see `pg::datadir`), and each tablespace behind
//! `pg_tblspc`, separately.

use crate::error::{Error, Result};
use crate::pg::datadir::{self, Decision};
use crate::repo::manifest::{Directory, Tablespace};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the data directory, or to the tablespace's directory.
    pub path: String,
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
    walk_dir(pgdata, "", None, &mut walked)?;
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
                location: location.display().to_string(),
            });
            walk_dir(&location, "", Some(oid), &mut walked)?;
        }
    }
    Ok(walked)
}

fn join(relative: &str, name: &str) -> String {
    if relative.is_empty() {
        name.to_string()
    } else {
        format!("{relative}/{name}")
    }
}

fn walk_dir(root: &Path, relative: &str, tablespace: Option<u32>, out: &mut Walked) -> Result<()> {
    let dir = if relative.is_empty() {
        root.to_path_buf()
    } else {
        root.join(relative)
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        // Dropped while we walked (a database, a temporary directory): PostgreSQL
        // replays the drop from WAL.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", &dir, e)),
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    let names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    // Unlogged relations are reset from their init fork at startup.
    let in_database_dir =
        tablespace.is_some() || relative.starts_with("base/") || relative == "global";
    let unlogged = if in_database_dir {
        datadir::unlogged_relations(names.iter().map(String::as_str))
    } else {
        Default::default()
    };

    for (entry, name) in entries.iter().zip(&names) {
        let rel = join(relative, name);
        if tablespace.is_none() && relative.is_empty() && name == "pg_tblspc" {
            record_dir(&entry.path(), &rel, None, out);
            continue;
        }
        let meta = match std::fs::metadata(entry.path()) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("reading the metadata of", &entry.path(), e)),
        };
        let decision = if tablespace.is_some() {
            tablespace_decision(name)
        } else {
            datadir::classify(&rel, meta.is_dir())
        };
        match decision {
            Decision::Skip => continue,
            Decision::KeepEmpty => record_dir(&entry.path(), &rel, tablespace, out),
            Decision::Include if meta.is_dir() => {
                record_dir(&entry.path(), &rel, tablespace, out);
                walk_dir(root, &rel, tablespace, out)?;
            }
            Decision::Include => {
                if datadir::is_unlogged_data(name, &unlogged) || !meta.is_file() {
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

fn record_dir(path: &Path, rel: &str, tablespace: Option<u32>, out: &mut Walked) {
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o700);
    out.directories.push(Directory {
        path: rel.to_string(),
        tablespace,
        mode,
    });
}
