//! `--max-rate` at the one place a backup reads the data directory: every
//! read of a file's content, whole (parts), block by block (incremental)
//! or for an unchanged check, first asks the shared limiter, so full,
//! incremental and offline backups are held alike and nothing is read
//! ahead of what storage takes. A part waiting here still notices
//! cancellation within a tenth of a second, so SIGINT and a failed part
//! stop it even at a very low rate.

use super::parallel::{Cancel, cancelled_io};
use crate::rate::Limiter;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The longest sleep between looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(100);

/// What a reading thread consults: the limiter, if any, and the cancel flag.
#[derive(Clone, Copy)]
pub struct Throttle<'a> {
    limiter: Option<&'a Limiter>,
    cancel: &'a Cancel,
}

impl<'a> Throttle<'a> {
    pub fn new(limiter: Option<&'a Limiter>, cancel: &'a Cancel) -> Throttle<'a> {
        Throttle { limiter, cancel }
    }

    /// Waits until `n` bytes may be read (at once without a limit).
    fn admit(&self, n: usize) -> std::io::Result<()> {
        let Some(limiter) = self.limiter else {
            return Ok(());
        };
        let until = limiter.reserve(n as u64);
        loop {
            if self.cancel.is_set() {
                return Err(cancelled_io());
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(CANCEL_CHECK));
        }
    }

    /// A read that came up short (end of file) returns what it did not use.
    fn unused(&self, asked: usize, got: usize) {
        if let Some(limiter) = self.limiter {
            limiter.refund(asked.saturating_sub(got) as u64);
        }
    }

    /// `file.read_at`, once admitted.
    pub fn read_at(
        &self,
        file: &std::fs::File,
        buf: &mut [u8],
        offset: u64,
    ) -> std::io::Result<usize> {
        self.admit(buf.len())?;
        let read = file.read_at(buf, offset);
        self.unused(buf.len(), *read.as_ref().unwrap_or(&0));
        read
    }

    /// `inner` read through this throttle.
    pub fn reader<R: Read>(self, inner: R) -> Throttled<'a, R> {
        Throttled {
            inner,
            throttle: self,
        }
    }
}

pub struct Throttled<'a, R> {
    inner: R,
    throttle: Throttle<'a>,
}

impl<R: Read> Read for Throttled<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.throttle.admit(buf.len())?;
        let read = self.inner.read(buf);
        self.throttle
            .unused(buf.len(), *read.as_ref().unwrap_or(&0));
        read
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Rate;

    #[test]
    fn reads_are_held_to_the_rate_and_a_short_read_costs_only_what_it_read() {
        let rate = 4_000_000;
        let limiter = Limiter::new(Rate::from_bytes_per_sec(rate).unwrap());
        let cancel = Cancel::default();
        let data = vec![7u8; 3 * 1_000_000];
        let mut reader = Throttle::new(Some(&limiter), &cancel).reader(&data[..]);
        let started = Instant::now();
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let took = started.elapsed().as_secs_f64();
        assert_eq!(total, data.len() as u64);
        let least = (total - limiter.burst()) as f64 / rate as f64;
        assert!(took >= least * 0.99, "{took:.3}s, at least {least:.3}s");
        // The final empty read asked for a whole buffer and was refunded it.
        assert!(limiter.reserve(0) <= Instant::now() + Duration::from_millis(100));
    }

    #[test]
    fn a_wait_ends_when_the_copy_is_cancelled() {
        let limiter = Limiter::new(Rate::from_bytes_per_sec(1000).unwrap());
        let cancel = Cancel::default();
        let throttle = Throttle::new(Some(&limiter), &cancel);
        // Drain the burst: the next read owes an hour.
        throttle.admit(limiter.burst() as usize).unwrap();
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                cancel.set();
            });
            let e = throttle.admit(3_600_000).unwrap_err();
            assert_eq!(e.to_string(), cancelled_io().to_string());
        });
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
