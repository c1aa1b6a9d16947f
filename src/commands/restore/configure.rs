//! The files a restore writes after the backup's own, so that PostgreSQL
//! runs exactly the recovery asked for: `backup_label` (none for an offline
//! backup), `tablespace_map`
//! (pointing at the chosen places), `recovery.signal` (and no
//! `standby.signal`), and in `postgresql.auto.conf` the recovery settings of
//! earlier restores commented out and this one's appended.

use crate::error::{Error, Result};
use crate::pg::recovery::{self, Recovery};
use crate::repo::manifest::Manifest;
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn write(
    dest: &Path,
    m: &Manifest,
    ts_dirs: &HashMap<u32, PathBuf>,
    recovery: &Recovery,
) -> Result<()> {
    // An offline backup starts from its own pg_control's checkpoint, whose
    // WAL it carries; a backup_label would send recovery elsewhere.
    if !m.offline {
        write_private(dest, "backup_label", &m.backup_label)?;
    }
    if !m.tablespace_map.is_empty() {
        write_private(
            dest,
            "tablespace_map",
            tablespace_map(&m.tablespace_map, ts_dirs),
        )?;
    }
    // Backups leave it out; one made otherwise, or copied in, would turn
    // this archive recovery into a standby that never ends.
    let standby = dest.join(crate::pg::standby::SIGNAL_FILE);
    if standby.exists() {
        std::fs::remove_file(&standby).map_err(|e| Error::io("removing", &standby, e))?;
        tracing::warn!(
            "removed standby.signal that came with backup {}: the restore starts archive recovery, not a standby",
            m.name
        );
    }
    write_private(dest, "recovery.signal", "")?;
    warn_of_targets_in_postgresql_conf(dest);
    write_auto_conf(dest, m, recovery)
}

/// The operator's own file is not edited, but a target set there would
/// still steer this recovery (or clash with its target): said loudly.
fn warn_of_targets_in_postgresql_conf(dest: &Path) {
    let path = dest.join("postgresql.conf");
    let Ok(bytes) = std::fs::read(&path) else {
        return;
    };
    let set = recovery::target_lines(&bytes);
    if !set.is_empty() {
        tracing::warn!(
            "{} sets {}: PostgreSQL will apply it to this recovery unless postgresql.auto.conf sets the same setting; remove it there before starting the server unless it is what you want",
            path.display(),
            set.join(" | ")
        );
    }
}

fn write_private(dest: &Path, name: &str, content: impl AsRef<[u8]>) -> Result<()> {
    let path = dest.join(name);
    std::fs::write(&path, content).map_err(|e| Error::io("writing", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("setting the mode of", &path, e))
}

/// The backup's tablespace_map, rewritten to the chosen locations, whose
/// names are bytes (a location need not be UTF-8).
fn tablespace_map(map: &str, ts_dirs: &HashMap<u32, PathBuf>) -> Vec<u8> {
    let mut out = Vec::with_capacity(map.len());
    for line in map.lines() {
        let chosen = line
            .split_once(' ')
            .and_then(|(oid, _)| Some((oid, ts_dirs.get(&oid.parse::<u32>().ok()?)?)));
        match chosen {
            Some((oid, dir)) => {
                out.extend_from_slice(oid.as_bytes());
                out.push(b' ');
                out.extend_from_slice(dir.as_os_str().as_bytes());
            }
            None => out.extend_from_slice(line.as_bytes()),
        }
        out.push(b'\n');
    }
    out
}

fn write_auto_conf(dest: &Path, m: &Manifest, recovery: &Recovery) -> Result<()> {
    let path = dest.join("postgresql.auto.conf");
    let existing = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    let now = chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let mut conf = recovery::neutralize(&existing, &now);
    if !conf.removed.is_empty() {
        tracing::info!(
            "commented out {} recovery setting(s) that backup {} carried in postgresql.auto.conf (left by an earlier restore): {}",
            conf.removed.len(),
            m.name,
            conf.removed
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if !conf.text.is_empty() && !conf.text.ends_with(b"\n") {
        conf.text.push(b'\n');
    }
    conf.text.push(b'\n');
    conf.text.extend_from_slice(
        recovery
            .conf_block(&format!("of backup {} on {now}", m.name))
            .as_bytes(),
    );
    std::fs::write(&path, conf.text).map_err(|e| Error::io("writing", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("setting the mode of", &path, e))
}
