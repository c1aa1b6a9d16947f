//! The scratch directory a proof runs in, and the user its server runs as.
//!
//! Layout: `<parent>/pgproof-prove-<cluster>-<pid>/` (mode 0700, owned by the
//! server's user) holding `data/`, `tablespaces/<oid>/`, `socket/`, `conf/`,
//! `server.log` and, while the proof runs, `.in-progress` (locked by it).
//! Removed when dropped unless kept for inspection. A proof killed outright
//! (SIGKILL, a crash) cannot clean up: the next proof in the same place
//! finds its directory by a marker nobody holds locked, stops its server
//! and removes it.

use crate::error::{Error, Result};
use crate::pg::pidfile::PostmasterPid;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The operating system user the proving server runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUser {
    pub uid: u32,
    pub gid: u32,
    /// Name from the password database, if the uid has one.
    pub name: Option<String>,
    /// Whether pgproof must switch to this user to start the server (it runs as root).
    pub switch: bool,
    pub why: String,
}

impl ServerUser {
    /// Ourselves, unless we are root: PostgreSQL refuses to run as root, so
    /// then the data directory's recorded owner, or `postgres` when that
    /// owner was root too.
    pub fn choose(owner_uid: u32, owner_gid: u32) -> Result<ServerUser> {
        let euid = nix::unistd::geteuid().as_raw();
        if euid != 0 {
            return Ok(ServerUser {
                uid: euid,
                gid: nix::unistd::getegid().as_raw(),
                name: user_name(euid),
                switch: false,
                why: "the user running pgproof".into(),
            });
        }
        if owner_uid != 0 {
            return Ok(ServerUser {
                uid: owner_uid,
                gid: owner_gid,
                name: user_name(owner_uid),
                switch: true,
                why: "the backed-up data directory's owner (pgproof runs as root)".into(),
            });
        }
        let (uid, gid) = lookup_user("postgres").ok_or_else(|| {
            Error::config("the backup's data directory belonged to root, and there is no `postgres` user to run the proving server as")
                .with_hint("PostgreSQL refuses to run as root: create a `postgres` user, or run pgproof prove as the user who should run the server")
        })?;
        Ok(ServerUser {
            uid,
            gid,
            name: Some("postgres".into()),
            switch: true,
            why:
                "the `postgres` user (pgproof runs as root and the data directory belonged to root)"
                    .into(),
        })
    }

    pub fn describe(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} (uid {})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

// The reentrant getpwuid_r/getpwnam_r underneath: the runtime is multi-threaded.
fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| (u.uid.as_raw(), u.gid.as_raw()))
}

/// The scratch directory; removed on drop unless `keep`.
pub struct Scratch {
    pub root: PathBuf,
    pub keep: bool,
    /// The marker, locked for as long as this proof runs: a later proof
    /// takes a directory for abandoned only when it can lock the marker.
    marker: Option<std::fs::File>,
}

/// Present in a scratch directory while its proof runs.
const IN_PROGRESS: &str = ".in-progress";

impl Scratch {
    pub fn create(parent: &Path, cluster: &str, user: &ServerUser, keep: bool) -> Result<Scratch> {
        remove_abandoned(parent, cluster, user.uid);
        let root = parent.join(format!("pgproof-prove-{cluster}-{}", std::process::id()));
        std::fs::create_dir(&root).map_err(|e| {
            Error::io("creating the scratch directory", &root, e)
                .with_hint("choose another place with --scratch DIR (PGPROOF_SCRATCH, `scratch` in the configuration file); it needs room for the restored backup")
        })?;
        let mut scratch = Scratch {
            root,
            keep,
            marker: None,
        };
        std::fs::set_permissions(&scratch.root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("setting the mode of", &scratch.root, e))?;
        let marker = scratch.root.join(IN_PROGRESS);
        let file = std::fs::File::create(&marker).map_err(|e| Error::io("writing", &marker, e))?;
        if !try_lock(&file) {
            return Err(Error::io(
                "locking",
                &marker,
                std::io::Error::last_os_error(),
            ));
        }
        scratch.marker = Some(file);
        for dir in [scratch.socket_dir(), scratch.conf_dir()] {
            std::fs::create_dir(&dir).map_err(|e| Error::io("creating", &dir, e))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("setting the mode of", &dir, e))?;
        }
        if user.switch {
            for dir in [&scratch.root, &scratch.socket_dir(), &scratch.conf_dir()] {
                chown(dir, user)?;
            }
            if let Some(closed) = parent.ancestors().find(|a| !enterable(a, user)) {
                return Err(Error::config(format!(
                    "the server's user, {}, cannot enter {}, so it could not reach the scratch directory {}",
                    user.describe(),
                    closed.display(),
                    scratch.root.display()
                ))
                .with_hint("choose a --scratch directory every ancestor of which that user may enter, e.g. under /var/tmp"));
            }
        }
        Ok(scratch)
    }

    /// A scratch directory by its path alone, kept on drop: for tests of
    /// what is derived from the path.
    #[cfg(test)]
    pub fn at(root: PathBuf) -> Scratch {
        Scratch {
            root,
            keep: true,
            marker: None,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn tablespace_dir(&self, oid: u32) -> PathBuf {
        self.root.join("tablespaces").join(oid.to_string())
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("socket")
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("conf")
    }

    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// Writes a file the server reads, readable by its user only.
    pub fn write_private(&self, path: &Path, content: &str, user: &ServerUser) -> Result<()> {
        std::fs::write(path, content).map_err(|e| Error::io("writing", path, e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("setting the mode of", path, e))?;
        if user.switch {
            chown(path, user)?;
        }
        Ok(())
    }

    /// Gives a restored tree to the server's user (when the recorded owner was root).
    pub fn chown_tree(&self, root: &Path, user: &ServerUser) -> Result<()> {
        let mut stack = vec![root.to_path_buf()];
        while let Some(p) = stack.pop() {
            std::os::unix::fs::lchown(&p, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::io("changing the owner of", &p, e))?;
            let is_dir = std::fs::symlink_metadata(&p).map(|m| m.is_dir());
            if is_dir.unwrap_or(false) {
                for e in std::fs::read_dir(&p)
                    .map_err(|e| Error::io("reading", &p, e))?
                    .flatten()
                {
                    stack.push(e.path());
                }
            }
        }
        Ok(())
    }
}

/// Whether `user` (with its primary group only: the server runs without
/// supplementary groups) may pass through the directory `dir`.
fn enterable(dir: &Path, user: &ServerUser) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = m.mode();
    if m.uid() == user.uid {
        mode & 0o100 != 0
    } else if m.gid() == user.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

fn chown(path: &Path, user: &ServerUser) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| Error::io("changing the owner of", path, e))
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.keep {
            // Kept for inspection: never taken for an abandoned one.
            let _ = std::fs::remove_file(self.root.join(IN_PROGRESS));
            self.marker = None;
            return;
        }
        // A wal-fetch prefetcher the server started may still be finishing a
        // download into the directory: try again briefly.
        for attempt in 0..10 {
            match std::fs::remove_dir_all(&self.root) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(e) if attempt == 9 => {
                    tracing::warn!(
                        "could not remove the scratch directory {}: {e}",
                        self.root.display()
                    );
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }
}

/// Removes the scratch directories under `parent` of this cluster's proofs
/// that were killed outright: marked in progress with nobody holding the
/// marker's lock. Only a real directory (no symbolic link on the way) owned
/// by `owner` (the server's user, as every scratch directory is) counts:
/// the parent is often a shared /tmp. A server still running there is
/// stopped first (immediate shutdown), once its working directory shows it
/// is that copy's postmaster; a live one that cannot be identified leaves
/// the directory alone. Failures are warnings: they must not stop a proof.
fn remove_abandoned(parent: &Path, cluster: &str, owner: u32) {
    use std::os::unix::fs::MetadataExt;
    let prefix = format!("pgproof-prove-{cluster}-");
    let Ok(parent) = parent.canonicalize() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    let real_dir =
        |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.uid() == owner);
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let root = parent.join(&name);
        let data = root.join("data");
        if !real_dir(&root) || (data.exists() && !real_dir(&data)) {
            continue;
        }
        let marker = root.join(IN_PROGRESS);
        let lockable = std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file())
            && std::fs::File::open(&marker).is_ok_and(|f| try_lock(&f));
        if !lockable {
            continue;
        }
        let mut stopped = String::new();
        // Alive as stop_postmaster judges it: an exited, unreaped postmaster
        // has no working directory to identify it by, and nothing to stop.
        if let Ok(Some(postmaster)) = PostmasterPid::read(&data)
            && process_alive(postmaster.pid)
        {
            if !runs_in(postmaster.pid, &data) {
                continue;
            }
            stop_postmaster(postmaster.pid);
            stopped = format!("; stopped its server (pid {})", postmaster.pid);
        }
        match std::fs::remove_dir_all(&root) {
            Ok(()) => tracing::warn!(
                "removed {}, left by a proof that was killed (pgproof pid {pid}){stopped}",
                root.display()
            ),
            Err(e) => tracing::warn!(
                "could not remove {}, left by a proof that was killed (pgproof pid {pid}): {e}",
                root.display()
            ),
        }
    }
}

/// An exclusive lock on `file`, without waiting; released when the last
/// descriptor of it closes, so also when its process is killed.
fn try_lock(file: &std::fs::File) -> bool {
    file.try_lock().is_ok()
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn process_alive(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(|pid| crate::process::start_ticks(pid).is_some())
}

/// Whether process `pid` works in `dir`, as a postmaster works in its
/// data directory: a pid in a stale postmaster.pid may be anyone's now.
fn runs_in(pid: i32, dir: &Path) -> bool {
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
    match (cwd, dir.canonicalize()) {
        (Ok(cwd), Ok(dir)) => cwd == dir,
        _ => false,
    }
}

/// Immediate shutdown (the copy is thrown away), then kill, each bounded.
fn stop_postmaster(pid: i32) {
    use nix::sys::signal::{Signal, kill};
    for (signal, wait) in [(Signal::SIGQUIT, 10), (Signal::SIGKILL, 5)] {
        // A process whose identity was just checked; gone already is fine.
        let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
        while process_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !process_alive(pid) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unlocked_real_directories_of_this_clusters_proofs_are_removed() {
        let parent = tempfile::tempdir().unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let make = |name: &str, marked: bool| {
            let dir = parent.path().join(name);
            std::fs::create_dir_all(dir.join("data")).unwrap();
            if marked {
                std::fs::write(dir.join(IN_PROGRESS), "").unwrap();
            }
            dir
        };
        let abandoned = make("pgproof-prove-main-101", true);
        let kept = make("pgproof-prove-main-102", false);
        let running = make("pgproof-prove-main-103", true);
        let held = std::fs::File::open(running.join(IN_PROGRESS)).unwrap();
        assert!(try_lock(&held));
        let other_cluster = make("pgproof-prove-other-104", true);
        let unrelated = make("something-105", true);
        // Planted by someone else in a shared /tmp: links to elsewhere.
        let elsewhere = make("elsewhere", true);
        let linked_data = parent.path().join("pgproof-prove-main-106");
        std::fs::create_dir(&linked_data).unwrap();
        std::fs::write(linked_data.join(IN_PROGRESS), "").unwrap();
        std::os::unix::fs::symlink(elsewhere.join("data"), linked_data.join("data")).unwrap();
        let linked_root = parent.path().join("pgproof-prove-main-107");
        std::os::unix::fs::symlink(&elsewhere, &linked_root).unwrap();

        remove_abandoned(parent.path(), "main", me);
        assert!(!abandoned.exists());
        for stays in [
            &kept,
            &running,
            &other_cluster,
            &unrelated,
            &linked_data,
            &elsewhere,
        ] {
            assert!(stays.exists(), "{} was removed", stays.display());
        }
        assert!(linked_root.symlink_metadata().is_ok());
        assert!(elsewhere.join("data").exists());

        // Owned by another user: not ours to judge.
        let foreign = make("pgproof-prove-main-108", true);
        remove_abandoned(parent.path(), "main", me + 1);
        assert!(foreign.exists());
        drop(held);
        remove_abandoned(parent.path(), "main", me);
        assert!(!running.exists() && !foreign.exists());
    }

    #[test]
    fn directories_another_user_may_enter() {
        let dir = tempfile::tempdir().unwrap();
        let stranger = ServerUser {
            uid: 54321,
            gid: 54321,
            name: None,
            switch: true,
            why: String::new(),
        };
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!enterable(dir.path(), &stranger));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o701)).unwrap();
        assert!(enterable(dir.path(), &stranger));
        assert!(!enterable(&dir.path().join("absent"), &stranger));
    }
}
