//! Read rate limits (`backup-push --max-rate`): the rate as an operator
//! writes it, and one token bucket that every reading thread of a command
//! shares, so that a backup takes at most that much of the disk however
//! many parts it reads at once.
//!
//! The bucket is charged before each read and the reader sleeps off any
//! debt, so the limit is back-pressure at the source: nothing is read
//! early and held in memory waiting to be sent.

use crate::error::{Error, Result};
use crate::settings::Sourced;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A cap in bytes per second, never zero (zero means no limiter at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    bytes_per_sec: u64,
}

impl Rate {
    pub fn bytes_per_sec(self) -> u64 {
        self.bytes_per_sec
    }

    pub fn from_bytes_per_sec(n: u64) -> Option<Rate> {
        (n > 0).then_some(Rate { bytes_per_sec: n })
    }
}

/// Bytes one read may ask for (the compressor's 1 MiB frame): the bucket
/// must hold at least that, or every read would wait.
pub const READ_BUFFER: u64 = 1 << 20;

const UNITS: [(&str, u64); 9] = [
    ("", 1),
    ("K", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
];

const RATE_HINT: &str = "write bytes per second with a unit: 50MB (decimal, 10^6), 10MiB (binary, 2^20), 200M, 1.5GB, optionally ending in /s; 0 or off for no limit";

/// `50MB`, `10MiB`, `200M`, `1GB`, `1.5G/s`: bytes per second; `K`, `M`,
/// `G`, `T` are powers of 1000 and `Ki`, `Mi`, `Gi`, `Ti` of 1024, with or
/// without the `B`. `0` and `off` (also `unlimited`, `none`) mean no
/// limit (`None`). A bare number other than 0 is refused: `--max-rate 50`
/// could mean bytes, KiB (rsync) or MB, and a wrong guess is off a
/// thousandfold.
pub fn parse(text: &str) -> Result<Option<Rate>> {
    let bad =
        |why: &str| Error::config(format!("{text:?} is not a rate: {why}")).with_hint(RATE_HINT);
    let t = text.trim();
    if matches!(
        t.to_ascii_lowercase().as_str(),
        "off" | "unlimited" | "none"
    ) {
        return Ok(None);
    }
    let t = t.strip_suffix("/s").unwrap_or(t).trim_end();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim_start());
    if number.is_empty() {
        return Err(bad("it does not start with a number"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| bad(&format!("{number:?} is not a number")))?;
    if value == 0.0 && unit.is_empty() {
        return Ok(None);
    }
    if unit.is_empty() {
        return Err(bad("it has no unit"));
    }
    // A lower-case b is bits to many (network speeds): a rate eight times
    // what was meant is worse than a refusal.
    let lower = unit.to_ascii_lowercase();
    if unit.ends_with('b') || lower.contains("bit") || lower.ends_with("bps") {
        return Err(bad(&format!(
            "{unit:?} reads as bits; the limit is in bytes (B)"
        )));
    }
    let prefix = unit.strip_suffix('B').unwrap_or(unit);
    let multiplier = UNITS
        .iter()
        .find(|(p, _)| p.eq_ignore_ascii_case(prefix))
        .map(|(_, m)| *m)
        .ok_or_else(|| bad(&format!("{unit:?} is not a unit")))?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad("it is too large"));
    }
    match bytes.round() as u64 {
        0 if value == 0.0 => Ok(None),
        0 => Err(bad("it is less than one byte per second")),
        n => Ok(Some(Rate { bytes_per_sec: n })),
    }
}

/// The limit chosen: `flag` (`--max-rate` or `PGPROOF_MAX_RATE`, with its
/// origin) over the configuration file's `max_rate`; none by default. A
/// bad value is a configuration error naming where it came from.
pub fn resolve(
    flag: Option<Sourced<String>>,
    file: Option<&Sourced<String>>,
) -> Result<Option<Sourced<Rate>>> {
    let Some(text) = flag.or_else(|| file.cloned()) else {
        return Ok(None);
    };
    let rate =
        parse(&text.value).map_err(|e| e.context(format!("max rate from {}", text.origin)))?;
    Ok(rate.map(|r| Sourced::new(r, text.origin)))
}

impl fmt::Display for Rate {
    /// In the unit the rate is a whole number of, binary first (10 MiB/s,
    /// 50 MB/s); otherwise MB/s with a fraction.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.bytes_per_sec;
        let exact = UNITS
            .iter()
            .filter(|(_, m)| *m > 1 && n.is_multiple_of(*m))
            .max_by_key(|(_, m)| *m);
        match exact {
            Some((p, m)) => write!(f, "{} {p}B/s", n / m),
            None if n < 1_000_000 => write!(f, "{n} B/s"),
            None => write!(f, "{:.1} MB/s", n as f64 / 1e6),
        }
    }
}

/// A token bucket in bytes, shared (in an `Arc`) by every thread reading
/// for one command. A caller `reserve`s what it is about to read and
/// waits until the instant returned. The balance may go negative: a read
/// larger than what is left waits for exactly its own share, and the
/// callers after it wait behind it in turn, so the rate holds across
/// threads without any of them polling.
#[derive(Debug)]
pub struct Limiter {
    rate: Rate,
    /// What may be read at once after an idle moment: a tenth of a
    /// second's worth, or one read buffer if that is more.
    burst: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be read now without waiting (negative: owed).
    tokens: f64,
    at: Instant,
    /// Bytes charged and not refunded, for the rate achieved.
    taken: u64,
}

impl Limiter {
    pub fn new(rate: Rate) -> Limiter {
        let burst = (rate.bytes_per_sec as f64 / 10.0).max(READ_BUFFER as f64);
        Limiter {
            rate,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
                taken: 0,
            }),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Bytes that may go through at once, beyond the steady rate.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }

    /// Charges `n` bytes; the instant the caller may read them.
    pub fn reserve(&self, n: u64) -> Instant {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let rate = self.rate.bytes_per_sec as f64;
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(self.burst) - n as f64;
        b.at = now;
        b.taken += n;
        if b.tokens >= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Gives back bytes reserved but not read (a read that came up short),
    /// so that the next caller does not wait for them.
    pub fn refund(&self, n: u64) {
        if n > 0 {
            let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
            b.tokens = (b.tokens + n as f64).min(self.burst);
            b.taken = b.taken.saturating_sub(n);
        }
    }

    /// Bytes read through the limiter so far.
    pub fn taken(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).taken
    }

    /// The rate achieved over `took` and the share of the limit it is,
    /// as a phrase: `9.8 MB/s, 98% of the limit of 10 MB/s`.
    pub fn achieved(&self, took: Duration) -> String {
        let per_sec = self.taken() as f64 / took.as_secs_f64().max(1e-3);
        format!(
            "{:.1} MB/s, {:.0}% of the limit of {}",
            per_sec / 1e6,
            per_sec * 100.0 / self.rate.bytes_per_sec as f64,
            self.rate
        )
    }

    /// `reserve` and sleep until then.
    pub fn take(&self, n: u64) {
        let until = self.reserve(n);
        let now = Instant::now();
        if until > now {
            std::thread::sleep(until - now);
        }
    }
}

/// A rate's origin in words, for the line that announces it.
pub fn describe(rate: &Sourced<Rate>) -> String {
    format!("reading at most {} (from {})", rate.value, rate.origin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Origin;
    use std::sync::Arc;

    fn rate(text: &str) -> u64 {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .unwrap_or_else(|| panic!("{text} is a limit"))
            .bytes_per_sec()
    }

    #[test]
    fn rates_in_decimal_and_binary_units() {
        assert_eq!(rate("50MB"), 50_000_000);
        assert_eq!(rate("10MiB"), 10 << 20);
        assert_eq!(rate("200M"), 200_000_000);
        assert_eq!(rate("1GB"), 1_000_000_000);
        assert_eq!(rate("1.5GiB"), 3 << 29);
        assert_eq!(rate("512KiB/s"), 512 << 10);
        assert_eq!(rate(" 20 MB/s "), 20_000_000);
        assert_eq!(rate("100k"), 100_000);
        assert_eq!(rate("4096B"), 4096);
        assert_eq!(rate("2T"), 2_000_000_000_000);
        for off in ["0", "off", "OFF", "0MB", "unlimited", "none", "0.0"] {
            assert_eq!(parse(off).unwrap(), None, "{off}");
        }
    }

    #[test]
    fn bad_rates_are_config_errors_that_say_why() {
        for (text, why) in [
            ("fast", "does not start with a number"),
            ("", "does not start with a number"),
            ("50", "no unit"),
            ("50Mb", "bits"),
            ("50 mbit", "bits"),
            ("50Mbps", "bits"),
            ("20mb", "bits"),
            ("50XB", "not a unit"),
            ("5.5.5MB", "not a number"),
            ("0.1B", "less than one byte"),
            ("-5MB", "does not start with a number"),
            ("99999999999999999999TB", "too large"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.kind().exit_code(), 3, "{text}");
            assert!(e.to_string().contains(why), "{text}: {e}");
            assert!(e.hint().unwrap().contains("10MiB"), "{text}");
        }
    }

    #[test]
    fn the_flag_wins_and_errors_name_their_origin() {
        let file = Sourced::new("x".to_string(), Origin::File("/etc/p.toml".into()));
        let flag = Sourced::new("10MB".to_string(), Origin::Env("PGPROOF_MAX_RATE"));
        let r = resolve(Some(flag), Some(&file)).unwrap().unwrap();
        assert_eq!(r.value.bytes_per_sec(), 10_000_000);
        assert_eq!(r.origin, Origin::Env("PGPROOF_MAX_RATE"));
        let e = resolve(None, Some(&file)).unwrap_err();
        assert!(e.to_string().contains("max rate from /etc/p.toml"), "{e}");
        let off = Sourced::new("off".to_string(), Origin::Flag("--max-rate"));
        assert_eq!(resolve(Some(off), Some(&file)).unwrap(), None);
        assert_eq!(resolve(None, None).unwrap(), None);
    }

    #[test]
    fn rates_are_shown_in_their_own_unit() {
        let show = |n| Rate::from_bytes_per_sec(n).unwrap().to_string();
        assert_eq!(show(50_000_000), "50 MB/s");
        assert_eq!(show(10 << 20), "10 MiB/s");
        assert_eq!(show(1_000_000_000), "1 GB/s");
        assert_eq!(show(1_500_000), "1500 KB/s");
        assert_eq!(show(123), "123 B/s");
        assert_eq!(show(12_345_678), "12.3 MB/s");
    }

    #[test]
    fn the_burst_is_a_tenth_of_a_second_or_one_read() {
        let l = Limiter::new(Rate::from_bytes_per_sec(50_000_000).unwrap());
        assert_eq!(l.burst(), 5_000_000);
        let l = Limiter::new(Rate::from_bytes_per_sec(1_000_000).unwrap());
        assert_eq!(l.burst(), READ_BUFFER);
    }

    /// N bytes at rate R take at least N/R less the burst, and not much more.
    #[test]
    fn threads_sharing_a_limiter_read_at_its_rate() {
        let r = 20_000_000u64;
        let limiter = Arc::new(Limiter::new(Rate::from_bytes_per_sec(r).unwrap()));
        let (threads, reads, chunk) = (4u64, 25u64, 128u64 << 10);
        let total = threads * reads * chunk;
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                let l = limiter.clone();
                s.spawn(move || {
                    for _ in 0..reads {
                        l.take(chunk);
                    }
                });
            }
        });
        let took = started.elapsed().as_secs_f64();
        let least = (total - limiter.burst()) as f64 / r as f64;
        assert!(
            took >= least * 0.99,
            "{total} bytes in {took:.3}s, at least {least:.3}s"
        );
        assert!(
            took < least + 1.0,
            "{total} bytes in {took:.3}s, expected about {least:.3}s"
        );
    }

    #[test]
    fn a_refund_lets_the_next_read_through() {
        let limiter = Limiter::new(Rate::from_bytes_per_sec(1_000_000).unwrap());
        let start = Instant::now();
        // The whole burst and one more second's worth: owed for a second.
        let until = limiter.reserve(limiter.burst() + 1_000_000);
        assert!(until >= start + Duration::from_millis(990));
        limiter.refund(1_000_000);
        assert!(limiter.reserve(0) <= Instant::now() + Duration::from_millis(10));
        assert_eq!(limiter.taken(), limiter.burst());
        assert!(
            limiter
                .achieved(Duration::from_secs(2))
                .ends_with("of the limit of 1 MB/s")
        );
    }
}
