//! What `enable` will change, from the server's current settings: pure,
//! so that the exact text it shows is the text it sets.

use crate::error::{Error, Result};
use std::path::Path;

/// The settings of the running server that decide whether it archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The value in effect: `off`, `on` or `always`.
    pub archive_mode: String,
    /// What the files set, when it is not yet in effect (set by an earlier
    /// `enable --confirm`, waiting for a restart).
    pub archive_mode_pending: Option<String>,
    /// The real value, even while archiving is off (some majors then show
    /// `(disabled)`).
    pub archive_command: String,
    /// 15 and later; `None` before.
    pub archive_library: Option<String>,
    pub wal_level: String,
}

/// One setting to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: &'static str,
    pub from: String,
    pub to: String,
    /// Only a server restart puts it in effect (a reload does not).
    pub restart: bool,
    /// Already in the configuration files, waiting for a restart.
    pub pending: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// What an operator should know before confirming.
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn needs_restart(&self) -> bool {
        self.changes.iter().any(|c| c.restart)
    }
}

/// The changes that make the server archive through `archive_command`.
pub fn plan(current: &Current, archive_command: &str) -> Plan {
    let mut plan = Plan::default();
    if current.wal_level == "minimal" {
        // The server refuses to start with archiving on at wal_level minimal.
        plan.changes.push(Change {
            name: "wal_level",
            from: current.wal_level.clone(),
            to: "replica".into(),
            restart: true,
            pending: false,
        });
    }
    if current.archive_mode != "on" && current.archive_mode != "always" {
        plan.changes.push(Change {
            name: "archive_mode",
            from: current.archive_mode.clone(),
            to: "on".into(),
            restart: true,
            pending: matches!(
                current.archive_mode_pending.as_deref(),
                Some("on" | "always")
            ),
        });
    }
    if let Some(library) = &current.archive_library
        && !library.is_empty()
    {
        // With a library set, archive_command is ignored (15) or archiving
        // fails (16 and later).
        plan.changes.push(Change {
            name: "archive_library",
            from: library.clone(),
            to: String::new(),
            restart: false,
            pending: false,
        });
    }
    if current.archive_command != archive_command {
        let existing = current.archive_command.trim();
        if !existing.is_empty() && crate::commands::archiver::parse(existing).is_err() {
            plan.warnings.push(format!(
                "the archive_command in use, {existing:?}, does not call pgproof wal-push: once replaced, WAL no longer goes where it goes now"
            ));
        }
        plan.changes.push(Change {
            name: "archive_command",
            from: current.archive_command.clone(),
            to: archive_command.to_string(),
            restart: false,
            pending: false,
        });
    }
    plan
}

/// What the archive_command is made of.
#[derive(Debug, Clone)]
pub struct CommandParts<'a> {
    /// The pgproof binary, absolute.
    pub program: &'a Path,
    pub config: Option<&'a Path>,
    pub cluster: &'a str,
    /// `None` when the configuration file supplies the repository.
    pub repo: Option<&'a str>,
    /// Further global flags and their values (`--timeout`, `30s`).
    pub flags: &'a [String],
}

/// The archive_command text: each word quoted for the shell PostgreSQL
/// runs it with, and `%` doubled so that PostgreSQL replaces only `%p`.
pub fn archive_command(parts: &CommandParts<'_>) -> Result<String> {
    let mut words: Vec<String> = vec![parts.program.display().to_string()];
    if let Some(config) = parts.config {
        words.extend(["--config".into(), config.display().to_string()]);
    }
    words.extend(["--cluster".into(), parts.cluster.to_string()]);
    if let Some(repo) = parts.repo {
        words.extend(["--repo".into(), repo.to_string()]);
    }
    words.extend(parts.flags.iter().cloned());
    let mut quoted = Vec::with_capacity(words.len() + 2);
    for w in &words {
        let q = shlex::try_quote(w)
            .map_err(|_| Error::config(format!("{w:?} cannot be quoted for a shell")))?;
        quoted.push(q.replace('%', "%%"));
    }
    quoted.extend(["wal-push".into(), "%p".into()]);
    Ok(quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::archiver;

    fn current(mode: &str, command: &str) -> Current {
        Current {
            archive_mode: mode.into(),
            archive_mode_pending: None,
            archive_command: command.into(),
            archive_library: Some(String::new()),
            wal_level: "replica".into(),
        }
    }

    #[test]
    fn the_command_is_bound_and_reads_back() {
        let flags = ["--timeout".to_string(), "30s".to_string()];
        let parts = CommandParts {
            program: Path::new("/opt/pg proof/bin/pgproof"),
            config: Some(Path::new("/etc/pgproof/it's 100%.toml")),
            cluster: "main15",
            repo: Some("s3://bucket/pg"),
            flags: &flags,
        };
        let text = archive_command(&parts).unwrap();
        assert!(text.ends_with(" wal-push %p"), "{text}");
        assert!(text.contains("100%%"), "{text}");
        // What the archiver check reads out of it, with PostgreSQL's %%
        // replaced as PostgreSQL replaces it.
        let call = archiver::parse(&text.replace("%%", "%")).unwrap();
        assert_eq!(call.program, "/opt/pg proof/bin/pgproof");
        assert_eq!(call.config.as_deref(), Some("/etc/pgproof/it's 100%.toml"));
        assert_eq!(call.cluster.as_deref(), Some("main15"));
        assert_eq!(call.repo.as_deref(), Some("s3://bucket/pg"));

        let plain = archive_command(&CommandParts {
            program: Path::new("/usr/local/bin/pgproof"),
            config: Some(Path::new("/etc/pgproof/pgproof.toml")),
            cluster: "main",
            repo: None,
            flags: &[],
        })
        .unwrap();
        assert_eq!(
            plain,
            "/usr/local/bin/pgproof --config /etc/pgproof/pgproof.toml --cluster main wal-push %p"
        );
    }

    #[test]
    fn a_fresh_cluster_needs_mode_and_command() {
        let p = plan(&current("off", ""), "pgproof --cluster a wal-push %p");
        let names: Vec<_> = p.changes.iter().map(|c| c.name).collect();
        assert_eq!(names, ["archive_mode", "archive_command"]);
        assert!(p.needs_restart());
        assert!(p.warnings.is_empty());
        assert_eq!(p.changes[0].to, "on");
        assert!(!p.changes[0].pending);
    }

    #[test]
    fn always_stays_and_only_the_command_changes() {
        let p = plan(
            &current("always", "pgproof --cluster old wal-push %p"),
            "pgproof --cluster a wal-push %p",
        );
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].name, "archive_command");
        assert!(!p.needs_restart());
        assert!(
            p.warnings.is_empty(),
            "a pgproof archiver is replaced quietly"
        );
    }

    #[test]
    fn nothing_to_do_when_set_as_planned() {
        let cmd = "pgproof --cluster a wal-push %p";
        assert_eq!(plan(&current("on", cmd), cmd), Plan::default());
    }

    #[test]
    fn a_foreign_archiver_a_library_and_minimal_wal() {
        let mut c = current("off", "cp %p /mnt/wal/%f");
        c.archive_library = Some("basic_archive".into());
        c.wal_level = "minimal".into();
        c.archive_mode_pending = Some("on".into());
        let p = plan(&c, "pgproof --cluster a wal-push %p");
        let names: Vec<_> = p.changes.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "wal_level",
                "archive_mode",
                "archive_library",
                "archive_command"
            ]
        );
        assert!(p.changes[1].pending);
        assert_eq!(p.changes[2].to, "");
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].contains("cp %p"), "{:?}", p.warnings);
    }
}
