//! How many requests this process made to storage, by kind: what `--stats`
//! and `-vv` print, and what the request-budget tests hold commands to.
//!
//! Counted where a request is issued: one per HTTP request on object
//! storage (each page of a listing; an upload once, however many parts it
//! has) and one per call on a local repository. Retries object_store makes of a
//! failed request are not counted: they are the network's cost, not the
//! command's.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    List,
    Read,
    Lookup,
    Write,
    Delete,
}

const KINDS: [RequestKind; 5] = [
    RequestKind::List,
    RequestKind::Read,
    RequestKind::Lookup,
    RequestKind::Write,
    RequestKind::Delete,
];

static COUNTS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

pub(crate) fn count(kind: RequestKind) {
    COUNTS[kind as usize].fetch_add(1, Ordering::Relaxed);
}

/// The requests made so far by this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub list: u64,
    pub read: u64,
    pub lookup: u64,
    pub write: u64,
    pub delete: u64,
}

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.list + self.read + self.lookup + self.write + self.delete
    }
}

pub fn requests() -> RequestCounts {
    let mut counts = RequestCounts::default();
    for kind in KINDS {
        let n = COUNTS[kind as usize].load(Ordering::Relaxed);
        match kind {
            RequestKind::List => counts.list = n,
            RequestKind::Read => counts.read = n,
            RequestKind::Lookup => counts.lookup = n,
            RequestKind::Write => counts.write = n,
            RequestKind::Delete => counts.delete = n,
        }
    }
    counts
}

impl std::fmt::Display for RequestCounts {
    /// `storage requests: 7 (2 lists, 3 reads, 1 lookups, 1 writes, 0 deletes)`:
    /// the line `--stats` prints, parsed by the tests.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "storage requests: {} ({} lists, {} reads, {} lookups, {} writes, {} deletes)",
            self.total(),
            self.list,
            self.read,
            self.lookup,
            self.write,
            self.delete
        )
    }
}
