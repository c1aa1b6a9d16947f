//! Parts are written on blocking threads, a few at a time. The first part
//! that fails ends the copy: parts not started are skipped, parts running
//! see the cancel flag at their next read and stop, and the failure is
//! returned without waiting for the whole backup to be read. Dropping the
//! copy (SIGINT/SIGTERM) cancels the same way.

use crate::error::{Error, ErrorKind, Result};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set once the copy is over for every part.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// How long parts still running after a failure get to notice it (one
/// read and one storage request each, an upload's abort); past it the
/// failure is reported anyway and they end with the process.
pub const WIND_DOWN: Duration = Duration::from_secs(10);

fn cancelled() -> Error {
    Error::new(ErrorKind::LocalIo, "cancelled: another part failed")
}

/// Runs `work` on every item, `jobs` at a time; the results in the order
/// they finished, or the first failure. Setting `cancel` from outside ends
/// the run as a failure does.
pub async fn run<I, T, F>(items: Vec<I>, jobs: usize, cancel: Cancel, work: F) -> Result<Vec<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I, &Cancel) -> Result<T> + Send + Sync + 'static,
{
    let _guard = CancelOnDrop(cancel.clone());
    let work = Arc::new(work);
    let mut running = futures::stream::iter(items.into_iter().map(|item| {
        let work = work.clone();
        let cancel = cancel.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                if cancel.is_set() {
                    return Err(cancelled());
                }
                work(item, &cancel)
            })
            .await
            .map_err(|e| Error::new(ErrorKind::LocalIo, "part task failed").with_source(e))?
        }
    }))
    .buffer_unordered(jobs.max(1));

    let mut done = Vec::new();
    while let Some(result) = running.next().await {
        match result {
            Ok(t) => done.push(t),
            Err(e) => {
                cancel.set();
                let _ = tokio::time::timeout(WIND_DOWN, running.for_each(|_| async {})).await;
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// The error a part's reader returns once the copy is cancelled.
pub fn cancelled_io() -> std::io::Error {
    std::io::Error::other("cancelled: another part failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_failure_stops_the_other_parts() {
        use std::sync::atomic::AtomicUsize;
        let started = Instant::now();
        let begun = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(AtomicUsize::new(0));
        let (b, st) = (begun.clone(), stopped.clone());
        let result = run(
            vec![0, 1, 2, 3],
            2,
            Cancel::default(),
            move |item, cancel| {
                b.fetch_add(1, Ordering::SeqCst);
                if item == 0 {
                    std::thread::sleep(Duration::from_millis(200));
                    return Err(Error::new(ErrorKind::LocalIo, "reading base/1/1234"));
                }
                // A long part: reads until told to stop.
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline {
                    if cancel.is_set() {
                        st.fetch_add(1, Ordering::SeqCst);
                        return Err(cancelled());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(item)
            },
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.message(), "reading base/1/1234");
        assert!(
            started.elapsed() < WIND_DOWN / 2,
            "the failure waited for the other parts: {:?}",
            started.elapsed()
        );
        // The running part stopped at its next read; the others never began.
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
        assert_eq!(begun.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn every_result_when_nothing_fails() {
        let mut done = run(vec![3, 1, 2], 2, Cancel::default(), |i, _| Ok(i * 10))
            .await
            .unwrap();
        done.sort();
        assert_eq!(done, vec![10, 20, 30]);
    }
}
