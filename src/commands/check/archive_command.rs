//! Reading an `archive_command` the way the shell will run it: does it call
//! `pgproof wal-push %p`, and with which cluster, repository and
//! configuration file? Environment assignments in front of the program
//! (`PGPROOF_CLUSTER=x pgproof …`, `env PGPROOF_REPO=… pgproof …`) count too.

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
