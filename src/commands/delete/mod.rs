//! `pgproof delete retain N | before WHEN [--confirm]`: retention. Reads the
//! repository once, decides (see `plan`), prints every backup kept or
//! deleted with the reason, the WAL range removed per binding and any debris;
//! deletes only with `--confirm`.
//!
//! Deletion runs in the reverse order of writing (restic's rule): a backup's
//! manifest first, so that it stops being complete before any part of it
//! goes, then its parts, proofs and mark; debris; WAL last.

pub mod plan;

use super::cluster::open_repository;
use super::locks;
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::lock::Judged;
use crate::repo::{Repository, layout};
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings, parse_age};
use futures::StreamExt;
use plan::{Damaged, Inventory, Plan, Rule};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// Objects deleted at once.
const PARALLEL_DELETES: usize = 8;

#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub rule: Rule,
    pub confirm: bool,
    pub json: bool,
    /// Unfinished uploads started longer ago than this are aborted: younger
    /// ones may belong to a backup still running.
    pub unfinished_age: std::time::Duration,
}

/// A day: no backup-push runs that long without completing its uploads.
pub const DEFAULT_UNFINISHED_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the command line asks of delete, as given.
#[derive(Debug, Clone)]
pub struct DeleteRequest {
    pub rule: RuleRequest,
    pub confirm: bool,
    pub json: bool,
    pub unfinished_age: Option<String>,
}

#[derive(Debug, Clone)]
pub enum RuleRequest {
    Retain(usize),
    /// A backup name or a time, told apart by [`parse_when`].
    Before(String),
}

impl DeleteRequest {
    fn options(&self) -> Result<DeleteOptions> {
        Ok(DeleteOptions {
            rule: match &self.rule {
                RuleRequest::Retain(count) => Rule::Retain(*count),
                RuleRequest::Before(when) => parse_when(when)?,
            },
            confirm: self.confirm,
            json: self.json,
            unfinished_age: match &self.unfinished_age {
                Some(age) => parse_age(age)?,
                None => DEFAULT_UNFINISHED_AGE,
            },
        })
    }
}

/// `pgproof delete`: prints the plan, and with --confirm what was deleted.
pub async fn invoke(over: &Overrides, request: DeleteRequest) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        run(&settings, &request.options()?).await
    };
    Outcome::of(result.await)
}

/// `WHEN` as given to `delete before`: a backup's name, or a time as restore takes it.
pub fn parse_when(when: &str) -> Result<Rule> {
    if chrono::NaiveDateTime::parse_from_str(when.trim(), "%Y%m%dT%H%M%SZ").is_ok() {
        return Ok(Rule::BeforeBackup(when.trim().to_string()));
    }
    super::restore::parse_time(when)
        .map(Rule::BeforeTime)
        .map_err(|e| {
            Error::config(format!(
                "{when:?} is neither a backup name nor a time with a time zone"
            ))
            .with_hint(format!(
                "give a backup name from `pgproof backup-list` (20261125T140207Z), or a time ({})",
                e.hint().unwrap_or("2026-11-25 14:02:07+00")
            ))
        })
}

pub async fn run(settings: &Settings, opts: &DeleteOptions) -> Result<String> {
    let started = Instant::now();
    let repo = open_repository(settings)?;
    tracing::info!(
        "delete {} in {} (from {}){}",
        opts.rule,
        repo.describe(),
        settings.repo.origin,
        if opts.confirm { "" } else { ": dry run" }
    );
    let inventory = inventory(&repo).await?;
    let plan = plan::plan(&inventory, &opts.rule)?;
    if let Some(newest) = plan.backups.last() {
        // Defence in depth for invariant 8: the rules above already keep it.
        if !newest.keep {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "refusing to delete the newest complete backup {}",
                    newest.name
                ),
            ));
        }
    }
    // Defence in depth for chains: the rules above already keep them.
    for (m, b) in inventory.backups.iter().zip(&plan.backups) {
        let Some(parent) = m.parent.as_ref().filter(|_| b.keep) else {
            continue;
        };
        if plan
            .backups
            .iter()
            .any(|p| p.name == parent.name && p.binding == b.binding && !p.keep)
        {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "refusing to delete backup {}, which the kept backup {} rests on",
                    parent.name, b.name
                ),
            ));
        }
    }
    let (count, bytes) = plan.objects_to_delete();
    let mut out = if opts.json {
        String::new()
    } else {
        describe(&repo, &opts.rule, &plan)
    };
    if opts.confirm {
        execute(&repo, &plan).await?;
        tracing::info!(
            "deleted {count} objects ({}) in {}",
            report::bytes(bytes),
            report::duration(started.elapsed())
        );
        if !opts.json {
            out += &format!("deleted {count} objects ({})\n", report::bytes(bytes));
        }
    } else if !opts.json {
        out += "dry run: nothing was deleted; add --confirm to delete\n";
    }
    let newest = newest_complete(&inventory);
    let unfinished = abort_unfinished(&repo, opts, &inventory, &newest).await?;
    if opts.confirm {
        remove_empty_debris_dirs(&repo, &newest)?;
    }
    if !opts.json {
        out += &unfinished;
    }
    if opts.json {
        out = serde_json::to_string_pretty(&json(&plan, opts)).expect("the plan serializes") + "\n";
    }
    Ok(out)
}

/// The backup directory (binding, name) an unfinished upload was writing
/// into, when it is debris: named before its binding's newest complete
/// backup, and not itself complete. Such a backup can never complete, even
/// if its upload is younger than the age limit (a run killed while it
/// claimed its name leaves only that).
fn debris_dir_of(
    key: &str,
    inventory: &Inventory,
    newest: &BTreeMap<&str, &str>,
) -> Option<(String, String)> {
    let rest = key.strip_prefix(&format!("{}/", inventory.backups_root))?;
    let mut parts = rest.splitn(3, '/');
    let (binding, name) = (parts.next()?, parts.next()?);
    parts.next()?;
    let newest = *newest.get(binding)?;
    let complete = inventory
        .backups
        .iter()
        .any(|m| m.binding == binding && m.name == name);
    (name < newest && !complete).then(|| (binding.to_string(), name.to_string()))
}

/// Each binding's newest complete backup: backup directories named before
/// it that are not complete can never complete (debris).
fn newest_complete(inventory: &Inventory) -> BTreeMap<&str, &str> {
    let mut newest: BTreeMap<&str, &str> = BTreeMap::new();
    for m in &inventory.backups {
        let entry = newest.entry(m.binding.as_str()).or_insert(m.name.as_str());
        if m.name.as_str() > *entry {
            *entry = m.name.as_str();
        }
    }
    newest
}

/// Removes the empty backup directories named before their binding's newest
/// complete backup: a run killed between creating its directory and its
/// first file leaves one, which no listing shows.
fn remove_empty_debris_dirs(repo: &Repository, newest: &BTreeMap<&str, &str>) -> Result<()> {
    for (&binding, &newest) in newest {
        for name in repo.empty_backup_dirs(binding)? {
            if name.as_str() < newest {
                repo.remove_empty_backup_dir(binding, &name)?;
                tracing::info!("removed the empty directory of backup {name}, which never started");
            }
        }
    }
    Ok(())
}

/// Aborts (with `--confirm`) the unfinished uploads older than the age
/// given, and those of debris whatever their age; returns what to print.
async fn abort_unfinished(
    repo: &Repository,
    opts: &DeleteOptions,
    inventory: &Inventory,
    newest: &BTreeMap<&str, &str>,
) -> Result<String> {
    let now = chrono::Utc::now();
    let old: Vec<_> = repo
        .unfinished_uploads()
        .await?
        .into_iter()
        .filter(|u| {
            debris_dir_of(&u.key, inventory, newest).is_some()
                || (now - u.started).to_std().unwrap_or_default() >= opts.unfinished_age
        })
        .collect();
    if old.is_empty() {
        return Ok(String::new());
    }
    let age = report::duration(opts.unfinished_age);
    if !opts.confirm {
        return Ok(format!(
            "would abort {} unfinished upload(s) of debris or started over {age} ago (oldest: {}, {})\n",
            old.len(),
            old[0].key,
            old[0].started.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    for upload in &old {
        repo.abort_unfinished(upload).await?;
        tracing::info!(
            "aborted the unfinished upload of {} ({})",
            upload.key,
            upload.id
        );
        if let Some((binding, name)) = debris_dir_of(&upload.key, inventory, newest) {
            // The directory may now be empty: remove it with what is left.
            repo.remove_interrupted_uploads(&binding, &name)?;
        }
    }
    Ok(format!(
        "aborted {} unfinished upload(s) of debris or started over {age} ago\n",
        old.len()
    ))
}

async fn inventory(repo: &Repository) -> Result<Inventory> {
    let set = repo.backups().await?;
    // A manifest that could not be read (storage failing past its retries)
    // is not known to be damaged: deciding without it could delete the
    // parent of a backup that is fine.
    if let Some(d) = set
        .damaged
        .iter()
        .find(|d| d.problem.kind() == crate::error::ErrorKind::Storage)
    {
        return Err(Error::new(
            d.problem.kind(),
            format!(
                "could not read the manifest of backup {}: {}; nothing was deleted",
                d.name, d.problem
            ),
        )
        .with_hint("run delete again once the repository answers"));
    }
    for d in &set.damaged {
        tracing::warn!(
            "{}; it is kept, and counts for nothing in the rules",
            d.describe()
        );
    }
    let permanent = repo.permanent_backups().await?;
    let backups_root = layout::all_backups(repo.cluster());
    let backup_objects = repo.backup_objects().await?;
    let mut wal = BTreeMap::new();
    let mut wal_claims = BTreeMap::new();
    if let Some(record) = repo.load_record().await? {
        for b in record.distinct_bindings() {
            let (stored, claims) = repo.list_wal_and_claims(&b.id).await?;
            wal.insert(b.id.clone(), stored);
            wal_claims.insert(b.id.clone(), claims);
        }
    }
    let mut inv = Inventory {
        backups: set.complete,
        permanent,
        backup_objects,
        wal,
        backups_root,
        damaged: set
            .damaged
            .into_iter()
            .map(|d| Damaged {
                binding: d.binding,
                name: d.name,
                problem: d.problem.to_string(),
            })
            .collect(),
        wal_claims,
        running: BTreeSet::new(),
    };
    inv.running = running_backups(repo, &inv).await?;
    Ok(inv)
}

/// The backups running now: their claim names the backup lock's token and
/// the lock's holder is not provably gone.
async fn running_backups(repo: &Repository, inv: &Inventory) -> Result<BTreeSet<(String, String)>> {
    let mut running = BTreeSet::new();
    let Some(holder) = repo.lock_holder(locks::BACKUP).await? else {
        return Ok(running);
    };
    if let Judged::Stale(_) = locks::judge(&holder) {
        return Ok(running);
    }
    for (binding, name) in plan::claimed_incomplete(inv) {
        let claim = repo.backup_claim(&binding, &name).await?;
        if claim.is_some_and(|c| c.lock_token == holder.token) {
            tracing::info!(
                "backup {name} is running ({}); it is left alone",
                holder.describe()
            );
            running.insert((binding, name));
        }
    }
    Ok(running)
}

fn describe(repo: &Repository, rule: &Rule, plan: &Plan) -> String {
    let mut out = format!("delete {rule} in {}:\n", repo.describe());
    if matches!(rule, Rule::Retain(_)) {
        out += "  (retain counts full backups; each keeps the incrementals resting on it, and goes with them)\n";
    }
    if plan.backups.is_empty() {
        out += "  no complete backup: nothing to decide\n";
    }
    for b in &plan.backups {
        let size: u64 = b.objects.iter().map(|o| o.size).sum();
        out += &format!(
            "  {:<6} backup {}  {}{}\n",
            if b.keep { "keep" } else { "delete" },
            b.name,
            b.reason,
            if b.keep {
                String::new()
            } else {
                format!(" ({} objects, {})", b.objects.len(), report::bytes(size))
            }
        );
    }
    for d in &plan.damaged {
        out += &format!(
            "  keep   backup {}  DAMAGED, never deleted by rule: {} (repair it from a copy, or remove its directory by hand)\n",
            d.name, d.problem
        );
    }
    for d in &plan.debris {
        let size: u64 = d.objects.iter().map(|o| o.size).sum();
        out += &format!(
            "  delete debris {}  a backup that never completed ({} objects, {})\n",
            layout::backup_dir(repo.cluster(), &d.binding, &d.name),
            d.objects.len(),
            report::bytes(size)
        );
    }
    for (binding, name) in &plan.running {
        out += &format!(
            "  keep   running {}  a backup running now (it holds the backup lock)\n",
            layout::backup_dir(repo.cluster(), binding, name)
        );
    }
    for w in &plan.wal {
        if let Some(name) = &w.held_by_damaged {
            out += &format!(
                "  keep   WAL of {}: all of it, because damaged backup {name} is older than the oldest kept backup and where its WAL starts is unknown ({}, {})\n",
                w.binding,
                files(w.kept_files),
                report::bytes(w.kept_bytes)
            );
            continue;
        }
        match (&w.keep_from, w.delete.first(), w.delete.last()) {
            (Some(from), Some(first), Some(last)) => {
                let bytes: u64 = w.delete.iter().map(|s| s.stored_size).sum();
                let range = if first.name == last.name {
                    first.name.to_string()
                } else {
                    format!("{} to {}", first.name, last.name)
                };
                out += &format!(
                    "  delete WAL of {}: {range} ({}, {}); keep from {from} on ({}, {})\n",
                    w.binding,
                    files(w.delete.len()),
                    report::bytes(bytes),
                    files(w.kept_files),
                    report::bytes(w.kept_bytes)
                );
            }
            (Some(from), _, _) => {
                out += &format!(
                    "  keep   WAL of {}: nothing before {from}, the oldest kept backup's start ({}, {})\n",
                    w.binding,
                    files(w.kept_files),
                    report::bytes(w.kept_bytes)
                );
            }
            (None, _, _) => {
                out += &format!(
                    "  keep   WAL of {}: no kept backup of this binding, so all of it stays ({}, {})\n",
                    w.binding,
                    files(w.kept_files),
                    report::bytes(w.kept_bytes)
                );
            }
        }
    }
    out
}

fn files(n: usize) -> String {
    if n == 1 {
        "1 file".into()
    } else {
        format!("{n} files")
    }
}

async fn delete_all(repo: &Repository, keys: Vec<String>) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(keys.into_iter().map(|key| async move {
        // Already gone (another delete, or a retry) counts as done.
        repo.remove(&key)
            .await
            .map_err(|e| e.context(format!("deleting {key}")))
    }))
    .buffer_unordered(PARALLEL_DELETES)
    .collect()
    .await;
    results.into_iter().collect()
}

async fn execute(repo: &Repository, plan: &Plan) -> Result<()> {
    // Newest first: a delete interrupted halfway leaves whole chains, never
    // an incremental whose parent is gone.
    for b in plan.backups.iter().rev().filter(|b| !b.keep) {
        let (manifest, rest): (Vec<_>, Vec<_>) = b
            .objects
            .iter()
            .map(|o| o.key.clone())
            .partition(|k| k.ends_with("/manifest.json"));
        delete_all(repo, manifest).await?;
        delete_all(repo, rest).await?;
        tracing::info!("deleted backup {} ({} objects)", b.name, b.objects.len());
    }
    for d in &plan.debris {
        delete_all(repo, d.objects.iter().map(|o| o.key.clone()).collect()).await?;
        // A backup killed while writing a part leaves its staging file.
        let staged = repo.remove_interrupted_uploads(&d.binding, &d.name)?;
        tracing::info!(
            "deleted debris of backup {} ({} objects{})",
            d.name,
            d.objects.len(),
            if staged > 0 {
                format!(", {staged} unfinished uploads")
            } else {
                String::new()
            }
        );
    }
    for w in &plan.wal {
        if w.delete.is_empty() {
            continue;
        }
        delete_all(repo, w.delete.iter().map(|s| s.key.clone()).collect()).await?;
        tracing::info!("deleted {} WAL files of {}", w.delete.len(), w.binding);
    }
    // After the objects: a claim outliving its object (an interrupted run)
    // only refuses other content under that name, and the next run removes
    // it; an object whose claim went first could be joined by other content
    // from a push racing this delete.
    for w in &plan.wal {
        delete_all(
            repo,
            w.delete_claims.iter().map(|c| c.key.clone()).collect(),
        )
        .await?;
    }
    Ok(())
}

#[derive(Serialize)]
struct JsonPlan {
    rule: String,
    dry_run: bool,
    backups: Vec<JsonBackup>,
    debris: Vec<JsonDebris>,
    wal: Vec<JsonWal>,
    /// Kept whatever the rule: their manifests cannot be used.
    damaged: Vec<JsonDamaged>,
    objects_deleted: usize,
    bytes_deleted: u64,
}

#[derive(Serialize)]
struct JsonBackup {
    name: String,
    binding: String,
    action: &'static str,
    reason: &'static str,
    why: String,
    objects: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonDamaged {
    name: String,
    binding: String,
    problem: String,
}

#[derive(Serialize)]
struct JsonDebris {
    name: String,
    binding: String,
    objects: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct JsonWal {
    binding: String,
    keep_from: Option<String>,
    first_deleted: Option<String>,
    last_deleted: Option<String>,
    files_deleted: usize,
    bytes_deleted: u64,
    files_kept: usize,
    bytes_kept: u64,
    claims_deleted: usize,
    /// A damaged backup that keeps all of this binding's WAL.
    held_by_damaged: Option<String>,
}

fn json(plan: &Plan, opts: &DeleteOptions) -> JsonPlan {
    let (count, bytes) = plan.objects_to_delete();
    JsonPlan {
        rule: opts.rule.to_string(),
        dry_run: !opts.confirm,
        backups: plan
            .backups
            .iter()
            .map(|b| JsonBackup {
                name: b.name.clone(),
                binding: b.binding.clone(),
                action: if b.keep { "keep" } else { "delete" },
                reason: b.reason.code(),
                why: b.reason.to_string(),
                objects: b.objects.len(),
                bytes: b.objects.iter().map(|o| o.size).sum(),
            })
            .collect(),
        debris: plan
            .debris
            .iter()
            .map(|d| JsonDebris {
                name: d.name.clone(),
                binding: d.binding.clone(),
                objects: d.objects.len(),
                bytes: d.objects.iter().map(|o| o.size).sum(),
            })
            .collect(),
        damaged: plan
            .damaged
            .iter()
            .map(|d| JsonDamaged {
                name: d.name.clone(),
                binding: d.binding.clone(),
                problem: d.problem.clone(),
            })
            .collect(),
        wal: plan
            .wal
            .iter()
            .map(|w| JsonWal {
                binding: w.binding.clone(),
                keep_from: w.keep_from.map(|s| s.to_string()),
                first_deleted: w.delete.first().map(|s| s.name.to_string()),
                last_deleted: w.delete.last().map(|s| s.name.to_string()),
                files_deleted: w.delete.len(),
                bytes_deleted: w.delete.iter().map(|s| s.stored_size).sum(),
                files_kept: w.kept_files,
                bytes_kept: w.kept_bytes,
                claims_deleted: w.delete_claims.len(),
                held_by_damaged: w.held_by_damaged.clone(),
            })
            .collect(),
        objects_deleted: if opts.confirm { count } else { 0 },
        bytes_deleted: if opts.confirm { bytes } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_is_a_backup_name_or_a_time() {
        assert_eq!(
            parse_when("20261125T140207Z").unwrap(),
            Rule::BeforeBackup("20261125T140207Z".into())
        );
        assert!(matches!(
            parse_when("2026-11-25 14:02:07+00").unwrap(),
            Rule::BeforeTime(_)
        ));
        let err = parse_when("yesterday").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}
