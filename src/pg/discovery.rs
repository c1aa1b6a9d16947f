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
            let conf = conf_dir.join("postgresql.conf");
            if !conf.is_file() {
                continue;
            }
            let mut settings = BTreeMap::new();
            read_conf_file(&conf, &mut Includes::default(), &mut settings);
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

/// The settings of a postgresql.conf-format text: `name = value`, quotes
/// removed, comments dropped, the last occurrence winning. Include
/// directives stay entries of their own here; `read_settings` follows them.
pub fn parse_conf(text: &str) -> BTreeMap<String, String> {
    conf_entries(text).into_iter().collect()
}

/// The entries of a postgresql.conf-format text, in order.
fn conf_entries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
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
        out.push((name.to_lowercase(), value));
    }
    out
}

/// How deep includes nest before PostgreSQL gives up (CONF_FILE_MAX_DEPTH).
const MAX_INCLUDE_DEPTH: usize = 10;
/// Files read for one cluster at most: includes that fan out in circles
/// must not make a first look take forever.
const MAX_FILES_READ: usize = 1000;

/// The files being read, outermost first (canonical), and how many were read.
#[derive(Default)]
struct Includes {
    stack: Vec<PathBuf>,
    read: usize,
}

/// A cluster's own configuration files, in the order PostgreSQL reads them
/// (postgresql.conf in the data directory or Debian's conf dir, then
/// postgresql.auto.conf), merged, following `include`, `include_if_exists`
/// and `include_dir` (Debian's clusters keep settings in `conf.d`).
pub fn read_settings(pgdata: &Path, conf_dir: Option<&Path>) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    let main = conf_dir.unwrap_or(pgdata).join("postgresql.conf");
    for file in [main, pgdata.join("postgresql.auto.conf")] {
        read_conf_file(&file, &mut Includes::default(), &mut merged);
    }
    merged
}

/// Reads `file` into `merged`, each include at the point it appears, paths
/// relative to the including file's directory. A file including itself,
/// directly or through others, is not read again; nesting stops at
/// PostgreSQL's depth limit, and reading at `MAX_FILES_READ` files. What
/// cannot be read is skipped: this is a first look, the server is asked
/// when it runs.
fn read_conf_file(file: &Path, includes: &mut Includes, merged: &mut BTreeMap<String, String>) {
    let Ok(canonical) = file.canonicalize() else {
        return;
    };
    if includes.stack.len() > MAX_INCLUDE_DEPTH
        || includes.read >= MAX_FILES_READ
        || includes.stack.contains(&canonical)
    {
        return;
    }
    includes.read += 1;
    let Ok(text) = std::fs::read_to_string(&canonical) else {
        return;
    };
    let here = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    includes.stack.push(canonical);
    for (name, value) in conf_entries(&text) {
        match name.as_str() {
            "include" | "include_if_exists" => read_conf_file(&here.join(&value), includes, merged),
            "include_dir" => {
                let dir = here.join(&value);
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".conf") && !n.starts_with('.'))
                    .collect();
                // PostgreSQL reads them in C-locale order of their names.
                names.sort();
                for n in names {
                    read_conf_file(&dir.join(n), includes, merged);
                }
            }
            _ => {
                merged.insert(name, value);
            }
        }
    }
    includes.stack.pop();
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
    fn follows_includes_where_they_stand() {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(etc.join("conf.d")).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            etc.join("postgresql.conf"),
            "archive_mode = off\nport = 5432\ninclude_dir 'conf.d'\ninclude_if_exists 'absent.conf'\ninclude = 'extra.conf'\nwal_level = replica\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("conf.d/10-archive.conf"),
            "archive_mode = on\narchive_command = 'pgproof wal-push %p'\nwal_level = minimal\n",
        )
        .unwrap();
        std::fs::write(etc.join("conf.d/20-port.conf"), "port = 5440\n").unwrap();
        std::fs::write(etc.join("conf.d/.hidden.conf"), "port = 1\n").unwrap();
        std::fs::write(etc.join("conf.d/notes.txt"), "port = 2\n").unwrap();
        // A file including itself, and a directory including itself, are
        // read once each, not over and over.
        std::fs::write(etc.join("conf.d/30-loop.conf"), "include_dir '.'\n").unwrap();
        std::fs::write(
            etc.join("extra.conf"),
            "max_connections = 7\ninclude 'extra.conf'\n",
        )
        .unwrap();
        std::fs::write(data.join("postgresql.auto.conf"), "port = 5441\n").unwrap();

        let s = read_settings(&data, Some(&etc));
        assert_eq!(s["archive_mode"], "on");
        assert_eq!(s["archive_command"], "pgproof wal-push %p");
        assert_eq!(s["wal_level"], "replica", "set after the include_dir");
        assert_eq!(s["max_connections"], "7");
        assert_eq!(s["port"], "5441", "postgresql.auto.conf comes last");
        assert!(!s.contains_key("include_dir") && !s.contains_key("include"));
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
