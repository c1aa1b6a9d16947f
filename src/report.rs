//! What pgproof tells the operator: log setup for every command and the
//! formatting of sizes, ratios and durations in one-line summaries.

use std::time::Duration;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`-q`).
    Quiet,
    /// A line per step and one summary line (default).
    Normal,
    /// Details of each step (`-v`).
    Verbose,
    /// Everything, including libraries (`-vv`).
    Debug,
}

/// Sends logs to stderr: PostgreSQL writes an archive_command's stderr into
/// its own log, so each line names pgproof and the command.
pub fn init_logging(verbosity: Verbosity, command: &'static str) {
    let directive = match verbosity {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "pgproof=info,warn",
        Verbosity::Verbose => "pgproof=debug,warn",
        Verbosity::Debug => "debug",
    };
    let filter =
        EnvFilter::try_from_env("PGPROOF_LOG").unwrap_or_else(|_| EnvFilter::new(directive));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::progress::LogWriter)
        .with_target(false)
        .without_time()
        .event_format(LineFormat { command })
        .try_init();
}

struct LineFormat {
    command: &'static str,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let tag = match level {
            tracing::Level::ERROR => "ERROR: ",
            tracing::Level::WARN => "WARNING: ",
            _ => "",
        };
        write!(writer, "pgproof {}: {tag}", self.command)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `16.0 MiB`, `950 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Stored size as a percentage of the original.
pub fn ratio(stored: u64, original: u64) -> String {
    if original == 0 {
        return "-".into();
    }
    format!("{:.1}%", stored as f64 * 100.0 / original as f64)
}

pub fn duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(120) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(950), "950 B");
        assert_eq!(bytes(16 << 20), "16.0 MiB");
        assert_eq!(ratio(1, 8), "12.5%");
        assert_eq!(duration(Duration::from_millis(23)), "23 ms");
        assert_eq!(duration(Duration::from_millis(2500)), "2.5 s");
        assert_eq!(duration(Duration::from_secs(3700)), "1h 1m 40s");
    }
}
