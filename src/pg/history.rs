//! Timeline history files (`TTTTTTTT.history`) and backup history files
//! (`<segment>.<offset>.backup`), both plain text written by the server.

use crate::error::{Error, Result};
use crate::pg::lsn::Lsn;

/// One line of a history file: the timeline `parent` ended at `switch_point`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineSwitch {
    pub parent: u32,
    pub switch_point: Lsn,
    pub reason: String,
}

/// Parses a timeline history file as `readTimeLineHistory` does: blank lines
/// and `#` comments are skipped; each entry is "parentTLI<tab>LSN<tab>reason".
pub fn parse_timeline_history(text: &str) -> Result<Vec<TimelineSwitch>> {
    let mut switches = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            Error::corrupt(format!(
                "history file line {}: {raw:?} is not \"timeline<TAB>LSN<TAB>reason\"",
                index + 1
            ))
        };
        let mut fields = line.splitn(3, char::is_whitespace);
        let parent = fields
            .next()
            .and_then(|f| f.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let switch_point = fields
            .next()
            .and_then(|f| f.trim().parse::<Lsn>().ok())
            .ok_or_else(bad)?;
        let reason = fields.next().unwrap_or("").trim().to_string();
        if switches
            .last()
            .is_some_and(|prev: &TimelineSwitch| prev.parent >= parent)
        {
            return Err(Error::corrupt(format!(
                "history file line {}: timelines must increase",
                index + 1
            )));
        }
        switches.push(TimelineSwitch {
            parent,
            switch_point,
            reason,
        });
    }
    Ok(switches)
}

/// Checks that a backup history file is the server's text, returning its start LSN.
pub fn parse_backup_history(text: &str) -> Result<Lsn> {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("START WAL LOCATION: ") {
            let lsn = rest.split_whitespace().next().unwrap_or("");
            return lsn
                .parse()
                .map_err(|e: Error| e.context("backup history file"));
        }
    }
    Err(Error::corrupt(
        "backup history file has no START WAL LOCATION line",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_history_file() {
        let text = "1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-11-25 14:02:07+00\n";
        let h = parse_timeline_history(text).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].parent, 1);
        assert_eq!(h[0].switch_point.to_string(), "0/3000158");
        assert_eq!(h[1].reason, "before 2026-11-25 14:02:07+00");
    }

    #[test]
    fn refuses_garbage_history() {
        assert!(parse_timeline_history("hello world\n").is_err());
        assert!(parse_timeline_history("2\t0/1\tx\n1\t0/2\ty\n").is_err());
        assert!(parse_timeline_history("\u{0}\u{1}binary").is_err());
    }

    #[test]
    fn backup_history() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\n";
        assert_eq!(parse_backup_history(text).unwrap().to_string(), "0/2000028");
        assert!(parse_backup_history("nothing").is_err());
    }
}
