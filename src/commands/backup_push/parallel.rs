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

/// Parts' completions (the upload's last request; on a filesystem, the
/// sync of the whole part) run beside the next parts' reading, so that a
/// slot never waits on the disk or the network while there is data to
/// compress. At most `limit` run at once: more would only queue on the
/// same disk, so a part that completes beyond that waits for one to end.
/// The first failure cancels the copy.
pub struct Completions {
    permits: Arc<tokio::sync::Semaphore>,
    running: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    first_failure: Arc<std::sync::Mutex<Option<Error>>>,
    runtime: tokio::runtime::Handle,
}

impl Completions {
    /// Must be created on the runtime that will run the completions.
    pub fn new(limit: usize) -> Completions {
        Completions {
            permits: Arc::new(tokio::sync::Semaphore::new(limit.max(1))),
            running: Default::default(),
            first_failure: Default::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Runs `complete` on a blocking thread, from a part's blocking thread.
    pub fn spawn(
        &self,
        cancel: &Cancel,
        complete: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let permit = self
            .runtime
            .block_on(self.permits.clone().acquire_owned())
            .map_err(|_| Error::new(ErrorKind::LocalIo, "the part completions were closed"))?;
        let (cancel, first_failure) = (cancel.clone(), self.first_failure.clone());
        let handle = self.runtime.spawn_blocking(move || {
            let _permit = permit;
            if let Err(e) = complete() {
                cancel.set();
                let mut first = first_failure.lock().expect("never held across a panic");
                match *first {
                    None => *first = Some(e),
                    Some(_) => tracing::debug!("another part failed too: {e}"),
                }
            }
        });
        self.running
            .lock()
            .expect("never held across a panic")
            .push(handle);
        Ok(())
    }

    /// Waits for every completion spawned so far (after a failure of the
    /// copy, for `WIND_DOWN` at most: a part still running when the copy
    /// failed may spawn one later, which then ends with the process); the
    /// first completion's failure, which is the cause of any cancellation
    /// the copy saw, or else `copied`'s outcome.
    pub async fn wait_all<T>(&self, copied: Result<T>) -> Result<T> {
        let handles = std::mem::take(&mut *self.running.lock().expect("never held across a panic"));
        let all = futures::future::join_all(handles);
        let joined = if copied.is_ok() {
            Some(all.await)
        } else {
            tokio::time::timeout(WIND_DOWN, all).await.ok()
        };
        if let Some(e) = self
            .first_failure
            .lock()
            .expect("never held across a panic")
            .take()
        {
            return Err(e);
        }
        for j in joined.into_iter().flatten() {
            j.map_err(|e| Error::new(ErrorKind::LocalIo, "part completion failed").with_source(e))?;
        }
        copied
    }
}

/// Holds one item back until `count` others have passed it, or the copy
/// is cancelled. Items start in order, so the held one, listed last,
/// waits only for items already running: no slot is ever starved.
pub struct Gate {
    left: std::sync::Mutex<usize>,
    passed: std::sync::Condvar,
}

impl Gate {
    pub fn new(count: usize) -> Gate {
        Gate {
            left: std::sync::Mutex::new(count),
            passed: std::sync::Condvar::new(),
        }
    }

    pub fn pass(&self) {
        let mut left = self.left.lock().expect("never held across a panic");
        *left = left.saturating_sub(1);
        self.passed.notify_all();
    }

    /// Blocks until every other item has passed; an error once cancelled.
    pub fn wait(&self, cancel: &Cancel) -> Result<()> {
        let mut left = self.left.lock().expect("never held across a panic");
        while *left > 0 {
            if cancel.is_set() {
                return Err(cancelled());
            }
            // A cancellation sets a flag and notifies no one: look again soon.
            left = self
                .passed
                .wait_timeout(left, Duration::from_millis(50))
                .expect("never held across a panic")
                .0;
        }
        Ok(())
    }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_gated_item_is_read_after_every_other() {
        use std::sync::Mutex;
        for jobs in [1, 2, 4] {
            let order = Arc::new(Mutex::new(Vec::new()));
            let gate = Arc::new(Gate::new(3));
            let (o, g) = (order.clone(), gate.clone());
            run(
                vec![0, 1, 2, 3],
                jobs,
                Cancel::default(),
                move |i, cancel| {
                    if i == 3 {
                        g.wait(cancel)?;
                    } else {
                        // The earliest item reads longest.
                        std::thread::sleep(Duration::from_millis(60 - 20 * i as u64));
                    }
                    o.lock().unwrap().push(i);
                    if i != 3 {
                        g.pass();
                    }
                    Ok(())
                },
            )
            .await
            .unwrap();
            assert_eq!(order.lock().unwrap().last(), Some(&3), "{jobs} jobs");
        }
        // A failure of another item releases the gated one as cancelled.
        let gate = Arc::new(Gate::new(1));
        let g = gate.clone();
        let result = run(vec![0, 1], 2, Cancel::default(), move |i, cancel| {
            if i == 1 {
                return g.wait(cancel);
            }
            std::thread::sleep(Duration::from_millis(50));
            Err(Error::new(ErrorKind::LocalIo, "reading base/1/1234"))
        })
        .await;
        assert_eq!(result.unwrap_err().message(), "reading base/1/1234");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn completions_run_beside_the_next_parts() {
        let completions = Arc::new(Completions::new(4));
        let started = Instant::now();
        let c = completions.clone();
        // Four parts on one slot, each reading 50 ms then completing for 300 ms.
        let copied = run(vec![0, 1, 2, 3], 1, Cancel::default(), move |i, cancel| {
            std::thread::sleep(Duration::from_millis(50));
            c.spawn(cancel, || {
                std::thread::sleep(Duration::from_millis(300));
                Ok(())
            })?;
            Ok(i)
        })
        .await;
        let done = completions.wait_all(copied).await.unwrap();
        assert_eq!(done.len(), 4);
        let took = started.elapsed();
        // In series: 4 x 350 ms. Beside each other: 4 x 50 + 300 ms.
        assert!(took >= Duration::from_millis(500), "{took:?}");
        assert!(took < Duration::from_millis(1000), "{took:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_completion_cancels_the_copy_and_is_the_error_reported() {
        let completions = Arc::new(Completions::new(2));
        let c = completions.clone();
        let copied = run(vec![0, 1, 2], 1, Cancel::default(), move |i, cancel| {
            if i == 0 {
                c.spawn(cancel, || {
                    Err(Error::new(ErrorKind::Storage, "fsync of part 1 failed"))
                })?;
                return Ok(i);
            }
            // The next part reads until the failure cancels it.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !cancel.is_set() {
                assert!(
                    Instant::now() < deadline,
                    "the failure did not cancel the copy"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(cancelled())
        })
        .await;
        assert!(copied.is_err());
        let err = completions.wait_all(copied).await.unwrap_err();
        assert_eq!(err.message(), "fsync of part 1 failed");
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
