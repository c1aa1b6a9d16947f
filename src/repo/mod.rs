//! The repository: a cluster's prefix in storage, its identity record, its
//! WAL archive, its backups and their proofs. Uses storage and codecs; knows
//! nothing of commands or the CLI.

pub mod backup_objects;
pub mod backups;
pub mod block_entry;
pub mod block_hashes;
pub mod chain;
pub mod claim;
pub mod continuity;
pub mod document;
pub mod identity;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod part_reader;
pub mod path_bytes;
pub mod permanent;
pub mod probe;
pub mod proof;
pub mod root;
pub mod unfinished;
pub mod wal;
pub mod wal_claim;
pub mod wal_dirs;

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;
use bytes::Bytes;
use identity::{Binding, ClusterRecord, FORMAT_VERSION};

/// Fills `buf` as far as the stream allows; fewer bytes only at its end.
/// Stored objects are read in fixed-size pieces (WAL frames, part chunks).
pub(crate) fn read_full(reader: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
pub use crate::storage::ObjectInfo;
pub use layout::ClusterName;
pub use root::{Root, open};

/// Refuses a document written by a newer pgproof: it may mean something
/// this build would misread. `what` names the document (or the prefix).
pub(crate) fn readable_format(format: u32, what: &str) -> Result<()> {
    if format > FORMAT_VERSION {
        return Err(Error::config(format!(
            "{what} uses repository format {format}, newer than this pgproof understands ({FORMAT_VERSION})"
        ))
        .with_hint("upgrade pgproof on this host"));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Repository {
    storage: Storage,
    cluster: ClusterName,
}

/// What binding a system to the prefix found.
#[derive(Debug, Clone)]
pub enum Bound {
    /// The prefix was empty; this system is now its identity.
    Created(Binding),
    /// The prefix already belongs to this system.
    Existing(Binding),
    /// The prefix belongs to another system (its current binding is given).
    Mismatch(Binding),
    /// The prefix belongs to this system, but its identity record is of an
    /// older format (given), which `bound` reports instead of raising.
    Older(Binding, u32),
}

impl Repository {
    pub fn new(storage: Storage, cluster: ClusterName) -> Repository {
        Repository { storage, cluster }
    }

    pub fn cluster(&self) -> &ClusterName {
        &self.cluster
    }

    /// `<repository URL>/<cluster>`, as operators see the prefix.
    pub fn describe(&self) -> String {
        format!(
            "{}/{}",
            self.storage.url().to_string().trim_end_matches('/'),
            self.cluster
        )
    }

    pub async fn load_record(&self) -> Result<Option<ClusterRecord>> {
        let key = layout::identity_record(&self.cluster);
        let bytes = match self.storage.get(&key).await {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let record: ClusterRecord = document::decode(&bytes, &format!("identity record {key}"))?;
        readable_format(record.format, &self.describe())?;
        if record.bindings.is_empty() {
            return Err(Error::corrupt(format!(
                "identity record {key} lists no system"
            )));
        }
        Ok(Some(record))
    }

    /// Appends `next` to the identity record, making it the binding new WAL
    /// and backups go to; the earlier bindings stay. Refuses when the
    /// record's current binding is no longer `expected` (changed since it
    /// was read): the operator decided on what they saw.
    pub async fn append_binding(&self, expected: &Binding, next: Binding) -> Result<ClusterRecord> {
        let mut record = self.load_record().await?.ok_or_else(|| {
            Error::new(
                ErrorKind::Conflict,
                format!("the identity record of {} vanished", self.describe()),
            )
        })?;
        if record.current() != expected {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "the identity record of {} changed while rebinding: it now belongs to system {}",
                    self.describe(),
                    record.current().system_identifier
                ),
            )
            .with_hint("run rebind again and check what it shows"));
        }
        record.bindings.push(next);
        let key = layout::identity_record(&self.cluster);
        self.storage
            .put_replace(&key, Bytes::from(document::encode(&record)?))
            .await?;
        Ok(record)
    }

    /// Raises the identity record's format to this build's before it writes
    /// anything an older pgproof would misread (format 4's WAL names: an
    /// older wal-fetch would not recognise them and report the WAL missing,
    /// ending a recovery early). Every command reads the record first, so
    /// an older pgproof then refuses the whole prefix, naming the format.
    async fn upgrade_record(&self, mut record: ClusterRecord) -> Result<()> {
        let from = record.format;
        record.format = FORMAT_VERSION;
        let key = layout::identity_record(&self.cluster);
        self.storage
            .put_replace(&key, Bytes::from(document::encode(&record)?))
            .await?;
        tracing::info!(
            "upgraded {} from repository format {from} to {FORMAT_VERSION}; a pgproof older than this one now refuses it",
            self.describe()
        );
        Ok(())
    }

    /// Whom a bound prefix belongs to, compared with `candidate`; `None`
    /// when the prefix has no identity record. Writes nothing, for a writer
    /// that must not bind a prefix nor raise its format (a standby's
    /// backup: the prefix is the primary's, and raising the format would
    /// stop an older pgproof archiving on the primary).
    pub async fn bound(&self, candidate: &Binding) -> Result<Option<Bound>> {
        Ok(self
            .load_record()
            .await?
            .map(|record| compare(&record, candidate)))
    }

    /// Binds an empty prefix to `candidate`, or reports whom it belongs to;
    /// raises an older identity record of the same system to this format.
    /// Safe against a concurrent first push: the record is created only if absent.
    pub async fn bind(&self, candidate: Binding) -> Result<Bound> {
        for _ in 0..2 {
            if let Some(record) = self.load_record().await? {
                return match compare(&record, &candidate) {
                    Bound::Older(current, _) => {
                        self.upgrade_record(record).await?;
                        Ok(Bound::Existing(current))
                    }
                    bound => Ok(bound),
                };
            }
            let record = ClusterRecord {
                format: FORMAT_VERSION,
                cluster: self.cluster.to_string(),
                bindings: vec![candidate.clone()],
            };
            let key = layout::identity_record(&self.cluster);
            match self
                .storage
                .put_new(&key, Bytes::from(document::encode(&record)?))
                .await
            {
                Ok(()) => return Ok(Bound::Created(candidate)),
                Err(e) if e.kind() == ErrorKind::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Storage,
            format!(
                "could not read or create the identity record of {}",
                self.describe()
            ),
        ))
    }
}

/// How `record` stands to `candidate`.
fn compare(record: &ClusterRecord, candidate: &Binding) -> Bound {
    let current = record.current().clone();
    if current.id != candidate.id {
        Bound::Mismatch(current)
    } else if record.format < FORMAT_VERSION {
        Bound::Older(current, record.format)
    } else {
        Bound::Existing(current)
    }
}
