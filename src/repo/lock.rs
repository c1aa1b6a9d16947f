//! Locks of a cluster prefix (docs/FORMAT.md, "Locks"): an object created
//! with create-if-absent while held, deleted when released. A holder that
//! died (SIGKILL, a crash, a reboot) leaves its lock behind; a later run
//! replaces it only when the caller's judgement proves the holder gone, and
//! only after winning a second lock keyed by the stale holder's token, so
//! that two runs finding one stale lock never both take it over. Whether a
//! process runs is the caller's knowledge, not the repository's.

use super::{Repository, document, layout};
use crate::codec::Checksum;
use crate::error::{Error, ErrorKind, Result};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The content of a lock object: who holds it, precisely enough to prove
/// the holder gone on its host despite pid reuse.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LockHolder {
    pub format: u32,
    /// Unique to one acquisition; take-over locks and backup claims name it.
    pub token: String,
    /// The pgproof command holding it (`backup-push`).
    pub command: String,
    pub host: String,
    /// The host's `/proc/sys/kernel/random/boot_id` (empty if unknown).
    pub boot_id: String,
    pub pid: u32,
    /// The process's start time, clock ticks after boot (`/proc/<pid>/stat`).
    pub process_start: u64,
    pub pgproof_version: String,
    pub started_at: DateTime<Utc>,
}

impl LockHolder {
    pub fn new(
        command: &str,
        host: &str,
        boot_id: &str,
        pid: u32,
        process_start: u64,
    ) -> LockHolder {
        let started_at = Utc::now();
        let seed = format!(
            "{host}\n{boot_id}\n{pid}\n{process_start}\n{}",
            started_at.timestamp_nanos_opt().unwrap_or_default()
        );
        LockHolder {
            format: super::identity::FORMAT_VERSION,
            token: Checksum::of(seed.as_bytes()).to_hex()[..16].to_string(),
            command: command.to_string(),
            host: host.to_string(),
            boot_id: boot_id.to_string(),
            pid,
            process_start,
            pgproof_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
        }
    }

    /// `pgproof 0.1.0 backup-push (pid 4242 on host db7, since 2026-11-25 14:02:07 UTC)`
    pub fn describe(&self) -> String {
        format!(
            "pgproof {} {} (pid {} on host {}, since {})",
            self.pgproof_version,
            self.command,
            self.pid,
            self.host,
            self.started_at.format("%Y-%m-%d %H:%M:%S UTC")
        )
    }
}

/// The caller's verdict on a recorded holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// Running, or not provably gone: the lock is respected.
    Held(String),
    /// Provably gone: the lock may be taken over.
    Stale(String),
}

/// A lock this process holds.
#[derive(Debug, Clone)]
pub struct HeldLock {
    pub name: String,
    pub key: String,
    pub token: String,
    /// The stale holder replaced to get it, and why it was judged gone.
    pub took_over: Option<(LockHolder, String)>,
}

/// A lock held by another process or one that cannot be read, at most
/// this many take-over locks deep (a take-over killed midway leaves a
/// stale take-over lock, itself taken over the same way).
const MAX_DEPTH: usize = 3;

type Judge<'a> = &'a (dyn Fn(&LockHolder) -> Judged + Sync);

impl Repository {
    /// Takes the lock `name` for `me`, taking over a stale one; refuses
    /// with `Busy`, naming the holder, when it is held.
    pub async fn acquire_lock(
        &self,
        name: &str,
        me: &LockHolder,
        judge: Judge<'_>,
    ) -> Result<HeldLock> {
        let bytes = Bytes::from(document::encode(me)?);
        let took_over = self.acquire_named(name, &bytes, judge, 0).await?;
        Ok(HeldLock {
            name: name.to_string(),
            key: layout::lock(&self.cluster, name),
            token: me.token.clone(),
            took_over,
        })
    }

    fn acquire_named<'a>(
        &'a self,
        name: &'a str,
        bytes: &'a Bytes,
        judge: Judge<'a>,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, Result<Option<(LockHolder, String)>>> {
        Box::pin(async move {
            let key = layout::lock(&self.cluster, name);
            for _ in 0..4 {
                match self.storage.put_new(&key, bytes.clone()).await {
                    Ok(()) => return Ok(None),
                    Err(e) if e.kind() == ErrorKind::Conflict => {}
                    Err(e) => return Err(e.context(format!("taking the lock {key}"))),
                }
                // Released between the two calls: try again.
                let Some(holder) = self.read_lock_key(&key).await? else {
                    continue;
                };
                let why = match judge(&holder) {
                    Judged::Held(why) => return Err(self.busy(&key, &holder, &why)),
                    Judged::Stale(why) => why,
                };
                if depth >= MAX_DEPTH {
                    return Err(self.busy(&key, &holder, &why));
                }
                // Only the run that creates this lock may replace the stale
                // one; a second run finding the same stale holder is refused
                // (or finds the first run's lock, running, at its next try).
                let takeover = layout::lock_takeover(name, &holder.token);
                self.acquire_named(&takeover, bytes, judge, depth + 1)
                    .await?;
                let replaced = async {
                    match self.read_lock_key(&key).await? {
                        Some(current) if current.token == holder.token => {
                            self.storage.put_replace(&key, bytes.clone()).await?;
                            Ok::<_, Error>(true)
                        }
                        _ => Ok(false),
                    }
                }
                .await;
                // The take-over lock is needed only while replacing: a later
                // run that wins it finds another token in the lock.
                let takeover_key = layout::lock(&self.cluster, &takeover);
                if let Err(e) = self.storage.delete(&takeover_key).await {
                    tracing::warn!("could not remove the take-over lock {takeover_key}: {e}");
                }
                if replaced? {
                    return Ok(Some((holder, why)));
                }
            }
            Err(Error::new(
                ErrorKind::Busy,
                format!("the lock {key} changed hands repeatedly while being taken"),
            )
            .with_hint("another pgproof is working on this cluster; try again later"))
        })
    }

    /// Releases a lock this process holds; one taken over since (this
    /// process was judged gone by mistake) is left to its new holder.
    pub async fn release_lock(&self, held: &HeldLock) -> Result<()> {
        match self.read_lock_key(&held.key).await {
            Ok(Some(h)) if h.token == held.token => {}
            Ok(Some(h)) => {
                tracing::warn!(
                    "the lock {} is now held by {}; left to it",
                    held.key,
                    h.describe()
                );
                return Ok(());
            }
            Ok(None) => {
                tracing::warn!("the lock {} was already removed", held.key);
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        match self.storage.delete(&held.key).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e
                .context(format!("releasing the lock {}", held.key))
                .with_hint(format!(
                    "the next run will find it and take it over once this process ({}) has ended",
                    std::process::id()
                ))),
            _ => Ok(()),
        }
    }

    /// Who holds the lock `name`, if anyone.
    pub async fn lock_holder(&self, name: &str) -> Result<Option<LockHolder>> {
        self.read_lock_key(&layout::lock(&self.cluster, name)).await
    }

    async fn read_lock_key(&self, key: &str) -> Result<Option<LockHolder>> {
        let bytes = match self.storage.get(key).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        document::decode(&bytes, &format!("lock {key}"))
            .map(Some)
            .map_err(|e| {
                e.with_hint(format!(
                    "if no pgproof works on this cluster, remove {}",
                    self.locate(key)
                ))
            })
    }

    fn busy(&self, key: &str, holder: &LockHolder, why: &str) -> Error {
        Error::new(
            ErrorKind::Busy,
            format!(
                "{} is locked by {}: {why}",
                self.describe(),
                holder.describe()
            ),
        )
        .with_hint(format!(
            "wait for it to end; pgproof takes a lock over by itself only when its holder provably ended on this host. If no pgproof runs as pid {} on {}, remove {}",
            holder.pid,
            holder.host,
            self.locate(key)
        ))
    }

    /// A key as an operator finds it: the repository URL and the key.
    fn locate(&self, key: &str) -> String {
        format!(
            "{}/{key}",
            self.storage.url().to_string().trim_end_matches('/')
        )
    }
}
