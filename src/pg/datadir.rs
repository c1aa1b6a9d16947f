//! What a base backup of a data directory contains, as PostgreSQL's own
//! `basebackup.c` decides it (13 to 18): which directories keep only their
//! name, which files are left out, and which relation files are unlogged.

use std::collections::HashSet;

/// Directories whose contents are rebuilt or useless after a restore: the
/// directory itself is kept, empty.
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files left out wherever they are (pg_internal.init by prefix, as its
/// temporary variants are too).
const SKIPPED_FILES: &[&str] = &[
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postmaster.pid",
    "postmaster.opts",
    // A restore writes its own recovery configuration; a standby's signal
    // file copied along would turn every restore into a standby.
    super::standby::SIGNAL_FILE,
    "recovery.signal",
];

const TEMP_PREFIX: &str = "pgsql_tmp";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Include,
    /// A directory kept without its contents.
    KeepEmpty,
    Skip,
}

/// Decides for one entry, given its path relative to the data directory
/// (components separated by '/').
pub fn classify(relative: &str, is_dir: bool) -> Decision {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    if name.starts_with(TEMP_PREFIX) {
        return Decision::Skip;
    }
    if is_dir {
        if EMPTY_DIRS.contains(&relative) {
            return Decision::KeepEmpty;
        }
        // pg_wal keeps its subdirectories, themselves empty.
        if relative.starts_with("pg_wal/") {
            return if matches!(relative, "pg_wal/archive_status" | "pg_wal/summaries") {
                Decision::KeepEmpty
            } else {
                Decision::Skip
            };
        }
        return Decision::Include;
    }
    if SKIPPED_FILES.contains(&name) || name.starts_with("pg_internal.init") {
        return Decision::Skip;
    }
    Decision::Include
}

/// A relation file name: `<relfilenode>[_<fork>][.<segment>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationFile<'a> {
    pub relfilenode: &'a str,
    pub fork: Option<&'a str>,
    pub segment: u32,
}

pub fn parse_relation_file(name: &str) -> Option<RelationFile<'_>> {
    let (stem, segment) = match name.split_once('.') {
        Some((s, seg)) => (s, seg.parse().ok()?),
        None => (name, 0),
    };
    let (relfilenode, fork) = match stem.split_once('_') {
        Some((r, f)) if matches!(f, "fsm" | "vm" | "init") => (r, Some(f)),
        Some(_) => return None,
        None => (stem, None),
    };
    if relfilenode.is_empty() || !relfilenode.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(RelationFile {
        relfilenode,
        fork,
        segment,
    })
}

/// A temporary relation's file, `t<backend>_<relfilenode>[_<fork>][.<segment>]`:
/// left out of a database directory, as basebackup.c does
/// (`looks_like_temp_rel_name`); the server removes such files at startup.
pub fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let Some((backend, relation)) = rest.split_once('_') else {
        return false;
    };
    !backend.is_empty()
        && backend.bytes().all(|b| b.is_ascii_digit())
        && parse_relation_file(relation).is_some()
}

/// Within one database directory: the relfilenodes that have an init fork
/// (unlogged relations), whose other forks are not backed up.
pub fn unlogged_relations<'a>(names: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
    names
        .into_iter()
        .filter_map(parse_relation_file)
        .filter(|r| r.fork == Some("init"))
        .map(|r| r.relfilenode.to_string())
        .collect()
}

/// Whether a file in a database directory belongs to an unlogged relation
/// and is not its init fork.
pub fn is_unlogged_data(name: &str, unlogged: &HashSet<String>) -> bool {
    parse_relation_file(name)
        .is_some_and(|r| r.fork != Some("init") && unlogged.contains(r.relfilenode))
}

/// Whether a path relative to the data directory is a relation data file
/// whose pages carry checksums (in base/, global/ or a tablespace).
pub fn is_checksummed_relation(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    let in_relation_dir = relative.starts_with("base/")
        || relative.starts_with("global/")
        || relative.starts_with("pg_tblspc/");
    in_relation_dir && parse_relation_file(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_relations_are_told_from_everything_else() {
        for temp in ["t3_16384", "t12_16390_fsm", "t3_16384.1", "t3_16384_vm.2"] {
            assert!(is_temp_relation(temp), "{temp}");
        }
        for other in [
            "16384",
            "16384_init",
            "t_16384",
            "t3_",
            "t3",
            "tx_16384",
            "t3_16384_foo",
            "pg_filenode.map",
            "PG_VERSION",
        ] {
            assert!(!is_temp_relation(other), "{other}");
        }
    }

    #[test]
    fn follows_basebackup_exclusions() {
        assert_eq!(classify("pg_wal", true), Decision::KeepEmpty);
        assert_eq!(classify("pg_wal/archive_status", true), Decision::KeepEmpty);
        assert_eq!(classify("pg_wal/.pgproof-prefetch", true), Decision::Skip);
        assert_eq!(classify("pg_replslot", true), Decision::KeepEmpty);
        assert_eq!(classify("base/5/pgsql_tmp", true), Decision::Skip);
        assert_eq!(
            classify("base/pgsql_tmp/pgsql_tmp1234.0", false),
            Decision::Skip
        );
        assert_eq!(classify("postmaster.pid", false), Decision::Skip);
        assert_eq!(classify("global/pg_internal.init", false), Decision::Skip);
        assert_eq!(
            classify("base/5/pg_internal.init.123", false),
            Decision::Skip
        );
        assert_eq!(classify("standby.signal", false), Decision::Skip);
        assert_eq!(classify("base/5/16384", false), Decision::Include);
        assert_eq!(classify("postgresql.conf", false), Decision::Include);
        assert_eq!(classify("base", true), Decision::Include);
    }

    #[test]
    fn relation_files_and_unlogged_relations() {
        assert_eq!(
            parse_relation_file("16384_vm.2"),
            Some(RelationFile {
                relfilenode: "16384",
                fork: Some("vm"),
                segment: 2
            })
        );
        assert!(parse_relation_file("PG_VERSION").is_none());
        assert!(parse_relation_file("16384_xyz").is_none());
        let names = [
            "16384",
            "16384_init",
            "16384_fsm",
            "16384.1",
            "16390",
            "16390_vm",
        ];
        let unlogged = unlogged_relations(names);
        assert!(is_unlogged_data("16384", &unlogged));
        assert!(is_unlogged_data("16384.1", &unlogged));
        assert!(!is_unlogged_data("16384_init", &unlogged));
        assert!(!is_unlogged_data("16390", &unlogged));
        assert!(is_checksummed_relation("base/5/16390"));
        assert!(!is_checksummed_relation("base/5/PG_VERSION"));
        assert!(!is_checksummed_relation("pg_xact/0000"));
    }
}
