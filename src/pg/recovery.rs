//! Archive recovery's settings as PostgreSQL reads them (13 to 18): which
//! settings choose where recovery stops and what happens there, how a
//! restore writes them into `postgresql.auto.conf`, how one left there by an
//! earlier restore is neutralized, and how `restore_command` is quoted for
//! the shell that runs it and for the file that holds it.
//!
//! An earlier restore's settings travel inside every later backup of the
//! restored cluster: a restore that only appended its own would stop at the
//! old target, or, given a target of another kind, fail to start with
//! "multiple recovery targets specified" (each target setting's assign hook
//! refuses a second kind, even an empty value of it, so they cannot be
//! overridden in the file: they must go).

use crate::pg::lsn::Lsn;
use chrono::{DateTime, Utc};

/// Every setting that decides where recovery stops and what it does then.
/// The five target settings come first, in the order given to a server on
/// its command line: each may be set empty only while no other is set.
pub const TARGET_SETTINGS: &[&str] = &[
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_timeline",
];

/// The first line of the block a restore appends to `postgresql.auto.conf`.
pub const ADDED_BY: &str = "# Added by pgproof restore";
/// The prefix of a line a restore commented out.
pub const REMOVED_BY: &str = "# Removed by pgproof restore";

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Time(DateTime<Utc>),
    Lsn(Lsn),
    Xid(u64),
    Name(String),
    Immediate,
}

impl Target {
    /// The setting and its value.
    pub fn setting(&self) -> (&'static str, String) {
        match self {
            Target::Time(t) => (
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            ),
            Target::Lsn(l) => ("recovery_target_lsn", l.to_string()),
            Target::Xid(x) => ("recovery_target_xid", x.to_string()),
            Target::Name(n) => ("recovery_target_name", n.clone()),
            Target::Immediate => ("recovery_target", "immediate".into()),
        }
    }
}

/// What the server does at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

impl std::str::FromStr for TargetAction {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<TargetAction> {
        match s {
            "pause" => Ok(TargetAction::Pause),
            "promote" => Ok(TargetAction::Promote),
            "shutdown" => Ok(TargetAction::Shutdown),
            _ => Err(crate::error::Error::config(format!(
                "target action {s:?} is not pause, promote or shutdown"
            ))),
        }
    }
}

impl TargetAction {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// The recovery a restore asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// A shell command line, as `restore_command` takes it.
    pub restore_command: String,
    pub target: Option<Target>,
    pub action: Option<TargetAction>,
}

impl Recovery {
    /// The settings, in the order they are written.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let mut s = vec![("restore_command", self.restore_command.clone())];
        s.extend(self.target.as_ref().map(Target::setting));
        s.extend(
            self.action
                .map(|a| ("recovery_target_action", a.as_str().to_string())),
        );
        s
    }

    /// The block appended to `postgresql.auto.conf`, headed by `ADDED_BY`
    /// and `about` (which backup, when).
    pub fn conf_block(&self, about: &str) -> String {
        let mut out = format!("{ADDED_BY} {about}\n");
        for (name, value) in self.settings() {
            out += &format!("{name} = {}\n", conf_quote(&value));
        }
        out
    }
}

/// Settings that clear every recovery target, for a server's command line
/// (which wins over its configuration files): what a proof replays is the
/// whole archive, whatever a restore of the source once left behind.
pub fn no_target_settings() -> Vec<(&'static str, String)> {
    TARGET_SETTINGS
        .iter()
        .map(|&name| {
            let value = match name {
                "recovery_target_action" => "pause",
                "recovery_target_inclusive" => "on",
                "recovery_target_timeline" => "latest",
                _ => "",
            };
            (name, value.to_string())
        })
        .collect()
}

/// A value as a configuration file's quoted string.
pub fn conf_quote(value: &str) -> String {
    // Backslashes are escapes inside quoted strings (guc-file.l).
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

/// A shell word: `restore_command` runs through `sh -c`. Plain words stay
/// plain so that operators can read the command in the file.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+=@%,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `restore_command` calling `exe`'s wal-fetch with the given global
/// arguments (`--repo URL`, ...), each a shell word.
pub fn wal_fetch_command(exe: &str, global_args: &[&str]) -> String {
    wal_fetch_command_with(exe, global_args, &[])
}

/// `wal_fetch_command` with wal-fetch's own flags (`--history-only`).
pub fn wal_fetch_command_with(exe: &str, global_args: &[&str], fetch_flags: &[&str]) -> String {
    let mut words = vec![shell_quote(exe)];
    words.extend(global_args.iter().map(|a| shell_quote(a)));
    words.push("wal-fetch".into());
    words.extend(fetch_flags.iter().map(|a| shell_quote(a)));
    words.push("%f %p".into());
    words.join(" ")
}

/// The name a configuration file line sets, in lower case (names are case
/// insensitive), or `None` for a blank or comment line. One setting per
/// line, `name = value` or `name value`, as guc-file.l reads it.
pub fn setting_name(line: &str) -> Option<String> {
    let rest = line.trim_start_matches([' ', '\t', '\r', '\x0b', '\x0c']);
    let letter = |c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
    let first = rest.chars().next()?;
    if !letter(first) {
        return None;
    }
    let end = rest
        .find(|c: char| !(letter(c) || c.is_ascii_digit() || c == '.' || c == '$'))
        .unwrap_or(rest.len());
    Some(rest[..end].to_ascii_lowercase())
}

/// The lines of a configuration file that set a recovery target setting.
pub fn target_lines(conf: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(conf)
        .lines()
        .filter(|l| setting_name(l).is_some_and(|n| TARGET_SETTINGS.contains(&n.as_str())))
        .map(|l| l.trim().to_string())
        .collect()
}

/// A configuration file with the recovery settings of earlier restores
/// commented out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neutralized {
    /// The file's bytes: it need not be UTF-8 (a comment in Latin-1 is
    /// PostgreSQL's business, not a reason to fail a restore).
    pub text: Vec<u8>,
    /// The lines commented out, as they were.
    pub removed: Vec<String>,
}

/// Comments out every recovery target setting, and every `restore_command`
/// in a block an earlier pgproof restore added, each prefixed with
/// `REMOVED_BY` and `stamp` (when). Everything else is kept byte for byte.
pub fn neutralize(conf: &[u8], stamp: &str) -> Neutralized {
    let mut text = Vec::with_capacity(conf.len() + 128);
    let mut removed = Vec::new();
    let mut in_our_block = false;
    for line in conf.split_inclusive(|&b| b == b'\n') {
        let body = String::from_utf8_lossy(line);
        let body = body.trim_end_matches(['\n', '\r']);
        if body.trim().is_empty() {
            in_our_block = false;
        } else if body.trim_start().starts_with(ADDED_BY) {
            in_our_block = true;
        }
        let remove = setting_name(body).is_some_and(|name| {
            TARGET_SETTINGS.contains(&name.as_str()) || (in_our_block && name == "restore_command")
        });
        if remove {
            text.extend_from_slice(format!("{REMOVED_BY} on {stamp}: ").as_bytes());
            removed.push(body.to_string());
        }
        text.extend_from_slice(line);
    }
    Neutralized { text, removed }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: &str = "2026-12-01 10:00:00 UTC";

    #[test]
    fn names_as_postgres_reads_them() {
        for (line, want) in [
            ("recovery_target_time = 'x'", Some("recovery_target_time")),
            ("  \tRECOVERY_TARGET_TIME='x'", Some("recovery_target_time")),
            ("recovery_target_xid 1234", Some("recovery_target_xid")),
            (
                "recovery_target_name='a # b' # c",
                Some("recovery_target_name"),
            ),
            ("Recovery_Target=immediate", Some("recovery_target")),
            (
                "my.recovery_target_time = 'x'",
                Some("my.recovery_target_time"),
            ),
            ("# recovery_target_time = 'x'", None),
            ("   # note", None),
            ("", None),
            ("   ", None),
            ("'quoted' = 1", None),
        ] {
            assert_eq!(setting_name(line).as_deref(), want, "{line:?}");
        }
    }

    #[test]
    fn an_earlier_restores_settings_are_commented_out_and_nothing_else() {
        let conf = "# Do not edit this file manually!\n\
                    # It will be overwritten by the ALTER SYSTEM command.\n\
                    work_mem = '8MB'\n\
                    restore_command = 'cp /archive/%f %p'\n\
                    \n\
                    # Added by pgproof restore of backup 20261125T201447Z on 2026-11-25 20:20:00 UTC\n\
                    restore_command = '/usr/bin/pgproof --repo s3://b/p --cluster main wal-fetch %f %p'\n\
                    recovery_target_time = '2026-11-25 20:15:00.000000+00'\n\
                    recovery_target_action = 'promote'\n\
                    \n\
                    \tRECOVERY_TARGET_NAME   'before # drop'   # why\n\
                    recovery_target_inclusive=off\n\
                    recovery_target_timeline = 2\n\
                    recovery_target_lsn '0/3000000'\n\
                    recovery_target_xid = 1234\n\
                    recovery_target = 'immediate'\r\n\
                    #recovery_target_time = 'already a comment'\n\
                    recovery_target_action_note = 'a custom name'\n\
                    shared_buffers = 128MB";
        let n = neutralize(conf.as_bytes(), STAMP);
        let text = String::from_utf8(n.text.clone()).unwrap();
        assert_eq!(
            n.removed,
            vec![
                "restore_command = '/usr/bin/pgproof --repo s3://b/p --cluster main wal-fetch %f %p'",
                "recovery_target_time = '2026-11-25 20:15:00.000000+00'",
                "recovery_target_action = 'promote'",
                "\tRECOVERY_TARGET_NAME   'before # drop'   # why",
                "recovery_target_inclusive=off",
                "recovery_target_timeline = 2",
                "recovery_target_lsn '0/3000000'",
                "recovery_target_xid = 1234",
                "recovery_target = 'immediate'",
            ]
        );
        for kept in [
            "work_mem = '8MB'\n",
            "\nrestore_command = 'cp /archive/%f %p'\n",
            "#recovery_target_time = 'already a comment'\n",
            "recovery_target_action_note = 'a custom name'\n",
            "\nshared_buffers = 128MB",
        ] {
            assert!(text.contains(kept), "{kept:?} was changed:\n{text}");
        }
        assert!(text.contains(
            "# Removed by pgproof restore on 2026-12-01 10:00:00 UTC: recovery_target_time = '2026-11-25 20:15:00.000000+00'\n"
        ));
        // Every line is still there, only commented: a line count and no
        // live recovery setting.
        assert_eq!(text.lines().count(), conf.lines().count());
        for line in text.lines() {
            let name = setting_name(line).unwrap_or_default();
            assert!(!TARGET_SETTINGS.contains(&name.as_str()), "{line}");
        }
        assert_eq!(target_lines(conf.as_bytes()).len(), 8);
        assert!(target_lines(&n.text).is_empty());
        // Idempotent: a second restore finds nothing more.
        assert!(neutralize(&n.text, STAMP).removed.is_empty());
        // Bytes that are not UTF-8 stay as they were.
        let latin1 = b"# caf\xe9\nrecovery_target_xid = 7\nwork_mem = 1MB # \xe9\n";
        let n = neutralize(latin1, STAMP);
        assert_eq!(n.removed, vec!["recovery_target_xid = 7"]);
        assert_eq!(
            n.text,
            [
                &b"# caf\xe9\n"[..],
                format!("{REMOVED_BY} on {STAMP}: recovery_target_xid = 7\n").as_bytes(),
                b"work_mem = 1MB # \xe9\n",
            ]
            .concat()
        );
    }

    #[test]
    fn a_written_block_reads_back_and_is_neutralized_by_the_next_restore() {
        let r = Recovery {
            restore_command: wal_fetch_command(
                "/opt/pg proof/pgproof",
                &["--repo", "file:///srv/it's", "--cluster", "main"],
            ),
            target: Some(Target::Name(r"before 'drop' \ # now".into())),
            action: Some(TargetAction::Promote),
        };
        let block = r.conf_block("of backup B on T");
        assert_eq!(
            block,
            "# Added by pgproof restore of backup B on T\n\
             restore_command = '''/opt/pg proof/pgproof'' --repo ''file:///srv/it''\\\\''''s'' --cluster main wal-fetch %f %p'\n\
             recovery_target_name = 'before ''drop'' \\\\ # now'\n\
             recovery_target_action = 'promote'\n"
        );
        let conf = format!("work_mem = 1MB\n\n{block}");
        let n = neutralize(conf.as_bytes(), STAMP);
        assert_eq!(n.removed.len(), 3);
        assert!(n.text.starts_with(b"work_mem = 1MB\n\n# Added by pgproof"));
    }

    #[test]
    fn targets_and_actions() {
        let t = DateTime::parse_from_rfc3339("2026-11-25T14:02:07.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            Target::Time(t).setting(),
            (
                "recovery_target_time",
                "2026-11-25 14:02:07.123000+00".into()
            )
        );
        assert_eq!(
            Target::Lsn("0/3000028".parse().unwrap()).setting(),
            ("recovery_target_lsn", "0/3000028".into())
        );
        assert_eq!(
            Target::Immediate.setting(),
            ("recovery_target", "immediate".into())
        );
        assert_eq!(
            "promote".parse::<TargetAction>().unwrap().as_str(),
            "promote"
        );
        assert!("resume".parse::<TargetAction>().is_err());
        let none = Recovery {
            restore_command: "x".into(),
            target: None,
            action: None,
        };
        assert_eq!(none.settings(), vec![("restore_command", "x".to_string())]);
    }

    #[test]
    fn words_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/pgproof"), "/usr/bin/pgproof");
        assert_eq!(shell_quote("s3://b/p"), "s3://b/p");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a;rm -rf /"), "'a;rm -rf /'");
    }

    #[test]
    fn the_command_line_clears_every_target() {
        let s = no_target_settings();
        assert_eq!(s.len(), TARGET_SETTINGS.len());
        let get = |k: &str| s.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("recovery_target_time"), Some(""));
        assert_eq!(get("recovery_target"), Some(""));
        assert_eq!(get("recovery_target_timeline"), Some("latest"));
        assert_eq!(get("recovery_target_action"), Some("pause"));
    }
}
