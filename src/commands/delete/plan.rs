//! What `delete` would remove, decided from one inventory of the repository
//! and nothing else. Pure, so the rules are unit-tested without storage:
//!
//! - The newest complete backup is always kept, whatever the rule says.
//! - A backup marked permanent is kept.
//! - `retain N` keeps the N newest complete full backups and every
//!   incremental resting on them; `before WHEN` keeps those started at or
//!   after WHEN (a time, or the start of a named backup).
//! - A backup a kept incremental rests on (its parent, the parent's
//!   parent, down to the full) is kept, whatever the rule says: a chain
//!   goes whole or not at all.
//! - Per binding, WAL whose segment number is below the start segment of the
//!   oldest kept backup goes; everything from there on stays, whatever its
//!   timeline. Timeline history files always stay. A binding with no kept
//!   backup keeps all its WAL.
//! - A backup directory without a manifest whose name (its start time) is
//!   older than the newest complete backup is debris of a backup that never
//!   completed; a newer one may be a backup running now and is left alone,
//!   and so is one whose claim names the backup lock held now (a backup
//!   running on a host whose clock is behind).
//! - A backup whose manifest cannot be used is kept, reported, and counts
//!   for nothing: not toward `retain N`, not as the newest. Its WAL start is
//!   unknown, so if it is older than the oldest kept backup its binding's WAL
//!   all stays (it might be repaired from a copy); a newer one needs only WAL
//!   the kept backups already keep.
//! - A WAL name's claim goes with the WAL objects of that name (and an
//!   orphan claim below the kept range goes too, so a rerun finishes).

use crate::error::{Error, ErrorKind, Result};
use crate::pg::walname::Segment;
use crate::repo::ObjectInfo;
use crate::repo::manifest::Manifest;
use crate::repo::wal::StoredWal;
use crate::repo::wal_claim::ListedClaim;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Retain(usize),
    BeforeTime(DateTime<Utc>),
    BeforeBackup(String),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Retain(n) => write!(f, "retain {n}"),
            Rule::BeforeTime(t) => write!(f, "before {}", t.format("%Y-%m-%d %H:%M:%S%.3f+00")),
            Rule::BeforeBackup(name) => write!(f, "before {name}"),
        }
    }
}

/// Why a backup stays or goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Newest,
    Permanent,
    WithinRetain(usize),
    NotBefore(String),
    BeyondRetain(usize),
    Before(String),
    /// An incremental whose chain's full backup is one of the N newest.
    OnRetainedFull(usize, String),
    /// A kept backup rests on it (or may: a damaged or running one).
    Needed(String),
    /// An incremental whose parent is not among the complete backups.
    BrokenChain(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest complete backup"),
            Reason::Permanent => f.write_str("permanent"),
            Reason::WithinRetain(n) => write!(f, "one of the {n} newest full backups"),
            Reason::NotBefore(when) => write!(f, "not before {when}"),
            Reason::BeyondRetain(n) => write!(f, "older than the {n} newest full backups"),
            Reason::Before(when) => write!(f, "before {when}"),
            Reason::OnRetainedFull(n, full) => write!(
                f,
                "incremental on {full}, one of the {n} newest full backups"
            ),
            Reason::Needed(by) => write!(f, "needed by {by}"),
            Reason::BrokenChain(parent) => write!(
                f,
                "incremental on {parent}, which is missing or damaged; kept for the operator to decide"
            ),
        }
    }
}

impl Reason {
    /// A word for scripts (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Newest => "newest",
            Reason::Permanent => "permanent",
            Reason::WithinRetain(_) => "within-retain",
            Reason::NotBefore(_) => "not-before",
            Reason::BeyondRetain(_) => "beyond-retain",
            Reason::Before(_) => "before",
            Reason::OnRetainedFull(..) => "within-retain",
            Reason::Needed(_) => "needed",
            Reason::BrokenChain(_) => "broken-chain",
        }
    }
}

/// Everything `delete` looks at, read once.
pub struct Inventory {
    /// Complete backups of every binding, oldest first.
    pub backups: Vec<Manifest>,
    /// `(binding, backup)` of the permanent ones.
    pub permanent: BTreeSet<(String, String)>,
    /// Every object under `<cluster>/backups/`.
    pub backup_objects: Vec<ObjectInfo>,
    /// Every WAL object, by binding.
    pub wal: BTreeMap<String, Vec<StoredWal>>,
    /// `<cluster>/backups`, the root the backup objects' keys start with.
    pub backups_root: String,
    /// Backups whose manifest cannot be used, by name.
    pub damaged: Vec<Damaged>,
    /// Every WAL claim, by binding.
    pub wal_claims: BTreeMap<String, Vec<ListedClaim>>,
    /// `(binding, backup)` of backups running now: no manifest yet, and
    /// their claim names the backup lock, which is held.
    pub running: BTreeSet<(String, String)>,
}

/// A backup directory whose manifest exists but cannot be used.
#[derive(Debug, Clone)]
pub struct Damaged {
    pub binding: String,
    pub name: String,
    pub problem: String,
}

pub struct BackupDecision {
    pub name: String,
    pub binding: String,
    pub keep: bool,
    pub reason: Reason,
    /// Its objects, manifest first: deleting it first makes the backup
    /// incomplete before any part of it goes.
    pub objects: Vec<ObjectInfo>,
}

/// A directory of a backup that never completed.
pub struct Debris {
    pub name: String,
    pub binding: String,
    pub objects: Vec<ObjectInfo>,
}

pub struct WalPlan {
    pub binding: String,
    /// The oldest kept backup's start segment: WAL from here on stays.
    pub keep_from: Option<Segment>,
    /// Oldest first.
    pub delete: Vec<StoredWal>,
    /// Claims of the names deleted (and orphan claims in the same range),
    /// deleted after the objects.
    pub delete_claims: Vec<ListedClaim>,
    pub kept_files: usize,
    pub kept_bytes: u64,
    /// A damaged backup older than the oldest kept one: its WAL start is
    /// unknown, so all of the binding's WAL stays.
    pub held_by_damaged: Option<String>,
}

pub struct Plan {
    pub backups: Vec<BackupDecision>,
    pub debris: Vec<Debris>,
    /// `(binding, backup)` of backups running now, left alone.
    pub running: Vec<(String, String)>,
    pub wal: Vec<WalPlan>,
    /// Kept, never deleted: the operator decides.
    pub damaged: Vec<Damaged>,
}

impl Plan {
    pub fn objects_to_delete(&self) -> (usize, u64) {
        let backups = self
            .backups
            .iter()
            .filter(|b| !b.keep)
            .flat_map(|b| &b.objects)
            .chain(self.debris.iter().flat_map(|d| &d.objects))
            .map(|o| o.size);
        let wal = self
            .wal
            .iter()
            .flat_map(|w| &w.delete)
            .map(|s| s.stored_size);
        let claims = self
            .wal
            .iter()
            .flat_map(|w| &w.delete_claims)
            .map(|c| c.size);
        let wal = wal.chain(claims);
        let all: Vec<u64> = backups.chain(wal).collect();
        (all.len(), all.iter().sum())
    }
}

pub fn plan(inv: &Inventory, rule: &Rule) -> Result<Plan> {
    let mut decisions = decide(&inv.backups, &inv.permanent, rule)?;
    hold_for_others(inv, &mut decisions);
    let mut dirs = group_backup_dirs(inv);
    let mut backups = Vec::new();
    for (m, (keep, reason)) in inv.backups.iter().zip(decisions) {
        let mut objects = dirs
            .remove(&(m.binding.clone(), m.name.clone()))
            .unwrap_or_default();
        objects.sort_by_key(|o| (!o.key.ends_with("/manifest.json"), o.key.clone()));
        backups.push(BackupDecision {
            name: m.name.clone(),
            binding: m.binding.clone(),
            keep,
            reason,
            objects,
        });
    }
    let newest = inv.backups.last().map(|m| m.name.as_str());
    let running: Vec<(String, String)> = dirs
        .keys()
        .filter(|dir| inv.running.contains(*dir))
        .cloned()
        .collect();
    let debris = dirs
        .into_iter()
        .filter(|(dir, objects)| {
            is_backup_name(&dir.1)
                && newest.is_some_and(|n| dir.1.as_str() < n)
                && !objects.iter().any(|o| o.key.ends_with("/manifest.json"))
                && !inv.running.contains(dir)
        })
        .map(|((binding, name), objects)| Debris {
            name,
            binding,
            objects,
        })
        .collect();

    let mut wal = Vec::new();
    for (binding, stored) in &inv.wal {
        let mut oldest: Option<(u64, Segment, &str)> = None;
        for (m, d) in inv.backups.iter().zip(&backups) {
            if !d.keep || &m.binding != binding {
                continue;
            }
            let seg = m.start_segment()?;
            let number = seg.number(u64::from(m.wal_segment_size));
            if oldest.is_none_or(|(n, _, _)| number < n) {
                oldest = Some((number, seg, m.name.as_str()));
            }
        }
        // Names are start times: an older damaged backup may need WAL below the kept range.
        let held_by_damaged = oldest.and_then(|(_, _, kept)| {
            inv.damaged
                .iter()
                .find(|d| &d.binding == binding && d.name.as_str() < kept)
                .map(|d| d.name.clone())
        });
        let keep_from = match held_by_damaged {
            Some(_) => None,
            None => oldest.map(|(n, _, _)| n),
        };
        let segment_size = inv
            .backups
            .iter()
            .find(|m| &m.binding == binding)
            .map(|m| u64::from(m.wal_segment_size));
        let mut delete = Vec::new();
        let (mut kept_files, mut kept_bytes) = (0, 0);
        for s in stored {
            let goes = match (keep_from, segment_size, s.name.segment()) {
                (Some(keep_from), Some(size), Some(seg)) => seg.number(size) < keep_from,
                _ => false,
            };
            if goes {
                delete.push(s.clone());
            } else {
                kept_files += 1;
                kept_bytes += s.stored_size;
            }
        }
        delete.sort_by_key(|s| {
            (
                s.name
                    .segment()
                    .map(|seg| seg.number(segment_size.unwrap_or(16 << 20))),
                s.name,
            )
        });
        let delete_claims = inv
            .wal_claims
            .get(binding)
            .into_iter()
            .flatten()
            .filter(|c| match (keep_from, segment_size, c.name.segment()) {
                (Some(keep_from), Some(size), Some(seg)) => seg.number(size) < keep_from,
                _ => false,
            })
            .cloned()
            .collect();
        wal.push(WalPlan {
            binding: binding.clone(),
            keep_from: oldest.map(|(_, s, _)| s),
            delete,
            delete_claims,
            kept_files,
            kept_bytes,
            held_by_damaged,
        });
    }
    Ok(Plan {
        backups,
        debris,
        running,
        wal,
        damaged: inv.damaged.clone(),
    })
}

/// Keeps what backups the rules cannot see may rest on: a running
/// incremental rests on the newest complete backup of its binding (the
/// newest of the cluster may be another binding's), and a backup whose
/// manifest is damaged may rest on any older backup of its binding. What
/// those rest on in turn is kept by the chain rule.
fn hold_for_others(inv: &Inventory, decisions: &mut [(bool, Reason)]) {
    let backups = &inv.backups;
    for (binding, name) in &inv.running {
        if let Some(i) = backups.iter().rposition(|b| &b.binding == binding)
            && !decisions[i].0
        {
            decisions[i] = (
                true,
                Reason::Needed(format!("backup {name}, running now, which rests on it")),
            );
        }
    }
    for d in &inv.damaged {
        for (i, b) in backups.iter().enumerate() {
            if b.binding == d.binding && b.name < d.name && !decisions[i].0 {
                decisions[i] = (
                    true,
                    Reason::Needed(format!("damaged backup {}, which may rest on it", d.name)),
                );
            }
        }
    }
    keep_chains(backups, decisions);
}

/// Keep or delete, with the reason, for each backup (oldest first).
pub fn decide(
    backups: &[Manifest],
    permanent: &BTreeSet<(String, String)>,
    rule: &Rule,
) -> Result<Vec<(bool, Reason)>> {
    let cutoff: Option<(DateTime<Utc>, String)> = match rule {
        Rule::Retain(0) => {
            return Err(Error::config("retain 0 would delete every backup")
                .with_hint("retain at least 1; the newest complete backup is always kept"));
        }
        Rule::Retain(_) => None,
        Rule::BeforeTime(t) => Some((*t, t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string())),
        Rule::BeforeBackup(name) => {
            let b = backups.iter().find(|b| &b.name == name).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("there is no complete backup named {name}"),
                )
                .with_hint("`pgproof backup-list` shows the backups there are; WHEN may also be a time such as 2026-11-25 14:02:07+00")
            })?;
            Some((b.started_at, format!("backup {name}")))
        }
    };
    let count = backups.len();
    let roots = chain_roots(backups);
    // Full backups (chain roots) from the newest: their rank.
    let mut full_rank = vec![usize::MAX; count];
    let mut rank = 0;
    for i in (0..count).rev() {
        if roots[i] == i && backups[i].parent.is_none() {
            full_rank[i] = rank;
            rank += 1;
        }
    }
    let mut decisions: Vec<(bool, Reason)> = backups
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let from_newest = count - 1 - i;
            if from_newest == 0 {
                return (true, Reason::Newest);
            }
            if permanent.contains(&(b.binding.clone(), b.name.clone())) {
                return (true, Reason::Permanent);
            }
            let root = roots[i];
            if let Some(parent) = &backups[root].parent {
                return (true, Reason::BrokenChain(parent.name.clone()));
            }
            match (rule, &cutoff) {
                (Rule::Retain(n), _) if full_rank[root] < *n && root == i => {
                    (true, Reason::WithinRetain(*n))
                }
                (Rule::Retain(n), _) if full_rank[root] < *n => {
                    (true, Reason::OnRetainedFull(*n, backups[root].name.clone()))
                }
                (Rule::Retain(n), _) => (false, Reason::BeyondRetain(*n)),
                (_, Some((t, when))) if b.started_at < *t => (false, Reason::Before(when.clone())),
                // `before` rules always have a cutoff; keeping is the safe answer regardless.
                (_, Some((_, when))) => (true, Reason::NotBefore(when.clone())),
                (_, None) => (true, Reason::NotBefore(rule.to_string())),
            }
        })
        .collect();
    keep_chains(backups, &mut decisions);
    Ok(decisions)
}

/// Keeps every backup a kept backup rests on, down to its full, until
/// nothing changes: a parent may sort after its child when the clocks of
/// the hosts that took them disagree.
fn keep_chains(backups: &[Manifest], decisions: &mut [(bool, Reason)]) {
    loop {
        let mut changed = false;
        for i in 0..backups.len() {
            if !decisions[i].0 {
                continue;
            }
            if let Some(p) = parent_index(backups, i)
                && !decisions[p].0
            {
                let by = format!("{}, which rests on it", backups[i].name);
                decisions[p] = (true, Reason::Needed(by));
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

/// The position of backup `i`'s parent among `backups`, if it has one there.
fn parent_index(backups: &[Manifest], i: usize) -> Option<usize> {
    let parent = backups[i].parent.as_ref()?;
    backups
        .iter()
        .position(|b| b.name == parent.name && b.binding == backups[i].binding)
}

/// For each backup, the position of the backup its chain starts with:
/// the full, or the first incremental whose parent is not among `backups`.
fn chain_roots(backups: &[Manifest]) -> Vec<usize> {
    (0..backups.len())
        .map(|mut i| {
            // Bounded: a chain cannot hold every backup twice.
            for _ in 0..=backups.len() {
                match parent_index(backups, i) {
                    Some(p) => i = p,
                    None => break,
                }
            }
            i
        })
        .collect()
}

/// `YYYYMMDDTHHMMSSZ`, the names backup-push gives.
fn is_backup_name(name: &str) -> bool {
    chrono::NaiveDateTime::parse_from_str(name, "%Y%m%dT%H%M%SZ").is_ok()
}

/// `(binding, backup)` of the directories with a claim and no manifest:
/// running backups, or debris of ones that never completed.
pub fn claimed_incomplete(inv: &Inventory) -> Vec<(String, String)> {
    group_backup_dirs(inv)
        .into_iter()
        .filter(|(_, objects)| {
            objects.iter().any(|o| o.key.ends_with("/claim.json"))
                && !objects.iter().any(|o| o.key.ends_with("/manifest.json"))
        })
        .map(|(dir, _)| dir)
        .collect()
}

/// The objects of each backup directory, by (binding, name).
fn group_backup_dirs(inv: &Inventory) -> BTreeMap<(String, String), Vec<ObjectInfo>> {
    let prefix = format!("{}/", inv.backups_root);
    let mut dirs: BTreeMap<(String, String), Vec<ObjectInfo>> = BTreeMap::new();
    for o in &inv.backup_objects {
        let Some(rest) = o.key.strip_prefix(&prefix) else {
            continue;
        };
        let mut parts = rest.splitn(3, '/');
        if let (Some(binding), Some(name), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            dirs.entry((binding.to_string(), name.to_string()))
                .or_default()
                .push(o.clone());
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Compression, ContentChecksum};
    use crate::pg::walname::WalFileName;

    const MIB16: u64 = 16 << 20;

    fn manifest(name: &str, start_wal: &str) -> Manifest {
        let started_at = chrono::NaiveDateTime::parse_from_str(name, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc();
        serde_json::from_value(serde_json::json!({
            "format": 1, "name": name, "cluster": "main", "binding": "15-1",
            "system_identifier": "1", "major": 15, "server_version": "PostgreSQL 15",
            "server_version_num": 150000, "timeline": 1, "start_lsn": "0/1000028",
            "stop_lsn": "0/1000100", "start_wal": start_wal, "stop_wal": start_wal,
            "started_at": started_at, "stopped_at": started_at, "wal_segment_size": MIB16,
            "block_size": 8192, "data_checksums": false, "compression": "zstd:3",
            "host": "h", "pgdata": "/d", "reached": "r", "owner_uid": 0, "owner_gid": 0,
            "backup_label": "", "tablespace_map": "", "tablespaces": [], "size": 1,
            "stored_size": 1, "parts": [], "directories": [], "files": [], "bad_pages": []
        }))
        .unwrap()
    }

    fn object(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 10,
            last_modified: Utc::now(),
        }
    }

    fn wal(name: &str) -> StoredWal {
        StoredWal {
            key: format!("main/wal/15-1/x/{name}"),
            name: WalFileName::parse(name).unwrap(),
            checksum: ContentChecksum::of(name.as_bytes()),
            compression: Compression::None,
            stored_size: 100,
            stored_at: Utc::now(),
        }
    }

    fn inventory() -> Inventory {
        let names = [
            ("20261125T100000Z", "000000010000000000000002"),
            ("20261125T110000Z", "000000010000000000000004"),
            ("20261125T120000Z", "000000010000000000000006"),
            ("20261125T130000Z", "000000020000000000000008"),
        ];
        let mut objects = Vec::new();
        for (n, _) in &names {
            for f in ["manifest.json", "part-0000.tar.zst", "proofs/x.json"] {
                objects.push(object(&format!("main/backups/15-1/{n}/{f}")));
            }
        }
        objects.push(object(
            "main/backups/15-1/20261125T103000Z/part-0000.tar.zst",
        ));
        objects.push(object(
            "main/backups/15-1/20261125T140000Z/part-0000.tar.zst",
        ));
        let wal_names = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000002.00000028.backup",
            "000000010000000000000003",
            "000000010000000000000004",
            "000000010000000000000005",
            "000000010000000000000006",
            "000000010000000000000007.partial",
            "00000002.history",
            "000000020000000000000007",
            "000000020000000000000008",
        ];
        Inventory {
            backups: names.iter().map(|(n, w)| manifest(n, w)).collect(),
            permanent: BTreeSet::new(),
            backup_objects: objects,
            wal: BTreeMap::from([(
                "15-1".to_string(),
                wal_names.iter().map(|n| wal(n)).collect(),
            )]),
            backups_root: "main/backups".into(),
            damaged: Vec::new(),
            wal_claims: BTreeMap::from([(
                "15-1".to_string(),
                [
                    "000000010000000000000001",
                    "000000010000000000000006",
                    "00000002.history",
                ]
                .iter()
                .map(|n| ListedClaim {
                    key: format!("main/wal/15-1/x/{n}.claim"),
                    name: WalFileName::parse(n).unwrap(),
                    size: 1,
                })
                .collect(),
            )]),
            running: BTreeSet::new(),
        }
    }

    fn kept(p: &Plan) -> Vec<&str> {
        p.backups
            .iter()
            .filter(|b| b.keep)
            .map(|b| b.name.as_str())
            .collect()
    }

    #[test]
    fn retain_keeps_the_newest_and_their_wal() {
        let inv = inventory();
        let p = plan(&inv, &Rule::Retain(2)).unwrap();
        assert_eq!(kept(&p), ["20261125T120000Z", "20261125T130000Z"]);
        let gone = &p.backups[0];
        assert_eq!(gone.reason, Reason::BeyondRetain(2));
        assert!(gone.objects[0].key.ends_with("/manifest.json"));
        assert_eq!(gone.objects.len(), 3);
        let w = &p.wal[0];
        assert_eq!(w.keep_from.unwrap().to_string(), "000000010000000000000006");
        let deleted: Vec<String> = w.delete.iter().map(|s| s.name.to_string()).collect();
        assert_eq!(
            deleted,
            [
                "000000010000000000000001",
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup",
                "000000010000000000000003",
                "000000010000000000000004",
                "000000010000000000000005",
            ]
        );
        // The history file, the .partial and both timelines' later WAL stay.
        assert_eq!(w.kept_files, 5);
        // Claims go with the WAL below the kept range; the others stay.
        let claims: Vec<String> = w.delete_claims.iter().map(|c| c.name.to_string()).collect();
        assert_eq!(claims, ["000000010000000000000001"]);
        // Debris: the incomplete directory older than the newest complete backup only.
        assert_eq!(p.debris.len(), 1);
        assert_eq!(p.debris[0].name, "20261125T103000Z");
    }

    /// Full backups (`F`) and incrementals (`I`, each on the one before it),
    /// an hour apart, oldest first.
    fn chains(kinds: &str) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = Vec::new();
        for (i, k) in kinds.chars().enumerate() {
            let mut m = manifest(
                &format!("20261125T{:02}0000Z", 10 + i),
                "000000010000000000000002",
            );
            if k == 'I' {
                let parent = out.last().expect("an incremental follows a backup");
                m.kind = crate::repo::manifest::BackupKind::Incremental;
                m.parent = Some(crate::repo::manifest::ParentRef {
                    name: parent.name.clone(),
                    manifest_sha256: crate::codec::Checksum::of(parent.name.as_bytes()),
                    stop_lsn: parent.stop_lsn,
                });
            }
            out.push(m);
        }
        out
    }

    fn decided(backups: &[Manifest], rule: &Rule) -> Vec<(bool, &'static str)> {
        decide(backups, &BTreeSet::new(), rule)
            .unwrap()
            .into_iter()
            .map(|(keep, reason)| (keep, reason.code()))
            .collect()
    }

    #[test]
    fn retain_counts_full_backups_and_chains_go_whole() {
        let b = chains("FIIFII");
        assert_eq!(
            decided(&b, &Rule::Retain(1)),
            [
                (false, "beyond-retain"),
                (false, "beyond-retain"),
                (false, "beyond-retain"),
                (true, "within-retain"),
                (true, "within-retain"),
                (true, "newest"),
            ]
        );
        let reasons = decide(&b, &BTreeSet::new(), &Rule::Retain(1)).unwrap();
        assert!(
            reasons[4].1.to_string().contains(&b[3].name),
            "{}",
            reasons[4].1
        );
        assert!(decided(&b, &Rule::Retain(2)).iter().all(|d| d.0));
    }

    #[test]
    fn a_backup_a_kept_incremental_rests_on_is_kept() {
        let b = chains("FIII");
        // Everything before the last incremental: the whole chain is needed.
        let rule = Rule::BeforeBackup(b[3].name.clone());
        assert_eq!(
            decided(&b, &rule),
            [
                (true, "needed"),
                (true, "needed"),
                (true, "needed"),
                (true, "newest")
            ]
        );
        let reasons = decide(&b, &BTreeSet::new(), &rule).unwrap();
        assert!(reasons[2].1.to_string().contains(&b[3].name));
        // A permanent incremental keeps its chain under retain too.
        let b = chains("FIIFI");
        let permanent = BTreeSet::from([("15-1".to_string(), b[2].name.clone())]);
        let d = decide(&b, &permanent, &Rule::Retain(1)).unwrap();
        let codes: Vec<&str> = d.iter().map(|r| r.1.code()).collect();
        assert_eq!(
            codes,
            ["needed", "needed", "permanent", "within-retain", "newest"]
        );
    }

    #[test]
    fn a_parent_that_sorts_after_its_child_is_still_kept() {
        // C was taken on a host whose clock was behind: it sorts before P,
        // the backup it rests on.
        let mut b = chains("FIIF");
        let (p, c) = (b[1].name.clone(), b[2].name.clone());
        b[2].parent.as_mut().unwrap().name = p.clone();
        b[1].parent.as_mut().unwrap().name = b[0].name.clone();
        b.swap(1, 2);
        assert_eq!(b[1].name, c);
        let permanent = BTreeSet::from([("15-1".to_string(), c.clone())]);
        let d = decide(&b, &permanent, &Rule::Retain(1)).unwrap();
        let codes: Vec<&str> = d.iter().map(|r| r.1.code()).collect();
        assert_eq!(codes, ["needed", "permanent", "needed", "newest"]);
    }

    #[test]
    fn a_damaged_or_running_backup_holds_what_it_may_rest_on() {
        let mut inv = inventory();
        inv.damaged.push(Damaged {
            binding: "15-1".into(),
            name: "20261125T125000Z".into(),
            problem: "damaged".into(),
        });
        let p = plan(&inv, &Rule::Retain(1)).unwrap();
        assert!(
            p.backups.iter().all(|b| b.keep),
            "every older backup of the binding stays"
        );
        assert!(p.backups[0].reason.to_string().contains("20261125T125000Z"));
    }

    #[test]
    fn an_incremental_whose_parent_is_gone_is_kept_and_counts_for_nothing() {
        let mut b = chains("FIFI");
        b.remove(0);
        // retain 1: the orphan neither goes nor displaces the newest full.
        assert_eq!(
            decided(&b, &Rule::Retain(1)),
            [
                (true, "broken-chain"),
                (true, "within-retain"),
                (true, "newest")
            ]
        );
    }

    #[test]
    fn a_running_backup_is_never_debris_even_when_named_before_the_newest() {
        // A backup running on a host whose clock is behind: its name sorts
        // before the newest complete backup's.
        let mut inv = inventory();
        for f in ["claim.json", "part-00001.tar.zst"] {
            inv.backup_objects
                .push(object(&format!("main/backups/15-1/20261125T120500Z/{f}")));
        }
        inv.running
            .insert(("15-1".into(), "20261125T120500Z".into()));
        let p = plan(&inv, &Rule::Retain(2)).unwrap();
        let debris: Vec<&str> = p.debris.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(debris, ["20261125T103000Z"]);
        assert_eq!(
            p.running,
            [("15-1".to_string(), "20261125T120500Z".to_string())]
        );
        assert_eq!(
            claimed_incomplete(&inv),
            [("15-1".to_string(), "20261125T120500Z".to_string())]
        );
        // Once its lock is gone, the same directory is debris.
        inv.running.clear();
        let p = plan(&inv, &Rule::Retain(2)).unwrap();
        assert_eq!(p.debris.len(), 2);
    }

    #[test]
    fn permanent_backups_stay_and_keep_their_wal() {
        let mut inv = inventory();
        inv.permanent
            .insert(("15-1".into(), "20261125T110000Z".into()));
        let p = plan(&inv, &Rule::Retain(1)).unwrap();
        assert_eq!(kept(&p), ["20261125T110000Z", "20261125T130000Z"]);
        assert_eq!(p.backups[1].reason, Reason::Permanent);
        assert_eq!(p.backups[3].reason, Reason::Newest);
        assert_eq!(
            p.wal[0].keep_from.unwrap().to_string(),
            "000000010000000000000004"
        );
        assert_eq!(p.wal[0].delete.len(), 4);
    }

    #[test]
    fn before_never_takes_the_newest() {
        let inv = inventory();
        let late = "2030-01-01T00:00:00Z".parse().unwrap();
        let p = plan(&inv, &Rule::BeforeTime(late)).unwrap();
        assert_eq!(kept(&p), ["20261125T130000Z"]);
        let p = plan(&inv, &Rule::BeforeBackup("20261125T120000Z".into())).unwrap();
        assert_eq!(kept(&p), ["20261125T120000Z", "20261125T130000Z"]);
        assert!(matches!(p.backups[2].reason, Reason::NotBefore(_)));
        let err = plan(&inv, &Rule::BeforeBackup("nope".into()))
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(plan(&inv, &Rule::Retain(0)).is_err());
    }

    #[test]
    fn a_damaged_backup_is_kept_counts_for_nothing_and_guards_its_wal() {
        let damaged = |name: &str| Damaged {
            binding: "15-1".into(),
            name: name.into(),
            problem: "manifest fails its checksum".into(),
        };
        // Newer than the others: it may be an incremental resting on any
        // of them, so every older backup of its binding stays.
        let mut inv = inventory();
        inv.damaged.push(damaged("20261125T140000Z"));
        let p = plan(&inv, &Rule::Retain(2)).unwrap();
        assert_eq!(kept(&p).len(), 4);
        assert_eq!(p.backups[0].reason.code(), "needed");
        assert_eq!(p.damaged.len(), 1);
        assert_eq!(p.wal[0].delete.len(), 1);
        assert!(p.wal[0].held_by_damaged.is_none());
        assert!(
            p.debris.iter().all(|d| d.name != "20261125T140000Z"),
            "a damaged backup is not debris"
        );

        // Older than the oldest kept backup: its WAL start is unknown, so all WAL stays.
        let mut inv = inventory();
        inv.damaged.push(damaged("20261125T090000Z"));
        let p = plan(&inv, &Rule::Retain(2)).unwrap();
        assert_eq!(kept(&p), ["20261125T120000Z", "20261125T130000Z"]);
        assert!(p.wal[0].delete.is_empty());
        assert!(p.wal[0].delete_claims.is_empty());
        assert_eq!(
            p.wal[0].held_by_damaged.as_deref(),
            Some("20261125T090000Z")
        );
    }

    #[test]
    fn nothing_to_keep_leaves_wal_alone() {
        let mut inv = inventory();
        inv.backups.clear();
        let p = plan(&inv, &Rule::Retain(1)).unwrap();
        assert!(p.wal[0].delete.is_empty());
        assert!(
            p.debris.is_empty(),
            "without a complete backup nothing is debris"
        );
    }
}
