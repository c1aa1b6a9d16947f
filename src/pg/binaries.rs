//! Finding the server binaries of one major the way operators expect: a
//! configured directory first, then Debian's `/usr/lib/postgresql/<major>/bin`,
//! then `PATH`. Each candidate's `postgres --version` must name the major:
//! a host with several majors installed often has another one first in `PATH`.

use crate::error::{Error, Result};
use crate::pg::version::Major;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `postgres` (and, when installed, the client tools
/// beside it), as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    pub bindir: PathBuf,
    /// `postgres --version`, e.g. `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    /// How the directory was found, for messages.
    pub found_by: String,
}

impl Binaries {
    pub fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }

    /// A program installed beside `postgres` (`pg_amcheck`), if it is there.
    pub fn tool(&self, name: &str) -> Option<PathBuf> {
        let path = self.bindir.join(name);
        path.is_file().then_some(path)
    }
}

/// One place to look, and why it is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub dir: PathBuf,
    pub origin: String,
}

/// The places to look, in order. `setting` is a directory that may hold
/// `{major}` (so that one setting serves every major), with its origin.
pub fn candidates(
    major: Major,
    setting: Option<(&str, &str)>,
    path_env: Option<OsString>,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some((pattern, origin)) = setting {
        out.push(Candidate {
            dir: PathBuf::from(pattern.replace("{major}", &major.number().to_string())),
            origin: format!("pg_bindir from {origin}"),
        });
    }
    out.push(Candidate {
        dir: PathBuf::from(format!("/usr/lib/postgresql/{}/bin", major.number())),
        origin: "Debian's layout".into(),
    });
    if let Some(path) = path_env {
        for dir in std::env::split_paths(&path) {
            if dir.join("postgres").is_file() {
                // Through symbolic links, so that tools beside the real binary are found.
                let real = std::fs::canonicalize(dir.join("postgres"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir);
                out.push(Candidate {
                    dir: real,
                    origin: "PATH".into(),
                });
            }
        }
    }
    out.dedup_by(|a, b| a.dir == b.dir);
    out
}

/// The first candidate whose `postgres` is of `major`; otherwise an error
/// listing what each candidate was.
pub fn find(major: Major, setting: Option<(&str, &str)>) -> Result<Binaries> {
    let mut tried = Vec::new();
    for c in candidates(major, setting, std::env::var_os("PATH")) {
        let postgres = c.dir.join("postgres");
        if !postgres.is_file() {
            tried.push(format!(
                "{} ({}): no postgres there",
                c.dir.display(),
                c.origin
            ));
            continue;
        }
        match Command::new(&postgres).arg("--version").output() {
            Ok(out) if out.status.success() => {
                let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match major_of_version(&version) {
                    Some(m) if m == major.number() => {
                        return Ok(Binaries {
                            bindir: c.dir,
                            version,
                            found_by: c.origin,
                        });
                    }
                    _ => {
                        tracing::debug!(
                            "{} is {version:?}, not PostgreSQL {major}",
                            postgres.display()
                        );
                        tried.push(format!("{} ({}): {version}", c.dir.display(), c.origin))
                    }
                }
            }
            Ok(out) => tried.push(format!(
                "{} ({}): `postgres --version` failed: {}",
                c.dir.display(),
                c.origin,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => tried.push(format!(
                "{} ({}): cannot run postgres: {e}",
                c.dir.display(),
                c.origin
            )),
        }
    }
    Err(Error::config(format!(
        "no PostgreSQL {major} server binaries found; tried {}",
        tried.join("; ")
    ))
    .with_hint(format!(
        "install PostgreSQL {major} (Debian: apt-get install postgresql-{major}), or name its bin directory with --pg-bindir, PGPROOF_PG_BINDIR or `pg_bindir` in the configuration file (\"{{major}}\" in it stands for the major)"
    )))
}

/// The major of `postgres --version` output: `postgres (PostgreSQL) 17.10`,
/// `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`, `... 18beta1`.
pub fn major_of_version(text: &str) -> Option<u32> {
    let rest = text.split_once("(PostgreSQL)")?.1.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_postgres_prints_them() {
        assert_eq!(major_of_version("postgres (PostgreSQL) 17.10"), Some(17));
        assert_eq!(
            major_of_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(major_of_version("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(major_of_version("postgres 9.6"), None);
    }

    #[test]
    fn the_setting_comes_first_then_debian_then_path() {
        let major = Major::new(17).unwrap();
        let c = candidates(
            major,
            Some(("/opt/pg/{major}/bin", "flag --pg-bindir")),
            Some(OsString::from("/nonexistent/a:/nonexistent/b")),
        );
        assert_eq!(c[0].dir, PathBuf::from("/opt/pg/17/bin"));
        assert!(c[0].origin.contains("--pg-bindir"));
        assert_eq!(c[1].dir, PathBuf::from("/usr/lib/postgresql/17/bin"));
        // PATH entries without a postgres are not candidates.
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_missing_major_names_every_place_tried() {
        let err = find(
            Major::new(13).unwrap(),
            Some(("/nonexistent/pg{major}", "test")),
        );
        // A machine may have PostgreSQL 13 installed; only its absence is checked here.
        if let Err(e) = err {
            assert!(e.to_string().contains("/nonexistent/pg13"), "{e}");
            assert!(e.hint().unwrap().contains("--pg-bindir"));
        }
    }
}
