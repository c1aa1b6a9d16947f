//! The archiver as PostgreSQL will run it: does `archive_command` call
//! `pgproof wal-push %p`, and with which cluster, repository and
//! configuration file? Environment assignments in front of the program
//! (`PGPROOF_CLUSTER=x pgproof …`, `env PGPROOF_REPO=… pgproof …`) count,
//! and so do the postmaster's own PGPROOF_* variables. Used by `check` and
//! `clusters`.

use crate::error::Result;
use crate::settings::{Origin, Overrides, PgdataFallback, Settings, Sourced};
use std::path::Path;

/// The pgproof call an archive_command makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverCall {
    pub program: String,
    pub cluster: Option<String>,
    pub repo: Option<String>,
    pub config: Option<String>,
    pub pgdata: Option<String>,
    /// `NAME=value` assignments in front of the program.
    pub env: Vec<(String, String)>,
}

/// pgproof's global flags that take a value, other than the four `parse`
/// keeps (a unit test holds this list to the command line's definitions).
const VALUE_FLAGS: &[&str] = &[
    "--compression",
    "--timeout",
    "--retries",
    "--retry-deadline",
    "--pghost",
    "--pgport",
    "--push-ahead",
    "--prefetch",
    "--pg-bindir",
    "--progress",
    "--progress-interval",
];

/// Why an archive_command is not a pgproof call, in an operator's words.
pub fn parse(command: &str) -> Result<ArchiverCall, String> {
    let command = command.trim();
    if command.is_empty() || command == "(disabled)" {
        return Err("archive_command is empty".into());
    }
    let words = shlex::split(command)
        .ok_or_else(|| format!("archive_command {command:?} is not valid shell quoting"))?;
    let Some(at) = words.iter().position(|w| is_pgproof(w)) else {
        return Err(format!("archive_command {command:?} does not call pgproof"));
    };
    let mut call = ArchiverCall {
        program: words[at].clone(),
        ..Default::default()
    };
    for w in &words[..at] {
        if let Some((k, v)) = w.split_once('=')
            && !k.is_empty()
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            call.env.push((k.to_string(), v.to_string()));
        }
    }
    let args = &words[at + 1..];
    let mut subcommand = None;
    let mut path = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let slot = match flag {
            "--cluster" => Some(&mut call.cluster),
            "--repo" => Some(&mut call.repo),
            "--config" => Some(&mut call.config),
            "--pgdata" => Some(&mut call.pgdata),
            _ => None,
        };
        if let Some(slot) = slot {
            match inline {
                Some(v) => *slot = Some(v),
                None => {
                    i += 1;
                    *slot = args.get(i).cloned();
                }
            }
        } else if VALUE_FLAGS.contains(&flag) {
            // Its value is the next word, which is not the subcommand
            // (`--timeout 30s wal-push %p`).
            if inline.is_none() {
                i += 1;
            }
        } else if !a.starts_with('-') {
            if subcommand.is_none() {
                subcommand = Some(a.as_str());
            } else if path.is_none() {
                path = Some(a.as_str());
            }
        }
        i += 1;
    }
    if subcommand != Some("wal-push") {
        return Err(format!(
            "archive_command {command:?} calls pgproof but not `wal-push`"
        ));
    }
    if path != Some("%p") {
        return Err(format!(
            "archive_command {command:?} does not pass %p to `pgproof wal-push`"
        ));
    }
    Ok(call)
}

/// The settings `call` resolves when PostgreSQL runs it: its flags, then
/// its environment (`environment` is the postmaster's PGPROOF_* variables,
/// when known), then the configuration file, in the data directory.
pub fn settings(
    call: &ArchiverCall,
    pgdata: &Path,
    environment: Option<&[(String, String)]>,
) -> Result<Settings> {
    let lookup = |name: &'static str| -> Option<Sourced<String>> {
        call.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| Sourced::new(v.clone(), Origin::Derived("archive_command".into())))
            .or_else(|| {
                environment?
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Sourced::new(v.clone(), Origin::Env(name)))
            })
    };
    let flag = |v: &Option<String>, name: &'static str| {
        v.clone().map(|v| Sourced::new(v, Origin::Flag(name)))
    };
    let over = Overrides {
        config: flag(&call.config, "--config")
            .or_else(|| lookup("PGPROOF_CONFIG"))
            .map(|s| Sourced::new(s.value.into(), s.origin)),
        cluster: flag(&call.cluster, "--cluster").or_else(|| lookup("PGPROOF_CLUSTER")),
        repo: flag(&call.repo, "--repo").or_else(|| lookup("PGPROOF_REPO")),
        compression: lookup("PGPROOF_COMPRESSION"),
        pgdata: flag(&call.pgdata, "--pgdata")
            .or_else(|| lookup("PGPROOF_PGDATA"))
            .map(|s| Sourced::new(s.value.into(), s.origin)),
        ..Default::default()
    };
    // The archiver runs in PGDATA, which is where its settings are looked up from.
    let working_dir = over.pgdata.is_none().then(|| pgdata.to_path_buf());
    Settings::resolve(&over, working_dir, PgdataFallback::WorkingDirectory)
}

/// PGPROOF_* variables of the postmaster running in `pgdata`, when this
/// user may read them (the same user, or root).
pub fn postmaster_environment(pgdata: &Path) -> Option<Vec<(String, String)>> {
    let pid = crate::pg::pidfile::PostmasterPid::read(pgdata).ok()??;
    let raw = std::fs::read(format!("/proc/{}/environ", pid.pid)).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                let (k, v) = kv.split_once('=')?;
                k.starts_with("PGPROOF_")
                    .then(|| (k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// Whether `program` names an executable file, by path or on PATH.
pub fn program_runs(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        return executable(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| executable(&d.join(program))))
        .unwrap_or(false)
}

fn is_pgproof(word: &str) -> bool {
    word.rsplit('/')
        .next()
        .is_some_and(|base| base == "pgproof" || base.starts_with("pgproof-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_and_environment() {
        let call = parse(
            "PGPROOF_REPO='s3://b/p' /usr/local/bin/pgproof --cluster=main --config /etc/x.toml wal-push %p",
        )
        .unwrap();
        assert_eq!(call.program, "/usr/local/bin/pgproof");
        assert_eq!(call.cluster.as_deref(), Some("main"));
        assert_eq!(call.config.as_deref(), Some("/etc/x.toml"));
        assert_eq!(call.repo, None);
        assert_eq!(call.env, vec![("PGPROOF_REPO".into(), "s3://b/p".into())]);
        let call = parse("env PGPROOF_CLUSTER=a pgproof -q wal-push %p").unwrap();
        assert_eq!(call.env, vec![("PGPROOF_CLUSTER".into(), "a".into())]);
    }

    #[test]
    fn a_flag_value_is_not_the_subcommand() {
        for cmd in [
            "pgproof --timeout 30s wal-push %p",
            "pgproof --cluster x --retries 3 wal-push %p",
            "pgproof --timeout=30s --pgport 5433 -q wal-push %p",
            "pgproof --progress off --compression lz4 wal-push %p",
        ] {
            let call = parse(cmd).unwrap_or_else(|e| panic!("{cmd}: {e}"));
            assert_eq!(call.program, "pgproof");
        }
        assert_eq!(
            parse("pgproof --cluster x wal-push %p")
                .unwrap()
                .cluster
                .as_deref(),
            Some("x")
        );
        let err = parse("pgproof --timeout 30s wal-fetch %f %p").unwrap_err();
        assert!(err.contains("not `wal-push`"), "{err}");
    }

    #[test]
    fn every_global_flag_with_a_value_is_known() {
        use clap::CommandFactory;
        let kept = ["--cluster", "--repo", "--config", "--pgdata"];
        let command = crate::cli::Cli::command();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let takes_value = arg.get_action().takes_values();
            let flag = format!("--{long}");
            if arg.is_global_set() && takes_value {
                assert!(
                    kept.contains(&flag.as_str()) || VALUE_FLAGS.contains(&flag.as_str()),
                    "{flag} takes a value: add it to VALUE_FLAGS"
                );
            } else {
                assert!(!VALUE_FLAGS.contains(&flag.as_str()), "{flag}");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_pgproof_archiver() {
        for (cmd, why) in [
            ("", "empty"),
            ("(disabled)", "empty"),
            ("cp %p /mnt/archive/%f", "does not call pgproof"),
            ("pgproof wal-fetch %f %p", "not `wal-push`"),
            ("pgproof wal-push pg_wal/x", "does not pass %p"),
            ("pgproof wal-push '%p", "quoting"),
        ] {
            let err = parse(cmd).unwrap_err();
            assert!(err.contains(why), "{cmd}: {err}");
        }
    }
}
