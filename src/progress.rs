//! Progress of long steps. On a terminal: a bar with bytes, rate and time
//! left. Without one (cron, systemd, a file): a log line every few seconds
//! with the same figures, so an operator tailing a log sees the backup move.
//! With `-q`: nothing.
//!
//! Log lines and bars share stderr; while bars are drawn, log lines are
//! printed above them (see `LogWriter`) rather than through them, and a
//! finished bar stays on screen as the record of its step.

use crate::report;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How progress is shown, decided once per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines(Duration),
    Off,
}

pub const DEFAULT_LINE_INTERVAL: Duration = Duration::from_secs(5);

static MODE: OnceLock<Mode> = OnceLock::new();
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Chooses bars when stderr is a terminal, lines otherwise. `forced` comes
/// from `--progress` (bars, lines, off).
pub fn init(quiet: bool, forced: Option<&str>, interval: Duration) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(false);
    let mode = match (quiet, forced) {
        (true, _) | (_, Some("off")) => Mode::Off,
        (_, Some("bars")) => Mode::Bars,
        (_, Some("lines")) => Mode::Lines(interval),
        _ if terminal => Mode::Bars,
        _ => Mode::Lines(interval),
    };
    let _ = MODE.set(mode);
}

fn mode() -> Mode {
    *MODE.get().unwrap_or(&Mode::Lines(DEFAULT_LINE_INTERVAL))
}

fn bars() -> &'static MultiProgress {
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)))
}

/// What a progress counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    /// Counted things, named (e.g. "segments").
    Items(&'static str),
}

/// One long step. Cheap to clone; update from any thread.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    what: String,
    unit: Unit,
    total: AtomicU64,
    done: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    finished: AtomicBool,
    /// Wakes the line reporter early when the step ends.
    stop: Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl Progress {
    /// Starts showing a step such as "copying" or "restoring" of `total` units.
    pub fn start(what: impl Into<String>, unit: Unit, total: u64) -> Progress {
        let what = what.into();
        let bar = (mode() == Mode::Bars).then(|| {
            let bar = bars().add(ProgressBar::new(total));
            let template = match unit {
                Unit::Bytes => {
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {percent}%, {eta} left"
                }
                Unit::Items(_) => "{msg:>12} [{bar:30}] {pos}/{len} {wide_msg}",
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("progress templates are valid")
                    .progress_chars("=> "),
            );
            bar.set_message(what.clone());
            bar
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let progress = Progress {
            inner: Arc::new(Inner {
                what,
                unit,
                total: AtomicU64::new(total),
                done: AtomicU64::new(0),
                started: Instant::now(),
                bar,
                finished: AtomicBool::new(false),
                stop: Mutex::new(Some(tx)),
            }),
        };
        if let Mode::Lines(interval) = mode() {
            let p = progress.clone();
            // A plain thread: the step may run on blocking threads or the runtime alike.
            let _ = std::thread::Builder::new()
                .name("progress".into())
                .spawn(move || {
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        rx.recv_timeout(interval)
                    {
                        if p.inner.finished.load(Ordering::Relaxed) {
                            break;
                        }
                        tracing::info!("{}", p.line());
                    }
                });
        }
        progress
    }

    pub fn add(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.inc(n);
        }
    }

    pub fn set(&self, done: u64) {
        self.inner.done.store(done, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.set_position(done);
        }
    }

    pub fn set_total(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            bar.set_length(total);
        }
    }

    /// The figures as one log line: "copying: 1.2 GiB of 1.5 GiB (80.0%), 410.3 MiB/s, about 1.0 s left".
    pub fn line(&self) -> String {
        let done = self.inner.done.load(Ordering::Relaxed);
        let total = self.inner.total.load(Ordering::Relaxed);
        let rate = self.rate();
        let left = if rate > 0.0 {
            Duration::from_secs_f64(total.saturating_sub(done) as f64 / rate)
        } else {
            Duration::ZERO
        };
        match self.inner.unit {
            Unit::Bytes => format!(
                "{}: {} of {} ({}), {}/s, about {} left",
                self.inner.what,
                report::bytes(done),
                report::bytes(total),
                report::ratio(done, total),
                report::bytes(rate as u64),
                report::duration(left)
            ),
            Unit::Items(name) => format!(
                "{}: {done} of {total} {name}, {} so far",
                self.inner.what,
                report::duration(self.inner.started.elapsed())
            ),
        }
    }

    /// Ends the step. A bar is replaced by a permanent line drawn like it
    /// (indicatif would erase a finished bar at the next log line); without
    /// a terminal, a last line gives the step's size, time and mean rate.
    pub fn finish(&self) {
        if self.inner.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(tx) = self.inner.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
        match (&self.inner.bar, mode()) {
            (Some(bar), _) => {
                bar.finish_and_clear();
                let line = self.final_bar();
                if bars().println(&line).is_err() || bars().is_hidden() {
                    eprintln!("{line}");
                }
            }
            (None, Mode::Lines(_)) => tracing::info!("{}", self.summary()),
            _ => {}
        }
    }

    /// Ends a step that failed: the bar goes, no "done" line is printed.
    pub fn abandon(&self) {
        if self.inner.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Some(tx) = self.inner.stop.lock().ok().and_then(|mut s| s.take()) {
            let _ = tx.send(());
        }
        if let Some(bar) = &self.inner.bar {
            bar.finish_and_clear();
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.inner.started.elapsed().as_secs_f64().max(0.001);
        self.inner.done.load(Ordering::Relaxed) as f64 / secs
    }

    /// "copying: done, 79.8 MiB in 0.9 s (89.3 MiB/s)"
    fn summary(&self) -> String {
        let done = self.inner.done.load(Ordering::Relaxed);
        let took = report::duration(self.inner.started.elapsed());
        match self.inner.unit {
            Unit::Bytes => format!(
                "{}: done, {} in {took} ({}/s)",
                self.inner.what,
                report::bytes(done),
                report::bytes(self.rate() as u64)
            ),
            Unit::Items(name) => format!("{}: done, {done} {name} in {took}", self.inner.what),
        }
    }

    /// The bar at its end, as a plain line.
    fn final_bar(&self) -> String {
        let done = self.inner.done.load(Ordering::Relaxed);
        let total = self.inner.total.load(Ordering::Relaxed).max(done);
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        let filled = (percent * 30 / 100) as usize;
        let bar = format!("{}{}", "=".repeat(filled), " ".repeat(30 - filled));
        let took = report::duration(self.inner.started.elapsed());
        match self.inner.unit {
            Unit::Bytes => format!(
                "{:>12} [{bar}] {}/{} {}/s {}%, done in {took}",
                self.inner.what,
                report::bytes(done),
                report::bytes(total),
                report::bytes(self.rate() as u64),
                percent
            ),
            Unit::Items(name) => format!(
                "{:>12} [{bar}] {done}/{total} {name}, done in {took}",
                self.inner.what
            ),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

/// stderr for log lines: printed above the bars while any are drawn, so
/// neither garbles the other.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(bars) if mode() == Mode::Bars && !bars.is_hidden() => {
                // println keeps finished bars on screen; suspend would wipe them.
                let text = String::from_utf8_lossy(buf);
                bars.println(text.trim_end_matches('\n'))?;
            }
            _ => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
