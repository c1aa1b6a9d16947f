//! `postmaster.pid`: where a running cluster listens. Lines, in order:
//! PID, data directory, start time, port, first socket directory, first
//! listen address, shared memory key, and (since 10) a status word.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostmasterPid {
    pub pid: i32,
    pub data_directory: PathBuf,
    pub port: u16,
    /// Empty when the server listens on no Unix socket.
    pub socket_directory: Option<PathBuf>,
    pub listen_address: Option<String>,
    /// "starting", "stopping", "ready" or "standby"; absent while a very
    /// young postmaster has not written it yet.
    pub status: Option<String>,
}

impl PostmasterPid {
    pub fn parse(text: &str) -> Result<PostmasterPid> {
        let lines: Vec<&str> = text.lines().collect();
        let bad = |what: &str| Error::corrupt(format!("postmaster.pid: {what}"));
        if lines.len() < 4 {
            return Err(bad(
                "fewer than four lines (the server may still be starting)",
            ));
        }
        let pid = lines[0]
            .trim()
            .parse::<i32>()
            .map_err(|_| bad("first line is not a process id"))?;
        let port = lines[3]
            .trim()
            .parse::<u16>()
            .map_err(|_| bad("fourth line is not a port"))?;
        let non_empty = |i: usize| lines.get(i).map(|l| l.trim()).filter(|l| !l.is_empty());
        Ok(PostmasterPid {
            pid,
            data_directory: PathBuf::from(lines[1]),
            port,
            socket_directory: non_empty(4).map(PathBuf::from),
            listen_address: non_empty(5).map(str::to_string),
            status: non_empty(7).map(str::to_string),
        })
    }

    /// Reads `PGDATA/postmaster.pid`; `Ok(None)` when the file is absent
    /// (the cluster is not running).
    pub fn read(pgdata: &Path) -> Result<Option<PostmasterPid>> {
        let path = pgdata.join("postmaster.pid");
        match std::fs::read_to_string(&path) {
            Ok(text) => PostmasterPid::parse(&text)
                .map(Some)
                .map_err(|e| e.context(path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading", &path, e)),
        }
    }

    /// Whether the process named in the file exists (a stale file survives a crash).
    pub fn process_alive(&self) -> bool {
        // No signal checks existence and permission without delivering anything;
        // EPERM still means a process with that id exists.
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), None) {
            Ok(()) => true,
            Err(e) => e == nix::errno::Errno::EPERM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pg15_file() {
        let text = "12345\n/var/lib/postgresql/15/main\n1732540000\n5433\n/var/run/postgresql\nlocalhost\n  5433001    131072\nready   \n";
        let p = PostmasterPid::parse(text).unwrap();
        assert_eq!(p.pid, 12345);
        assert_eq!(p.port, 5433);
        assert_eq!(
            p.data_directory,
            PathBuf::from("/var/lib/postgresql/15/main")
        );
        assert_eq!(
            p.socket_directory,
            Some(PathBuf::from("/var/run/postgresql"))
        );
        assert_eq!(p.listen_address.as_deref(), Some("localhost"));
        assert_eq!(p.status.as_deref(), Some("ready"));
    }

    #[test]
    fn no_socket_directory_and_young_postmaster() {
        let p = PostmasterPid::parse("1\n/d\n0\n5432\n\n*\n").unwrap();
        assert_eq!(p.socket_directory, None);
        assert_eq!(p.status, None);
        assert!(PostmasterPid::parse("1\n/d\n").is_err());
        assert!(PostmasterPid::parse("x\n/d\n0\n5432\n").is_err());
    }
}
