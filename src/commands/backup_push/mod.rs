//! `pgproof backup-push [PGDATA]`: a base backup of a running cluster, or
//! with `--offline` of a cleanly shut down one (see `offline`).
//!
//! Phases: find the cluster and prove the server reached is it; take the
//! cluster's backup lock; claim the backup's name; start the backup on one
//! session held throughout; list and stream the files into compressed tar
//! parts, several in parallel (the first failure stops them all); stop the
//! backup without waiting for the archiver; wait, bounded, until the WAL
//! from start to stop is in the archive; write the manifest last; release
//! the lock, also after a failure or SIGINT/SIGTERM.

mod incremental;
mod kind;
mod offline;
mod parallel;
mod parts;
mod request;
mod standby;
mod tar_entry;
mod throttle;
mod walk;

use super::cluster::{
    LocalCluster, VerifiedServer, announce, bind_or_refuse, bound_or_refuse, open_repository,
};
use super::interrupt::interruption;
use super::locks;
use crate::codec::frames::CompressPool;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::backup_api;
use crate::pg::backup_label::BackupLabel;
use crate::pg::lsn::Lsn;
use crate::pg::walname::{Segment, WalFileName};
use crate::progress::{Progress, Unit};
use crate::rate::{Limiter, Rate};
use crate::repo::Repository;
use crate::repo::lock::HeldLock;
use crate::repo::manifest::{
    BackupKind, BadPage, FileEntry, HashObject, HashRecord, Layer, LayerKind, Manifest, Part,
};
use crate::repo::wal::WalListings;
use crate::report;
use crate::settings::{Settings, Sourced};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BackupPushOptions {
    /// Start with an immediate checkpoint instead of a spread one.
    pub fast: bool,
    /// Parts written at once.
    pub jobs: usize,
    /// How long to wait for the archiver to store the backup's WAL.
    pub archive_timeout: Duration,
    /// Exempt the backup from retention (`delete`).
    pub permanent: bool,
    pub kind: KindChoice,
    /// The cluster is shut down: no server is asked, pg_control is the
    /// consistency point.
    pub offline: bool,
    /// Bytes per second read from the data directory, over all parts.
    pub max_rate: Option<Sourced<Rate>>,
}

pub use kind::KindChoice;
pub use request::{BackupPushRequest, invoke};

pub async fn run(settings: &Settings, opts: &BackupPushOptions) -> Result<String> {
    let started = Instant::now();
    let local = LocalCluster::open(settings).map_err(|e| e.context("backup-push"))?;
    let repo = open_repository(settings)?;
    let (server, from_standby) = if opts.offline {
        offline::stopped_cluster(&local.pgdata).map_err(|e| e.context("backup-push --offline"))?;
        announce_offline(settings, &local, &repo);
        (None, false)
    } else {
        let server = local.connect_verified(settings).await.map_err(|e| {
            if e.kind() == ErrorKind::Postgres && !local.pgdata.join("postmaster.pid").exists() {
                e.with_hint("start the cluster, or for a cleanly shut down cluster take an offline backup: backup-push --offline")
            } else {
                e
            }
        })?;
        announce(settings, &local, &server, &repo);
        let from_standby = standby::is_standby(&local, &server)?;
        if from_standby {
            tracing::info!(
                "the server is a standby (in recovery, {} present): the backup runs there, and its WAL must come from the primary's archiving into {}",
                crate::pg::standby::SIGNAL_FILE,
                repo.describe()
            );
        }
        (Some(server), from_standby)
    };
    let binding = if from_standby {
        bound_or_refuse(&repo, &local, standby::UNBOUND_HINT).await?
    } else {
        bind_or_refuse(&repo, &local, "first base backup").await?
    };
    let lock = locks::take_backup_lock(&repo, "backup-push").await?;
    let backup = Backup {
        settings,
        opts,
        local: &local,
        repo: &repo,
        server: server.as_ref(),
        from_standby,
        binding: &binding.id,
        lock: &lock,
        cancel: parallel::Cancel::default(),
    };
    // Interrupted: the parts are cancelled and given a moment to abort their
    // uploads (an abandoned multipart upload stays billed in the bucket);
    // then the backup's future is dropped, and closing the session below
    // makes the server end backup mode.
    let outcome = {
        let running = backup.run();
        tokio::pin!(running);
        tokio::select! {
        outcome = &mut running => outcome,
        signal = interruption() => {
            backup.cancel.set();
            let _ = tokio::time::timeout(parallel::WIND_DOWN, &mut running).await;
            Err(Error::new(
                ErrorKind::Interrupted,
                format!("pgproof received {signal}; the backup was abandoned and has no manifest"),
            )
            .with_hint("run backup-push again"))
        }
        }
    };
    drop(server);
    // Released whatever happened: a lock left behind stops the next backup
    // until it is proven stale.
    if let Err(e) = repo.release_lock(&lock).await {
        tracing::warn!("{e}");
        if let Some(hint) = e.hint() {
            tracing::warn!("hint: {hint}");
        }
    }
    let name = outcome?;
    tracing::info!(
        "backup {name} of {} finished in {}",
        settings.cluster.value,
        report::duration(started.elapsed())
    );
    Ok(name)
}

/// One backup-push, once the cluster is proven and the lock held.
struct Backup<'a> {
    settings: &'a Settings,
    opts: &'a BackupPushOptions,
    local: &'a LocalCluster,
    repo: &'a Repository,
    /// None for an offline backup.
    server: Option<&'a VerifiedServer>,
    /// The server is a streaming standby (see `standby`).
    from_standby: bool,
    binding: &'a str,
    lock: &'a HeldLock,
    cancel: parallel::Cancel,
}

impl Backup<'_> {
    async fn run(&self) -> Result<String> {
        let Backup {
            settings,
            opts,
            local,
            repo,
            server,
            binding,
            lock,
            ..
        } = *self;
        let started = Instant::now();
        let major = local.control.major;
        let start_time = chrono::Utc::now();
        let host = crate::process::host_name();
        let name = repo
            .claim_backup_name(binding, start_time, &lock.token, &host)
            .await?;
        let chain = kind::choose_base(repo, binding, &opts.kind, local.control.block_size).await?;
        let base = chain.map(|chain| Arc::new(incremental::Base::new(repo, chain)));
        if let Some(base) = &base {
            tracing::info!("backup {name} is incremental on {}", base.name);
        }
        let start_lsn = match server {
            Some(server) => {
                let label = format!("pgproof {name}");
                let conn = &server.connection;
                let start_limit = backup_api::start_limit(conn, settings.timeout).await?;
                let lsn = backup_api::start(conn, major, &label, opts.fast, start_limit).await?;
                tracing::info!(
                    "backup {name} started at LSN {lsn}{}",
                    match (self.from_standby, opts.fast) {
                        (false, false) => "",
                        (false, true) => " (fast checkpoint)",
                        (true, _) =>
                            " (the standby's restartpoint at the newest checkpoint it replayed)",
                    }
                );
                lsn
            }
            None => {
                tracing::info!(
                    "offline backup {name} of the cluster as it was shut down, at checkpoint {}",
                    local.control.checkpoint
                );
                local.control.checkpoint_redo
            }
        };
        let wal_in_backup = match server {
            Some(_) => Vec::new(),
            None => offline::wal_files(&local.pgdata, &local.control)?,
        };

        let verification = local
            .control
            .data_checksums()
            .then_some(parts::PageVerification {
                block_size: local.control.block_size,
                backup_start: start_lsn,
            });
        let seed = match &base {
            Some(base) => base.seed,
            None => random_seed()?,
        };
        let result = copy_files(self, &name, verification, base.clone(), seed, wal_in_backup).await;
        let abandoned = |e: Error| e.context(format!("backup {name} was abandoned (no manifest)"));
        let seg_size = u64::from(local.control.wal_segment_size);
        let window = match server {
            Some(server) => {
                // Always end backup mode, even when copying failed.
                let stop = if self.from_standby {
                    standby::stop(server, major, settings.timeout).await
                } else {
                    backup_api::stop(&server.connection, major, settings.timeout).await
                };
                let copied = result.map_err(abandoned)?;
                let stop = stop.map_err(abandoned)?;
                let label_info = BackupLabel::parse(&stop.backup_label)?;
                let start_wal =
                    Segment::containing(label_info.timeline, label_info.start_lsn, seg_size);
                // A standby's stop (its minimum recovery point) is never
                // before its start; should it be, the start's segment is
                // still the least the backup needs.
                let stop_wal = Segment::containing(
                    label_info.timeline,
                    Lsn(stop.lsn.0.saturating_sub(1)),
                    seg_size,
                )
                .max(start_wal);
                tracing::info!(
                    "backup stopped at LSN {}; it needs WAL {start_wal} to {stop_wal}",
                    stop.lsn
                );
                wait_for_wal(
                    repo,
                    binding,
                    start_wal,
                    stop_wal,
                    seg_size,
                    opts.archive_timeout,
                    label_info.from_standby,
                )
                .await?;
                Window {
                    copied,
                    timeline: label_info.timeline,
                    start_lsn: label_info.start_lsn,
                    stop_lsn: stop.lsn,
                    start_wal,
                    stop_wal,
                    backup_label: stop.backup_label,
                    tablespace_map: stop.tablespace_map,
                    from_standby: label_info.from_standby,
                }
            }
            None => {
                let copied = result.map_err(abandoned)?;
                offline::still_stopped(&local.pgdata, &local.control).map_err(abandoned)?;
                let c = &local.control;
                let start_wal = Segment::containing(c.timeline, c.checkpoint_redo, seg_size);
                let stop_wal = Segment::containing(c.timeline, c.checkpoint, seg_size);
                tracing::info!(
                    "the cluster stayed shut down; the backup holds the WAL of its checkpoint ({start_wal}) and needs none from the archive"
                );
                Window {
                    copied,
                    timeline: c.timeline,
                    start_lsn: c.checkpoint_redo,
                    stop_lsn: c.checkpoint,
                    start_wal,
                    stop_wal,
                    backup_label: String::new(),
                    tablespace_map: String::new(),
                    from_standby: false,
                }
            }
        };
        let stopped_at = chrono::Utc::now();
        let copied = window.copied;
        let (server_version, server_version_num, reached) = match server {
            Some(s) => (
                s.identity.version.clone(),
                s.identity.version_num,
                s.reached.clone(),
            ),
            None => (
                format!("PostgreSQL {major} (offline backup: from PG_VERSION and pg_control)"),
                major.number() * 10000,
                format!(
                    "offline: shut down at checkpoint {} per {}",
                    local.control.checkpoint,
                    local.pgdata.join("global/pg_control").display()
                ),
            ),
        };

        let meta =
            std::fs::metadata(&local.pgdata).map_err(|e| Error::io("reading", &local.pgdata, e))?;
        let manifest = Manifest {
            format: crate::repo::identity::FORMAT_VERSION,
            name: name.clone(),
            cluster: settings.cluster.value.to_string(),
            binding: binding.to_string(),
            system_identifier: local.control.system_identifier,
            major,
            server_version,
            server_version_num,
            timeline: window.timeline,
            start_lsn: window.start_lsn,
            stop_lsn: window.stop_lsn,
            start_wal: window.start_wal.to_string(),
            stop_wal: window.stop_wal.to_string(),
            started_at: start_time,
            stopped_at,
            wal_segment_size: local.control.wal_segment_size,
            block_size: local.control.block_size,
            data_checksums: local.control.data_checksums(),
            compression: settings.compression.value.to_string(),
            host,
            pgdata: local.pgdata.display().to_string(),
            reached,
            owner_uid: meta.uid(),
            owner_gid: meta.gid(),
            backup_label: window.backup_label,
            tablespace_map: window.tablespace_map,
            offline: server.is_none(),
            from_standby: window.from_standby,
            tablespaces: copied.tablespaces,
            size: copied.size,
            stored_size: copied.stored_size,
            parts: copied.parts,
            directories: copied.directories,
            files: copied.files,
            bad_pages: copied.bad_pages,
            kind: if base.is_some() {
                BackupKind::Incremental
            } else {
                BackupKind::Full
            },
            parent: base.as_ref().map(|b| b.parent.clone()),
            block_hash_seed: Some(seed),
            document_checksum: None,
        };
        // Before the manifest: a complete backup is never, even briefly, unprotected.
        if opts.permanent {
            let key = repo.mark_permanent(binding, &name).await?;
            tracing::info!("backup {name} is marked permanent ({key})");
        }
        repo.write_manifest(&manifest).await?;
        if !manifest.bad_pages.is_empty() {
            tracing::warn!(
                "{} page(s) failed their data checksum; see the warnings above and `pgproof backup-list --json`",
                manifest.bad_pages.len()
            );
        }
        let kind = match &manifest.parent {
            Some(p) => format!("incremental on {}", p.name),
            None => "full".to_string(),
        };
        tracing::info!(
            "backup {name} of {} complete ({kind}): {} files, {} -> {} stored ({}) in {}",
            settings.cluster.value,
            manifest.files.len(),
            report::bytes(manifest.size),
            report::bytes(manifest.stored_size),
            report::ratio(manifest.stored_size, manifest.size),
            report::duration(started.elapsed())
        );
        Ok(name)
    }
}

/// What bounds the backup's consistency, once its files are copied.
struct Window {
    copied: Copied,
    timeline: u32,
    start_lsn: Lsn,
    stop_lsn: Lsn,
    start_wal: Segment,
    stop_wal: Segment,
    /// Empty for an offline backup: it starts from pg_control's checkpoint.
    backup_label: String,
    tablespace_map: String,
    from_standby: bool,
}

/// The banner of an offline backup: what `announce` says, with pg_control
/// in place of the server.
fn announce_offline(settings: &Settings, local: &LocalCluster, repo: &Repository) {
    tracing::info!(
        "cluster {} (name from {}): data directory {} (from {})",
        settings.cluster.value,
        settings.cluster.origin,
        local.pgdata.display(),
        local.pgdata_origin
    );
    tracing::info!(
        "no server asked (--offline): system {}, PostgreSQL {}, shut down cleanly at checkpoint {} per pg_control",
        local.control.system_identifier,
        local.control.major,
        local.control.checkpoint
    );
    tracing::info!(
        "repository {} (from {})",
        repo.describe(),
        settings.repo.origin
    );
}

struct Copied {
    bad_pages: Vec<BadPage>,
    parts: Vec<Part>,
    files: Vec<FileEntry>,
    directories: Vec<crate::repo::manifest::Directory>,
    tablespaces: Vec<crate::repo::manifest::Tablespace>,
    size: u64,
    stored_size: u64,
}

async fn copy_files(
    backup: &Backup<'_>,
    name: &str,
    verification: Option<parts::PageVerification>,
    base: Option<Arc<incremental::Base>>,
    seed: u64,
    wal_in_backup: Vec<walk::SourceFile>,
) -> Result<Copied> {
    let Backup {
        settings,
        opts,
        local,
        repo,
        binding,
        ..
    } = *backup;
    let cancel = backup.cancel.clone();
    let pgdata = local.pgdata.clone();
    let mut walked = tokio::task::spawn_blocking(move || walk::walk(&pgdata))
        .await
        .map_err(|e| Error::new(ErrorKind::LocalIo, "listing task failed").with_source(e))??;
    walked.files.extend(wal_in_backup);
    let total: u64 = walked.files.iter().map(|f| f.size).sum();
    let extension = settings.compression.value.extension();
    let (plans, control_last) = if backup.from_standby {
        parts::plan_control_last(&mut walked.files, extension)
    } else {
        (parts::plan(&walked.files, extension), false)
    };
    let plan_count = plans.len();
    let limit = opts
        .max_rate
        .as_ref()
        .map(|r| format!(", {}", crate::rate::describe(r)))
        .unwrap_or_default();
    // The last part (pg_control alone) is read once every other part is.
    let held = control_last.then(|| plans[plan_count - 1].name.clone());
    let gate = Arc::new(parallel::Gate::new(plan_count.saturating_sub(1)));
    tracing::info!(
        "copying {} files ({}) in {} parts, {} at a time{limit}",
        walked.files.len(),
        report::bytes(total),
        plan_count,
        opts.jobs
    );
    let limiter = opts
        .max_rate
        .as_ref()
        .map(|r| Arc::new(Limiter::new(r.value)));
    let part_limiter = limiter.clone();
    let copy_started = Instant::now();
    let files = Arc::new(walked.files);
    let progress = Progress::start("copying", Unit::Bytes, total);
    // Every part shares one set of compression threads, one per core:
    // however the files fall into parts, every core compresses.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let pool = CompressPool::new(settings.compression.value, cores)?;
    let this = name.to_string();
    let (repo, binding, name) = (repo.clone(), binding.to_string(), name.to_string());
    let on_progress = progress.clone();
    let part_files = files.clone();
    let completions = Arc::new(parallel::Completions::new(opts.jobs));
    let completing = completions.clone();
    let block_size = local.control.block_size;
    let part_base = base.clone();
    let written = parallel::run(
        plans,
        opts.jobs,
        cancel,
        move |plan: parts::PartPlan, cancel| {
            let is_held = held.as_deref() == Some(plan.name.as_str());
            if is_held {
                gate.wait(cancel)?;
            }
            let mut writer = repo.backup_part_writer(&binding, &name, &plan.name);
            let add = |n: u64| on_progress.add(n);
            let sources = parts::Sources {
                files: &part_files,
                pool: &pool,
                verification,
                block_size,
                seed,
                base: part_base.as_deref(),
                limiter: part_limiter.as_deref(),
            };
            let part = parts::write_part(&sources, &plan, cancel, &mut writer, &add);
            let mut result = match part {
                Ok((result, _)) => {
                    if !is_held {
                        gate.pass();
                    }
                    result
                }
                Err(e) => {
                    // The upload's own failure says more than the write error it caused.
                    let failure = writer.storage_failure().unwrap_or(e);
                    writer.abort();
                    return Err(failure.context(format!("part {}", plan.name)));
                }
            };
            let hashes = std::mem::take(&mut result.hashes);
            let hash_object = (!hashes.is_empty()).then(|| {
                let bytes = hashes.into_bytes();
                let object = HashObject {
                    name: crate::repo::block_hashes::object_name(&plan.name),
                    size: bytes.len() as u64,
                    stored_checksum: crate::codec::Checksum::of(&bytes),
                };
                (object, bytes)
            });
            let part_name = plan.name.clone();
            let (repo, binding, name) = (repo.clone(), binding.clone(), name.clone());
            let runtime = tokio::runtime::Handle::current();
            let listed = hash_object.as_ref().map(|(o, _)| o.clone());
            completing.spawn(cancel, move || {
                writer
                    .finish()
                    .map_err(|e| e.context(format!("part {part_name}")))?;
                if let Some((object, bytes)) = hash_object {
                    runtime.block_on(repo.write_hash_object(
                        &binding,
                        &name,
                        &object.name,
                        bytes,
                    ))?;
                }
                Ok(())
            })?;
            Ok((plan, result, listed))
        },
    )
    .await;
    let written = completions.wait_all(written).await;
    let mut by_plan = match written {
        Ok(done) => done,
        Err(e) => {
            progress.abandon();
            return Err(e);
        }
    };
    progress.finish();
    if let Some(limiter) = &limiter {
        // What the limit cost: the operator sees whether it was the
        // bound, and the benchmark reads the rate achieved from here.
        let took = copy_started.elapsed();
        tracing::info!(
            "read {} in {}: {}",
            report::bytes(limiter.taken()),
            report::duration(took),
            limiter.achieved(took)
        );
    }
    by_plan.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut manifest_parts = Vec::new();
    let mut manifest_files = Vec::new();
    let mut bad_pages = Vec::new();
    let (mut size, mut stored_size) = (0, 0);
    for (i, (plan, result, hash_object)) in by_plan.into_iter().enumerate() {
        for v in &result.vanished {
            tracing::info!("{v} vanished during the backup (WAL replay accounts for it)");
        }
        for bad in &result.bad_pages {
            let path = &files[bad.index].path;
            tracing::warn!(
                "page {} of {path} fails its data checksum (read twice); the backup records it",
                bad.block
            );
            bad_pages.push(BadPage {
                path: path.clone(),
                block: bad.block,
            });
        }
        for f in &result.files {
            let src = &files[f.index];
            let record = |offset: u64, count: u64, delta: bool| HashRecord {
                backup: this.to_string(),
                part: i,
                offset,
                count,
                delta,
            };
            let parent = || {
                let base = base
                    .as_deref()
                    .expect("only an incremental refers to a parent");
                let entry = base
                    .file(src)
                    .expect("a file is referred to only when the parent has it");
                (base, entry)
            };
            let (layers, hashes) = match &f.how {
                parts::How::Whole { hashes } => (
                    Vec::new(),
                    hashes
                        .map(|(offset, count)| record(offset, count, false))
                        .into_iter()
                        .collect(),
                ),
                parts::How::Same => {
                    let (base, entry) = parent();
                    bad_pages.extend(base.bad_pages_of(src, None, f.size));
                    (entry.layers_in(&base.name), entry.hashes.clone())
                }
                parts::How::Blocks {
                    size,
                    checksum,
                    entries,
                    offset,
                    changed,
                } => {
                    let (base, entry) = parent();
                    bad_pages.extend(base.bad_pages_of(src, Some(changed), f.size));
                    let layer = Layer {
                        backup: this.to_string(),
                        part: i,
                        kind: LayerKind::Blocks,
                        size: *size,
                        checksum: *checksum,
                        entries: *entries,
                        blocks: changed.len() as u64,
                    };
                    let layers = std::iter::once(layer)
                        .chain(entry.layers_in(&base.name))
                        .collect();
                    let hashes = std::iter::once(record(*offset, changed.len() as u64, true))
                        .chain(entry.hashes.iter().cloned())
                        .collect();
                    (layers, hashes)
                }
            };
            manifest_files.push(FileEntry {
                path: src.path.clone(),
                tablespace: src.tablespace,
                size: f.size,
                checksum: f.checksum,
                mode: src.mode,
                mtime: src.mtime,
                part: i,
                layers,
                hashes,
            });
        }
        size += result.size;
        stored_size += result.stored_size;
        manifest_parts.push(Part {
            name: plan.name,
            tablespace: plan.tablespace,
            size: result.size,
            stored_size: result.stored_size,
            stored_checksum: result.stored_checksum,
            hashes: hash_object,
        });
    }
    Ok(Copied {
        bad_pages,
        parts: manifest_parts,
        files: manifest_files,
        directories: walked.directories,
        tablespaces: walked.tablespaces,
        size,
        stored_size,
    })
}

/// A new chain's seed for its block hashes, from the kernel's randomness.
fn random_seed() -> Result<u64> {
    use std::io::Read;
    let path = std::path::Path::new("/dev/urandom");
    let mut bytes = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading", path, e))?;
    Ok(u64::from_le_bytes(bytes))
}

/// Invariant 5: the manifest is written only once every WAL segment from
/// the backup's start to its stop is in the archive. From a standby the
/// primary's archiver stores them, and the stop segment only once the
/// primary leaves it.
async fn wait_for_wal(
    repo: &Repository,
    binding: &str,
    first: Segment,
    last: Segment,
    seg_size: u64,
    timeout: Duration,
    from_standby: bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut progress: Option<Progress> = None;
    let needed = first.number(seg_size).abs_diff(last.number(seg_size)) + 1;
    // The stop segment is usually archived within tens of milliseconds:
    // look every 20 ms for a second (one directory listing each; doubling
    // from the start made the wait up to twice the archiver's time), then
    // less and less often.
    let waiting_since = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let mut missing = Vec::new();
        let mut seg = first;
        let mut listings = WalListings::new(repo, binding);
        loop {
            if listings.find(WalFileName::Segment(seg)).await?.is_none() {
                missing.push(seg);
            }
            if seg == last {
                break;
            }
            seg = seg.next(seg_size);
        }
        if let Some(p) = &progress {
            p.set(needed - missing.len() as u64);
        }
        if missing.is_empty() {
            if let Some(p) = progress {
                p.finish();
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            if let Some(p) = &progress {
                p.abandon();
            }
            return Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "WAL {} needed by the backup did not reach {} within {:?}; the backup is incomplete and has no manifest",
                    missing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
                    repo.describe(),
                    timeout
                ),
            )
            .with_hint(if from_standby {
                standby::WAIT_HINT
            } else {
                "check that archive_mode is on and archive_command calls `pgproof wal-push` for this cluster and repository"
            }));
        }
        if progress.is_none() {
            tracing::info!(
                "waiting for {} to store {} WAL segment(s), starting with {} (at most {})",
                if from_standby {
                    "the primary's archiver"
                } else {
                    "the archiver"
                },
                missing.len(),
                missing[0],
                report::duration(timeout)
            );
            let p = Progress::start("archived", Unit::Items("segments"), needed);
            p.set(needed - missing.len() as u64);
            progress = Some(p);
        }
        tokio::time::sleep(pause).await;
        if waiting_since.elapsed() > Duration::from_secs(1) {
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}
