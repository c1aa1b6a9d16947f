//! The scratch directory a proof runs in, and the user its server runs as.
//!
//! Layout: `<parent>/pgproof-prove-<cluster>-<pid>/` (mode 0700, owned by the
//! server's user) holding `data/`, `tablespaces/<oid>/`, `socket/`, `conf/`
//! and `server.log`. Removed when dropped unless kept for inspection.

use crate::error::{Error, Result};
use std::ffi::CStr;
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
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Ok(ServerUser {
                uid: euid,
                gid: unsafe { libc::getegid() },
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

fn user_name(uid: u32) -> Option<String> {
    // SAFETY: getpwuid returns a pointer to static storage or null; copied at once.
    unsafe {
        let pw = libc::getpwuid(uid);
        (!pw.is_null()).then(|| CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: as above.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// The scratch directory; removed on drop unless `keep`.
pub struct Scratch {
    pub root: PathBuf,
    pub keep: bool,
}

impl Scratch {
    pub fn create(parent: &Path, cluster: &str, user: &ServerUser, keep: bool) -> Result<Scratch> {
        let root = parent.join(format!("pgproof-prove-{cluster}-{}", std::process::id()));
        std::fs::create_dir(&root).map_err(|e| {
            Error::io("creating the scratch directory", &root, e)
                .with_hint("choose another place with --scratch DIR (PGPROOF_SCRATCH, `scratch` in the configuration file); it needs room for the restored backup")
        })?;
        let scratch = Scratch { root, keep };
        std::fs::set_permissions(&scratch.root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("setting the mode of", &scratch.root, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
