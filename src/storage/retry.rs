//! How storage requests are timed and retried: one policy for every
//! backend and command.
//!
//! object_store retries what it knows to be safe (connection errors, 5xx
//! and 503 Slow Down, timeouts of idempotent requests), with exponential
//! backoff and jitter, each attempt under its own time limit, and resumes an
//! interrupted download from the last byte received. This module configures
//! it and adds what it leaves to the caller: a conditional create whose
//! outcome is unknown (`Storage::put_new`), and a backstop so that no call
//! outlives the policy however a request hangs.

use crate::error::{Error, ErrorKind};
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

pub const UNREACHABLE_HINT: &str = "check that the repository is reachable (network, endpoint, credentials); raise --timeout for a slow link, or --retries/--retry-deadline to ride out longer outages";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The time limit of each attempt of one request.
    pub attempt_timeout: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
    /// No retry starts once this long has passed since the first attempt.
    pub deadline: Duration,
}

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const LONGEST_PAUSE: Duration = Duration::from_secs(10);

impl Default for RetryPolicy {
    /// Eight retries take about half a minute of pauses (0.2 s doubling to
    /// 10 s): enough to ride out a dropped connection or a burst of Slow
    /// Down. Two minutes bound an outage's cost to a command run by
    /// archive_command, which PostgreSQL retries anyway.
    fn default() -> Self {
        RetryPolicy {
            attempt_timeout: super::DEFAULT_TIMEOUT,
            retries: 8,
            deadline: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    pub(super) fn object_store_config(&self) -> object_store::RetryConfig {
        object_store::RetryConfig {
            backoff: object_store::BackoffConfig {
                init_backoff: FIRST_PAUSE,
                max_backoff: LONGEST_PAUSE,
                base: 2.0,
            },
            max_retries: self.retries,
            retry_timeout: self.deadline,
        }
    }

    /// The longest one storage call may take: the deadline, the last
    /// attempt started just before it, and that attempt's pause.
    pub fn backstop(&self) -> Duration {
        self.deadline + self.attempt_timeout + LONGEST_PAUSE
    }

    /// The same policy with each attempt limited to at most `limit`, for
    /// quick looks that must not hold up a report.
    pub fn with_attempt_timeout_at_most(mut self, limit: Duration) -> RetryPolicy {
        self.attempt_timeout = self.attempt_timeout.min(limit);
        self.deadline = self.deadline.min(limit * 3);
        self
    }
}

/// Pauses between retries made here (object_store paces its own):
/// exponential, with full jitter so that many archivers do not retry in step.
pub(super) struct Backoff {
    retries_left: usize,
    deadline: Duration,
    ceiling: Duration,
}

impl Backoff {
    pub(super) fn new(policy: &RetryPolicy) -> Backoff {
        Backoff {
            retries_left: policy.retries,
            deadline: policy.deadline,
            ceiling: FIRST_PAUSE,
        }
    }

    pub(super) fn may_retry(&self, started: Instant) -> bool {
        self.retries_left > 0 && started.elapsed() < self.deadline
    }

    pub(super) fn next_pause(&mut self) -> Duration {
        self.retries_left = self.retries_left.saturating_sub(1);
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(LONGEST_PAUSE);
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        ceiling.mul_f64(0.5 + (random % 1000) as f64 / 2000.0)
    }
}

/// Whether a failed storage call may succeed if tried again: the store
/// could not be reached or answered with a server error, or the call
/// outlived its backstop. Refusals (not found, exists, permission,
/// credentials) and local I/O are not.
pub fn transient(err: &Error) -> bool {
    if err.kind() != ErrorKind::Storage {
        return false;
    }
    match err
        .source_error()
        .and_then(|s| s.downcast_ref::<object_store::Error>())
    {
        None => true,
        Some(object_store::Error::Generic { store, .. }) => *store != "LocalFileSystem",
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_the_ceiling_with_jitter_and_stop_at_the_count() {
        let policy = RetryPolicy {
            retries: 10,
            ..Default::default()
        };
        let mut backoff = Backoff::new(&policy);
        let started = Instant::now();
        let mut pauses = Vec::new();
        while backoff.may_retry(started) {
            pauses.push(backoff.next_pause());
        }
        assert_eq!(pauses.len(), 10);
        assert!(pauses[0] >= FIRST_PAUSE / 2 && pauses[0] <= FIRST_PAUSE);
        assert!(pauses.iter().all(|p| *p <= LONGEST_PAUSE));
        assert!(pauses[9] >= LONGEST_PAUSE / 2, "{pauses:?}");
    }

    #[test]
    fn no_retry_starts_after_the_deadline() {
        let policy = RetryPolicy {
            deadline: Duration::ZERO,
            ..Default::default()
        };
        assert!(!Backoff::new(&policy).may_retry(Instant::now()));
    }

    #[test]
    fn only_unreachable_storage_is_worth_retrying() {
        let generic = object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        };
        assert!(transient(
            &Error::new(ErrorKind::Storage, "storing x").with_source(generic)
        ));
        assert!(transient(&Error::new(ErrorKind::Storage, "timed out")));
        let denied = object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "403".into(),
        };
        assert!(!transient(
            &Error::new(ErrorKind::Storage, "storing x").with_source(denied)
        ));
        let local = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: "No space left on device".into(),
        };
        assert!(!transient(
            &Error::new(ErrorKind::Storage, "storing x").with_source(local)
        ));
        assert!(!transient(&Error::new(ErrorKind::Conflict, "exists")));
        assert!(!transient(&Error::new(ErrorKind::Corrupt, "checksum")));
    }
}
