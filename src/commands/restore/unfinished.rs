//! What makes a restore that has not finished recognisable, and never
//! startable, whenever it stops (killed, out of disk, power lost):
//!
//! - A marker, `.pgproof-restore-in-progress`, in the data directory and in
//!   each tablespace directory (each is a root of its own, and a rerun may
//!   meet any of them first), created and synced before anything else is
//!   written there, holding which backup, which process and since when, and
//!   locked (`flock`) for as long as the restore runs. A rerun takes a
//!   directory holding the marker for an interrupted restore and starts
//!   over only when it can lock the marker: the lock dies with its process,
//!   whatever became of its pid. A directory without the marker is never
//!   emptied.
//! - `global/pg_control` written under another name and renamed into place
//!   only after everything else (backup_label, recovery settings, owners)
//!   is written and synced: PostgreSQL refuses to start without it, where
//!   without backup_label it would run plain crash recovery on a half
//!   written copy and open it as if it were good.
//!
//! The markers go after pg_control is in place, the tablespaces' first: a
//! data directory holding pg_control still marked, or a tablespace
//! directory whose data directory is complete, cannot be met with its
//! marker alone, so a finished restore is never started over.

use crate::error::{Error, ErrorKind, Result};
use crate::pg::pidfile::PostmasterPid;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The marker's name in each root.
pub const MARKER: &str = ".pgproof-restore-in-progress";
/// Where PostgreSQL looks for its control file.
const PG_CONTROL: &str = "global/pg_control";
/// Where a restore writes it until the end.
const PG_CONTROL_STAGED: &str = "global/pg_control.pgproof-restore";

/// The path a restored file is written to, relative to its root: pg_control
/// is held back.
pub fn written_as(relative: &Path) -> &Path {
    if relative == Path::new(PG_CONTROL) {
        Path::new(PG_CONTROL_STAGED)
    } else {
        relative
    }
}

/// A destination root as found before anything is written.
pub enum Found {
    /// Absent or empty.
    Empty,
    /// Holds only what an interrupted restore wrote: its marker, now locked
    /// by this process, and what it says.
    Interrupted { marker: File, said: String },
}

/// Refuses a root where a server runs, a restore runs, or anything but an
/// interrupted restore is; `data_dir` for the data directory (not a
/// tablespace's).
pub fn inspect(root: &Path, data_dir: bool) -> Result<Found> {
    if let Ok(Some(pid)) = PostmasterPid::read(root)
        && pid.process_alive()
    {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "a server is running in {} (pid {})",
                root.display(),
                pid.pid
            ),
        )
        .with_hint(
            "restore into another directory, or stop that server and empty the directory first",
        ));
    }
    let mut entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Empty),
        Err(e) => return Err(Error::io("reading", root, e)),
    };
    if entries.next().is_none() {
        return Ok(Found::Empty);
    }
    let marker_path = root.join(MARKER);
    let marked = std::fs::symlink_metadata(&marker_path).is_ok_and(|m| m.is_file());
    if !marked {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is not empty; nothing was written", root.display()),
        )
        .with_hint("restore into an empty or new directory"));
    }
    let marker = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&marker_path)
        .map_err(|e| Error::io("opening", &marker_path, e))?;
    let said =
        std::io::read_to_string(&marker).map_err(|e| Error::io("reading", &marker_path, e))?;
    if !try_lock(&marker) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "another pgproof restore is writing into {} ({}); nothing was written",
                root.display(),
                summary(&said)
            ),
        )
        .with_hint("wait for it to finish, or stop it; restore into another directory meanwhile"));
    }
    if data_dir && root.join(PG_CONTROL).exists() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} holds a complete data directory (global/pg_control is in place) beside the marker of a restore ({}); it is not taken for an interrupted restore, nothing was written",
                root.display(),
                summary(&said)
            ),
        )
        .with_hint(format!(
            "a restore stopped between its last two steps leaves this, as does a server started there since: to keep it, remove {}; to restore there again, empty the directory",
            marker_path.display()
        )));
    }
    Ok(Found::Interrupted { marker, said })
}

/// The markers of a running restore, held locked until `finish` removes them.
pub struct InProgress {
    /// The data directory's first.
    held: Vec<(PathBuf, File)>,
    durable: bool,
}

/// Marks each root (the data directory first) as being restored, emptying
/// those an interrupted restore left, before anything else is written.
/// `note` says which backup is restored into which data directory.
pub fn begin(roots: Vec<(PathBuf, Found)>, note: &str, durable: bool) -> Result<InProgress> {
    let said = format!(
        "pgproof restore in progress: do not start PostgreSQL here; a rerun of the restore starts over\n{note}\npid: {}\nhost: {}\nstarted: {}\n",
        std::process::id(),
        hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
    );
    let mut held = Vec::new();
    for (root, found) in roots {
        let mut marker = match found {
            Found::Empty => create_marker(&root)?,
            Found::Interrupted { marker, said } => {
                let removed = empty_but_marker(&root)?;
                tracing::warn!(
                    "{} holds a restore that was interrupted ({}): starting over, removed the {removed} entries it had written",
                    root.display(),
                    summary(&said)
                );
                marker
            }
        };
        let path = root.join(MARKER);
        marker
            .set_len(0)
            .and_then(|()| marker.rewind())
            .and_then(|()| marker.write_all(said.as_bytes()))
            .map_err(|e| Error::io("writing", &path, e))?;
        if durable {
            // Before any data: a crash must not leave data without the marker.
            marker
                .sync_all()
                .map_err(|e| Error::io("syncing", &path, e))?;
            sync_dir(&root)?;
        }
        held.push((root, marker));
    }
    Ok(InProgress { held, durable })
}

impl InProgress {
    /// Puts pg_control in place, then removes the markers, tablespaces'
    /// first. Everything else must be written (and synced, when durable).
    pub fn finish(self) -> Result<()> {
        let Some((data_dir, _)) = self.held.first() else {
            return Ok(());
        };
        let staged = data_dir.join(PG_CONTROL_STAGED);
        let control = data_dir.join(PG_CONTROL);
        std::fs::rename(&staged, &control).map_err(|e| {
            Error::io("putting pg_control in place from", &staged, e)
                .with_hint("the backup's global/pg_control was not restored; restore again")
        })?;
        if self.durable {
            sync_dir(control.parent().unwrap_or(data_dir))?;
        }
        for (root, _locked) in self.held.iter().rev() {
            let path = root.join(MARKER);
            std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
            if self.durable {
                sync_dir(root)?;
            }
        }
        Ok(())
    }
}

fn create_marker(root: &Path) -> Result<File> {
    std::fs::create_dir_all(root).map_err(|e| Error::io("creating", root, e))?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("setting the mode of", root, e))?;
    let path = root.join(MARKER);
    // create_new: a restore started into the same empty directory since it
    // was inspected owns it.
    let marker = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| {
            let started = e.kind() == std::io::ErrorKind::AlreadyExists;
            let err = Error::io("creating", &path, e);
            if started {
                Error::new(
                    ErrorKind::Refused,
                    format!(
                        "another pgproof restore started into {} meanwhile",
                        root.display()
                    ),
                )
                .with_hint("restore into another directory")
            } else {
                err
            }
        })?;
    if !try_lock(&marker) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("another pgproof restore took {} meanwhile", root.display()),
        )
        .with_hint("restore into another directory"));
    }
    Ok(marker)
}

/// Removes everything in `root` but the marker, not following links
/// (pg_tblspc's lead to other roots).
fn empty_but_marker(root: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(root).map_err(|e| Error::io("reading", root, e))? {
        let entry = entry.map_err(|e| Error::io("reading", root, e))?;
        if entry.file_name() == MARKER {
            continue;
        }
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("reading", &path, e))?
            .is_dir();
        if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .map_err(|e| Error::io("removing", &path, e))?;
        removed += 1;
    }
    Ok(removed)
}

/// "backup B, pid P, started T" from a marker's text.
fn summary(said: &str) -> String {
    let field = |key: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or("?")
            .to_string()
    };
    format!(
        "backup {}, pgproof pid {} on {}, started {}",
        field("backup"),
        field("pid"),
        field("host"),
        field("started")
    )
}

/// An exclusive lock on `file`, without waiting; released when the last
/// descriptor of it closes, so also when its process is killed.
fn try_lock(file: &File) -> bool {
    file.try_lock().is_ok()
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> &'static str {
        "backup: B1\ndata directory: /d"
    }

    #[test]
    fn a_killed_restore_is_started_over_a_live_one_and_anything_else_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        // Absent: taken, marked.
        let found = inspect(&root, true).unwrap();
        assert!(matches!(found, Found::Empty));
        let running = begin(vec![(root.clone(), found)], note(), true).unwrap();
        std::fs::create_dir_all(root.join("base/1")).unwrap();
        std::fs::write(root.join("base/1/1259"), "x").unwrap();
        let said = std::fs::read_to_string(root.join(MARKER)).unwrap();
        assert!(
            said.contains("backup: B1") && said.contains(&format!("pid: {}", std::process::id()))
        );

        // Held by a running restore: refused, untouched.
        let err = inspect(&root, true).err().expect("refused while running");
        assert_eq!(err.kind(), ErrorKind::Refused);
        assert!(err.to_string().contains("backup B1"), "{err}");
        assert!(root.join("base/1/1259").exists());

        // Its process gone (the lock with it): started over.
        drop(running);
        let found = inspect(&root, true).unwrap();
        assert!(matches!(found, Found::Interrupted { .. }));
        let again = begin(vec![(root.clone(), found)], "backup: B2", true).unwrap();
        let left: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(MARKER)]);
        assert!(
            std::fs::read_to_string(root.join(MARKER))
                .unwrap()
                .contains("backup: B2")
        );

        // Finished: pg_control in place, no marker.
        std::fs::create_dir_all(root.join("global")).unwrap();
        std::fs::write(root.join(PG_CONTROL_STAGED), "control").unwrap();
        again.finish().unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join(PG_CONTROL)).unwrap(),
            "control"
        );
        assert!(!root.join(MARKER).exists() && !root.join(PG_CONTROL_STAGED).exists());
        // Now it is somebody's data directory: refused.
        assert_eq!(
            inspect(&root, true).err().unwrap().kind(),
            ErrorKind::Refused
        );
    }

    #[test]
    fn never_taken_for_interrupted_without_the_marker_or_with_pg_control() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("precious"), "x").unwrap();
        assert_eq!(
            inspect(&plain, true).err().unwrap().kind(),
            ErrorKind::Refused
        );

        // A marker that is a link is not a marker.
        let linked = tmp.path().join("linked");
        std::fs::create_dir_all(&linked).unwrap();
        std::fs::write(tmp.path().join("elsewhere"), "").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), linked.join(MARKER)).unwrap();
        assert_eq!(
            inspect(&linked, true).err().unwrap().kind(),
            ErrorKind::Refused
        );

        // pg_control in place beside a marker: a complete data directory.
        let complete = tmp.path().join("complete");
        std::fs::create_dir_all(complete.join("global")).unwrap();
        std::fs::write(complete.join(MARKER), note()).unwrap();
        std::fs::write(complete.join(PG_CONTROL), "c").unwrap();
        let err = inspect(&complete, true).err().unwrap();
        assert!(err.to_string().contains("complete data directory"), "{err}");
        // The same in a tablespace directory means nothing: no pg_control there.
        assert!(matches!(
            inspect(&complete, false).unwrap(),
            Found::Interrupted { .. }
        ));
    }

    #[test]
    fn only_pg_control_is_held_back() {
        let written = |p: &str| written_as(Path::new(p)).to_str().unwrap().to_string();
        assert_eq!(written("global/pg_control"), PG_CONTROL_STAGED);
        assert_eq!(written("global/1260"), "global/1260");
        assert_eq!(written("base/1/pg_control"), "base/1/pg_control");
    }
}
