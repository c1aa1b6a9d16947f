//! Finding the PostgreSQL clusters on this host: Debian's
//! `/etc/postgresql/<major>/<name>` layout (postgresql-common), and the
//! postmasters running now (a postmaster's working directory is its data
//! directory). Also reads the few `postgresql.conf` settings that tell
//! whether a stopped cluster archives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEBIAN_CONF_ROOT: &str = "/etc/postgresql";

/// A cluster of Debian's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianCluster {
    pub major: u32,
    pub name: String,
    pub conf_dir: PathBuf,
    pub pgdata: PathBuf,
    pub port: Option<u16>,
}

/// `<root>/<major>/<name>/postgresql.conf` for every cluster there.
pub fn debian_clusters(root: &Path) -> Vec<DebianCluster> {
    let mut found = Vec::new();
    let Ok(majors) = std::fs::read_dir(root) else {
        return found;
    };
    for major_dir in majors.flatten() {
        let Some(major) = major_dir.file_name().to_str().and_then(|m| m.parse().ok()) else {
            continue;
        };
        let Ok(names) = std::fs::read_dir(major_dir.path()) else {
            continue;
        };
        for name_dir in names.flatten() {
            let conf_dir = name_dir.path();
            let Ok(text) = std::fs::read_to_string(conf_dir.join("postgresql.conf")) else {
                continue;
            };
            let settings = parse_conf(&text);
            let name = name_dir.file_name().to_string_lossy().into_owned();
            let pgdata = settings
                .get("data_directory")
                .map(PathBuf::from)
                // postgresql-common's default when data_directory is absent.
                .unwrap_or_else(|| PathBuf::from(format!("/var/lib/postgresql/{major}/{name}")));
            found.push(DebianCluster {
                major,
                name,
                port: settings.get("port").and_then(|p| p.parse().ok()),
                conf_dir,
                pgdata,
            });
        }
    }
    found.sort_by(|a, b| (a.major, &a.name).cmp(&(b.major, &b.name)));
    found
}

/// The settings of a postgresql.conf-format file: `name = value`, quotes
/// removed, comments dropped, the last occurrence winning. Includes are not
/// followed; this is for a first look, the server is asked when it runs.
pub fn parse_conf(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.split_once('=') {
            Some((n, r)) => (n.trim(), r.trim_start()),
            None => match line.split_once(char::is_whitespace) {
                Some((n, r)) => (n.trim(), r.trim_start()),
                None => continue,
            },
        };
        let value = if let Some(quoted) = rest.strip_prefix('\'') {
            // '' inside quotes is a quote.
            let mut value = String::new();
            let mut chars = quoted.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        value.push('\'');
                        chars.next();
                    } else {
                        break;
                    }
                } else {
                    value.push(c);
                }
            }
            value
        } else {
            rest.split('#').next().unwrap_or("").trim().to_string()
        };
        out.insert(name.to_lowercase(), value);
    }
    out
}

/// A cluster's own configuration files, in the order PostgreSQL reads them
/// (postgresql.conf in the data directory or Debian's conf dir, then
/// postgresql.auto.conf), merged.
pub fn read_settings(pgdata: &Path, conf_dir: Option<&Path>) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    let main = conf_dir.unwrap_or(pgdata).join("postgresql.conf");
    for file in [main, pgdata.join("postgresql.auto.conf")] {
        if let Ok(text) = std::fs::read_to_string(&file) {
            merged.extend(parse_conf(&text));
        }
    }
    merged
}

/// A postmaster running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningPostmaster {
    pub pid: u32,
    pub pgdata: PathBuf,
}

/// Every postmaster whose data directory this user may see: a `postgres`
/// process whose parent is not one, and whose working directory holds
/// PG_VERSION.
pub fn running_postmasters() -> Vec<RunningPostmaster> {
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !is_postgres(pid) || parent(pid).is_some_and(is_postgres) {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if cwd.join("PG_VERSION").is_file() {
            found.push(RunningPostmaster { pid, pgdata: cwd });
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}

fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| matches!(c.trim(), "postgres" | "postmaster"))
        .unwrap_or(false)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The major version in a data directory's PG_VERSION.
pub fn data_directory_major(pgdata: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(pgdata.join("PG_VERSION")).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postgresql_conf_as_the_server_does_for_simple_settings() {
        let conf = "\
# comment
data_directory = '/var/lib/postgresql/15/main'\t\t# use data in another directory
port = 5433\t\t\t\t# (change requires restart)
archive_mode on
archive_command = 'pgproof --cluster ''x'' wal-push %p'   # quoted
ARCHIVE_MODE = off
";
        let s = parse_conf(conf);
        assert_eq!(s["data_directory"], "/var/lib/postgresql/15/main");
        assert_eq!(s["port"], "5433");
        assert_eq!(s["archive_command"], "pgproof --cluster 'x' wal-push %p");
        assert_eq!(s["archive_mode"], "off", "the last occurrence wins");
    }

    #[test]
    fn finds_debian_clusters() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("16/reports");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("postgresql.conf"), "port = 5434\n").unwrap();
        std::fs::create_dir_all(root.path().join("notamajor/x")).unwrap();
        let found = debian_clusters(root.path());
        assert_eq!(
            found,
            [DebianCluster {
                major: 16,
                name: "reports".into(),
                conf_dir: dir,
                pgdata: "/var/lib/postgresql/16/reports".into(),
                port: Some(5434),
            }]
        );
    }

    #[test]
    fn parent_pid_of_this_process() {
        let me = std::process::id();
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
    }
}
