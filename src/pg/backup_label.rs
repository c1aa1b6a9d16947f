//! `backup_label`, as `pg_backup_stop` returns it: where replay must start.

use crate::error::{Error, Result};
use crate::pg::lsn::Lsn;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    pub checkpoint_lsn: Lsn,
    pub timeline: u32,
    pub label: String,
    /// `BACKUP FROM: standby`: recovery then ends the backup at the restored
    /// pg_control's minimum recovery point, there being no end-of-backup record.
    pub from_standby: bool,
}

impl BackupLabel {
    pub fn parse(text: &str) -> Result<BackupLabel> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::trim)
        };
        let missing = |key: &str| Error::corrupt(format!("backup_label has no {key} line"));
        let first_word = |s: &str| s.split_whitespace().next().unwrap_or("").to_string();
        let start_lsn =
            first_word(field("START WAL LOCATION:").ok_or_else(|| missing("START WAL LOCATION"))?)
                .parse()?;
        let checkpoint_lsn = first_word(
            field("CHECKPOINT LOCATION:").ok_or_else(|| missing("CHECKPOINT LOCATION"))?,
        )
        .parse()?;
        let timeline = field("START TIMELINE:")
            .ok_or_else(|| missing("START TIMELINE"))?
            .parse()
            .map_err(|_| Error::corrupt("backup_label: START TIMELINE is not a number"))?;
        Ok(BackupLabel {
            start_lsn,
            checkpoint_lsn,
            timeline,
            label: field("LABEL:").unwrap_or("").to_string(),
            from_standby: field("BACKUP FROM:") == Some("standby"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_pg_backup_stop_returns() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-11-25 17:41:03 UTC\nLABEL: pgproof 20261125T174103Z\nSTART TIMELINE: 1\n";
        let l = BackupLabel::parse(text).unwrap();
        assert_eq!(l.start_lsn.to_string(), "0/2000028");
        assert_eq!(l.checkpoint_lsn.to_string(), "0/2000060");
        assert_eq!(l.timeline, 1);
        assert_eq!(l.label, "pgproof 20261125T174103Z");
        assert!(!l.from_standby);
        let standby = text.replace("BACKUP FROM: primary", "BACKUP FROM: standby");
        assert!(BackupLabel::parse(&standby).unwrap().from_standby);
        assert!(BackupLabel::parse("LABEL: x\n").is_err());
    }
}
