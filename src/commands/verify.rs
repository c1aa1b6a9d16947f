//! `pgproof verify [--backup NAME]`: reads every backup and WAL object back
//! from storage and checks it: documents against their own checksums, each
//! part against its stored checksum and each file in it against the
//! manifest (the same reader restore uses, writing nowhere), each WAL file
//! against the checksum in its key and its page headers against the binding,
//! and WAL continuity per timeline from each backup's start to the newest
//! segment. Every problem is reported with the object's key; reading goes
//! on after a problem, so one run lists them all.

use super::cluster::open_repository;
use super::wal_fetch::check_segment_identity;
use crate::codec::Compression;
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::history::{TimelineSwitch, parse_backup_history, parse_timeline_history};
use crate::pg::walheader::SegmentHeader;
use crate::pg::walname::{Segment, WalFileName};
use crate::repo::continuity::{self, Gap};
use crate::repo::identity::Binding;
use crate::repo::manifest::{Layer, Manifest};
use crate::repo::part_reader::{Discard, PartTotals, expected_files, read_part};
use crate::repo::wal::StoredWal;
use crate::repo::wal_claim::ListedClaim;
use crate::repo::{Repository, layout};
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Objects read at once. WAL files are held whole (16 MiB each by default),
/// parts are streamed: memory stays at a few segments.
const PARALLEL_READS: usize = 4;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub backup: Option<String>,
}

/// What verify found: the text to print and how many problems it lists.
pub struct Findings {
    pub text: String,
    pub problems: usize,
}

#[derive(Default)]
struct Tally {
    backups: usize,
    parts: usize,
    files: usize,
    bytes: u64,
    wal_files: usize,
    problems: Vec<String>,
    /// Worth knowing, not wrong.
    notes: Vec<String>,
}

impl Tally {
    fn note(&mut self, text: String) {
        tracing::warn!("{text}");
        self.notes.push(text);
    }

    fn problem(&mut self, text: String) {
        tracing::warn!("{text}");
        self.problems.push(text);
    }
}

/// `pgproof verify`: the findings are printed; any problem fails the
/// command with the corruption status, whatever else went right.
pub async fn invoke(over: &Overrides, opts: VerifyOptions) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        run(&settings, &opts).await
    };
    match result.await {
        Ok(found) if found.problems == 0 => Outcome::success(found.text),
        Ok(found) => Outcome::report_failing(
            found.text,
            Error::corrupt(format!(
                "verify found {} problem(s); each is listed above",
                found.problems
            )),
        ),
        Err(e) => Outcome::failure(e),
    }
}

pub async fn run(settings: &Settings, opts: &VerifyOptions) -> Result<Findings> {
    let started = Instant::now();
    let repo = open_repository(settings)?;
    tracing::info!(
        "verifying {} (from {}){}",
        repo.describe(),
        settings.repo.origin,
        opts.backup
            .as_deref()
            .map(|b| format!(", backup {b} and the WAL it needs"))
            .unwrap_or_default()
    );
    let Some(record) = repo.load_record().await? else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{} holds nothing: it has no identity record",
                repo.describe()
            ),
        )
        .with_hint("check --repo and --cluster; `pgproof backup-list` shows what a prefix holds"));
    };
    let mut tally = Tally::default();

    let backups = read_documents(&repo, opts.backup.as_deref(), &mut tally).await?;
    if let Some(name) = &opts.backup
        && !backups.iter().any(|m| &m.name == name)
        && tally.problems.is_empty()
    {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} has no backup named {name}", repo.describe()),
        )
        .with_hint("`pgproof backup-list` shows the backups there are"));
    }
    // The parts of every backup a listed incremental rests on are read
    // too; the WAL checked is the listed backups'.
    let members = verify_chains(&repo, &backups, &mut tally).await;
    let mut read = backups.clone();
    read.extend(members);
    tally.backups = read.len();
    verify_parts(&repo, &read, &mut tally).await;

    for binding in record.distinct_bindings() {
        let mine: Vec<&Manifest> = backups.iter().filter(|m| m.binding == binding.id).collect();
        if opts.backup.is_some() && mine.is_empty() {
            continue;
        }
        verify_wal(&repo, binding, &mine, opts.backup.is_some(), &mut tally).await?;
    }

    let unfinished = repo.unfinished_uploads().await?;
    if let Some(oldest) = unfinished.first() {
        tally.note(format!(
            "{} unfinished upload(s) under {} (the oldest, of {}, started {}): left by runs that were killed, they take space until aborted; `pgproof delete --confirm` aborts those older than a day",
            unfinished.len(),
            repo.describe(),
            oldest.key,
            oldest.started.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }

    let mut text: String = tally.problems.iter().map(|p| format!("{p}\n")).collect();
    text += &tally
        .notes
        .iter()
        .map(|n| format!("note: {n}\n"))
        .collect::<String>();
    text += &format!(
        "verified {} backup{} ({} parts, {} files, {}) and {} WAL files of {} in {}: {} problem{}\n",
        tally.backups,
        if tally.backups == 1 { "" } else { "s" },
        tally.parts,
        tally.files,
        report::bytes(tally.bytes),
        tally.wal_files,
        repo.describe(),
        report::duration(started.elapsed()),
        tally.problems.len(),
        if tally.problems.len() == 1 { "" } else { "s" },
    );
    Ok(Findings {
        text,
        problems: tally.problems.len(),
    })
}

/// Decodes every manifest (or the named backup's), proof and permanent mark;
/// returns the manifests that decode, oldest first.
async fn read_documents(
    repo: &Repository,
    only: Option<&str>,
    tally: &mut Tally,
) -> Result<Vec<Manifest>> {
    let root = layout::all_backups(repo.cluster());
    let objects = repo.backup_objects().await?;
    let mut manifests = Vec::new();
    for o in &objects {
        let Some(rest) = o.key.strip_prefix(&format!("{root}/")) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        // Parts are read in `verify_parts`, against the manifest that lists them.
        let (name, file) = match parts[..] {
            [_, name, file @ ("manifest.json" | "permanent.json")] => (name, file),
            [_, name, "proofs", _] => (name, "proof"),
            _ => continue,
        };
        if only.is_some_and(|b| b != name) {
            continue;
        }
        if file == "manifest.json" {
            // A path leaving its root is damage restore would refuse too.
            match repo
                .read_manifest(parts[0], name)
                .await
                .and_then(|m| m.check_paths().map(|()| m))
            {
                Ok(m) => manifests.push(m),
                Err(e) => tally.problem(format!("backup {name} is damaged: {e}")),
            }
            continue;
        }
        let decoded = match file {
            "permanent.json" => repo.read_permanent_mark(&o.key).await.map(drop),
            _ => repo.read_proof(&o.key).await.map(drop),
        };
        if let Err(e) = decoded {
            tally.problem(e.to_string());
        }
    }
    manifests.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.name.cmp(&b.name)));
    Ok(manifests)
}

async fn verify_parts(repo: &Repository, backups: &[Manifest], tally: &mut Tally) {
    struct Job {
        backup: usize,
        part: usize,
    }
    let mut jobs = Vec::new();
    let mut expected = Vec::new();
    for (b, m) in backups.iter().enumerate() {
        expected.push(Arc::new(expected_files(&m.files, &m.name, m.block_size)));
        for part in 0..m.parts.len() {
            jobs.push(Job { backup: b, part });
        }
    }
    let total = jobs.len();
    let mut held = vec![0usize; backups.len()];
    let mut complete = vec![true; backups.len()];
    let mut results = futures::stream::iter(jobs.into_iter().map(|job| {
        let m = &backups[job.backup];
        let part = &m.parts[job.part];
        let key = layout::backup_part(repo.cluster(), &m.binding, &m.name, &part.name);
        let expected = expected[job.backup].clone();
        let (index, stored_checksum) = (job.part, part.stored_checksum);
        async move {
            let result = async {
                let compression: Compression = m.compression.parse()?;
                let reader = match repo.open_backup_part(&m.binding, &m.name, &part.name).await {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("part {key} of backup {} is missing", m.name),
                        ));
                    }
                    other => other?,
                };
                let key = key.clone();
                let totals = tokio::task::spawn_blocking(move || {
                    read_part(
                        reader,
                        compression,
                        index,
                        &expected,
                        &key,
                        stored_checksum,
                        &mut Discard::new(),
                    )
                })
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::LocalIo, "verify task failed").with_source(e)
                })??;
                if let Some(hashes) = &part.hashes {
                    repo.read_hash_object(
                        &m.binding,
                        &m.name,
                        &hashes.name,
                        hashes.stored_checksum,
                    )
                    .await?;
                }
                Ok(totals)
            }
            .await;
            (job.backup, result)
        }
    }))
    .buffer_unordered(PARALLEL_READS);
    let mut done = 0;
    let mut last_report = Instant::now();
    while let Some((backup, result)) = results.next().await {
        done += 1;
        match result {
            Ok(PartTotals { files, bytes }) => {
                tally.parts += 1;
                tally.files += files;
                tally.bytes += bytes;
                held[backup] += files;
            }
            Err(e) => {
                complete[backup] = false;
                tally.problem(e.to_string());
            }
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!(
                "read {done} of {total} parts ({} files, {})",
                tally.files,
                report::bytes(tally.bytes)
            );
        }
    }
    for (b, m) in backups.iter().enumerate() {
        let own = expected[b].wanted.len();
        if complete[b] && held[b] != own {
            tally.problem(format!(
                "backup {} stores {own} files (or changed blocks of files) but its parts hold {}",
                m.name, held[b]
            ));
        }
    }
}

/// The newest layer each file of a backup has in that backup itself, by
/// tablespace and path.
type HeldLayers = HashMap<(Option<u32>, Vec<u8>), Layer>;

/// Checks that every incremental's chain is there and that each layer it
/// names in an older backup is one that backup holds; returns the members
/// of those chains not among `backups`, to be read too.
async fn verify_chains(
    repo: &Repository,
    backups: &[Manifest],
    tally: &mut Tally,
) -> Vec<Manifest> {
    let mut extra: Vec<Manifest> = Vec::new();
    // Each member's own layers, built once however many chains share it.
    let mut held: HashMap<(String, String), HeldLayers> = HashMap::new();
    for m in backups.iter().filter(|m| m.parent.is_some()) {
        let chain = match repo.chain_among(m, backups).await {
            Ok(chain) => chain,
            Err(e) => {
                tally.problem(e.to_string());
                continue;
            }
        };
        for member in &chain {
            let key = (member.binding.clone(), member.name.clone());
            held.entry(key).or_insert_with(|| {
                member
                    .files
                    .iter()
                    .map(|f| {
                        let newest = f.layers_in(&member.name).swap_remove(0);
                        ((f.tablespace, f.path.as_bytes().to_vec()), newest)
                    })
                    .filter(|(_, l)| l.backup == member.name)
                    .collect()
            });
        }
        for f in &m.files {
            for layer in f.layers.iter().filter(|l| l.backup != m.name) {
                let found = held
                    .get(&(m.binding.clone(), layer.backup.clone()))
                    .and_then(|own| own.get(&(f.tablespace, f.path.as_bytes().to_vec())));
                if found != Some(layer) {
                    tally.problem(format!(
                        "backup {}: {} is said to be in part {} of backup {}, which does not hold it so",
                        m.name, f.path, layer.part, layer.backup
                    ));
                }
            }
        }
        for member in chain {
            let known = backups.iter().chain(&extra).any(|b| b.name == member.name);
            if !known {
                extra.push(member);
            }
        }
    }
    extra
}

/// Reads back the WAL of one binding (from the backup's start on, when one
/// backup is verified), then checks continuity from each backup's start.
async fn verify_wal(
    repo: &Repository,
    binding: &Binding,
    backups: &[&Manifest],
    only_needed: bool,
    tally: &mut Tally,
) -> Result<()> {
    let segment_size = u64::from(binding.wal_segment_size);
    let starts: Vec<(&str, Option<Segment>, bool)> = backups
        .iter()
        .map(|m| {
            let seg = WalFileName::parse(&m.start_wal)
                .ok()
                .and_then(|n| n.segment());
            (m.name.as_str(), seg, m.offline)
        })
        .collect();
    for (name, seg, _) in &starts {
        if seg.is_none() {
            tally.problem(format!(
                "backup {name}: its manifest's start WAL is not a segment name"
            ));
        }
    }
    let first_needed = starts
        .iter()
        .filter_map(|(_, s, _)| s.map(|s| s.number(segment_size)))
        .min();
    let needed = |name: WalFileName| match (only_needed, name.segment(), first_needed) {
        (true, Some(seg), Some(first)) => seg.number(segment_size) >= first,
        _ => true,
    };
    let (stored, claims) = repo.list_wal_and_claims(&binding.id).await?;
    let stored: Vec<StoredWal> = stored.into_iter().filter(|s| needed(s.name)).collect();
    let claims: Vec<ListedClaim> = claims.into_iter().filter(|c| needed(c.name)).collect();

    let mut by_name: BTreeMap<WalFileName, BTreeSet<String>> = BTreeMap::new();
    for s in &stored {
        by_name
            .entry(s.name)
            .or_default()
            .insert(s.checksum.to_hex());
    }
    for (name, sums) in &by_name {
        if sums.len() > 1 {
            tally.problem(format!(
                "{} different copies of {name} are stored under {}",
                sums.len(),
                layout::wal_dir(repo.cluster(), &binding.id, *name)
            ));
        }
    }

    check_claims(repo, &claims, &by_name, tally).await;

    let total = stored.len();
    let mut histories: BTreeMap<u32, Vec<TimelineSwitch>> = BTreeMap::new();
    let mut results = futures::stream::iter(stored.iter().map(|s| async move {
        let content = repo.fetch_wal(s, binding.wal_segment_size).await?;
        tokio::task::spawn_blocking({
            let s = s.clone();
            let binding = binding.clone();
            move || check_wal_content(&s, &content, &binding, segment_size)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::LocalIo, "verify task failed").with_source(e))?
    }))
    .buffer_unordered(PARALLEL_READS);
    let mut done = 0;
    let mut last_report = Instant::now();
    while let Some(result) = results.next().await {
        done += 1;
        match result {
            Ok(Some((tli, history))) => {
                histories.insert(tli, history);
                tally.wal_files += 1;
            }
            Ok(None) => tally.wal_files += 1,
            Err(e) => tally.problem(e.to_string()),
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            last_report = Instant::now();
            tracing::info!("read {done} of {total} WAL files of {}", binding.id);
        }
    }

    let archived: Vec<WalFileName> = by_name.keys().copied().collect();
    let mut gaps: BTreeMap<(u32, Segment), (Gap, Vec<&str>)> = BTreeMap::new();
    for (name, start, offline) in starts {
        let Some(start) = start else { continue };
        for gap in continuity::gaps_from(start, offline, &archived, &histories, segment_size) {
            gaps.entry((gap.timeline, gap.first_missing))
                .or_insert((gap, Vec::new()))
                .1
                .push(name);
        }
    }
    for (gap, names) in gaps.into_values() {
        tally.problem(format!(
            "WAL gap in {}: {gap} missing; backup{} {} cannot replay past it",
            layout::wal_root(repo.cluster(), &binding.id),
            if names.len() == 1 { "" } else { "s" },
            names.join(", ")
        ));
    }
    Ok(())
}

/// Each claim against the objects of its name: a claim without an object is
/// a push that has not finished (or never will: PostgreSQL retries until it
/// does), noted; a claim for other content than the object's means the name
/// was written to outside pgproof's rules, a problem.
async fn check_claims(
    repo: &Repository,
    claims: &[ListedClaim],
    by_name: &BTreeMap<WalFileName, BTreeSet<String>>,
    tally: &mut Tally,
) {
    let mut to_read = Vec::new();
    for c in claims {
        match by_name.get(&c.name) {
            None => tally.note(format!(
                "{} is claimed ({}) but not stored: a wal-push of it is running, or was interrupted and PostgreSQL will retry it",
                c.name, c.key
            )),
            Some(sums) => to_read.push((c, sums)),
        }
    }
    let mut results = futures::stream::iter(to_read.into_iter().map(|(c, sums)| async move {
        let claim = repo.read_wal_claim(&c.key).await?;
        if sums.contains(&claim.content.to_hex()) {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "claim {} holds checksum {}, but the object stored for {} has checksum {}",
            c.key,
            claim.content,
            c.name,
            sums.iter().cloned().collect::<Vec<_>>().join(", ")
        )))
    }))
    .buffer_unordered(PARALLEL_READS * 2);
    while let Some(result) = results.next().await {
        if let Err(e) = result {
            tally.problem(e.to_string());
        }
    }
}

/// Checks what a WAL file's checksum cannot: that it is what its name says.
/// Returns a timeline history file's parsed content.
fn check_wal_content(
    s: &StoredWal,
    content: &[u8],
    binding: &Binding,
    segment_size: u64,
) -> Result<Option<(u32, Vec<TimelineSwitch>)>> {
    let named = |e: Error| e.context(format!("stored object {}", s.key));
    match s.name {
        WalFileName::History(tli) => {
            let history =
                parse_timeline_history(&String::from_utf8_lossy(content)).map_err(named)?;
            Ok(Some((tli, history)))
        }
        WalFileName::BackupHistory(..) => {
            parse_backup_history(&String::from_utf8_lossy(content)).map_err(named)?;
            Ok(None)
        }
        WalFileName::Segment(_) | WalFileName::Partial(_) => {
            check_segment_identity(s.name, content, binding).map_err(named)?;
            if matches!(s.name, WalFileName::Segment(_)) {
                let header = SegmentHeader::parse(content).map_err(named)?;
                if u64::from(header.segment_size) != segment_size {
                    return Err(named(Error::corrupt(format!(
                        "its header says segments are {} bytes, the binding {segment_size}",
                        header.segment_size
                    ))));
                }
                header.check_pages(content).map_err(named)?;
            }
            Ok(None)
        }
    }
}
