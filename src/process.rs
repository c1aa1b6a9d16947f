//! Who a process is on this host, in terms that survive pid reuse: the host
//! name, the kernel's boot id and the process's start time (clock ticks
//! since boot, from `/proc/<pid>/stat`). A lock names its holder this way,
//! so that a later run can prove the holder dead before taking it over.
//! Knows nothing of PostgreSQL, the repository or commands.

use std::path::Path;

/// A process, as a lock records its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`; empty when unreadable.
    pub boot_id: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks after boot.
    pub start_ticks: u64,
}

/// Whether a recorded process still runs, and why pgproof thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// It runs, or nothing proves it does not (another host's processes are
    /// out of sight): its lock is respected.
    Running(String),
    /// Provably gone: its lock may be taken over.
    Gone(String),
}

pub fn host_name() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The start time of a process that has not exited (a zombie has), or
/// `None`.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&stat)
}

/// State and start time from a `/proc/<pid>/stat` line. The command name
/// (field 2) is parenthesised and may hold spaces and parentheses, so the
/// fields are counted from its last `)`.
fn parse_stat(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if fields.first().is_some_and(|s| s.starts_with(['Z', 'X'])) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

impl ProcessId {
    /// This process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Another process on this host, if it runs.
    pub fn of(pid: u32) -> Option<ProcessId> {
        Some(ProcessId {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// Judged from this host. Only a process of this host can be proven
    /// gone: its pid runs no more, or runs a process started at another
    /// time (the pid was reused), or the host has booted since.
    pub fn liveness(&self) -> Liveness {
        let here = host_name();
        if self.host != here {
            return Liveness::Running(format!(
                "it runs on host {}, and pgproof on {here} cannot tell whether it still runs",
                self.host
            ));
        }
        let boot = boot_id();
        if !self.boot_id.is_empty() && !boot.is_empty() && self.boot_id != boot {
            return Liveness::Gone(format!("host {here} has restarted since"));
        }
        match start_ticks(self.pid) {
            None => Liveness::Gone(format!("no process {} runs on {here}", self.pid)),
            Some(t) if t != self.start_ticks => Liveness::Gone(format!(
                "pid {} on {here} now belongs to another process (started at tick {t}, not {})",
                self.pid, self.start_ticks
            )),
            Some(_) => Liveness::Running(format!("process {} still runs on {here}", self.pid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (we ird) (name)) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat(line), Some(987654));
        let zombie = "4242 (x) Z 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0";
        assert_eq!(parse_stat(zombie), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_runs_and_a_reaped_child_is_gone() {
        let me = ProcessId::current();
        assert!(me.start_ticks > 0);
        assert!(matches!(me.liveness(), Liveness::Running(_)));

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let recorded = ProcessId::of(pid);
        child.wait().unwrap();
        if let Some(recorded) = recorded {
            assert!(matches!(recorded.liveness(), Liveness::Gone(_)));
        }

        let reused = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(
            matches!(reused.liveness(), Liveness::Gone(why) if why.contains("another process"))
        );
        let rebooted = ProcessId {
            boot_id: "another-boot".into(),
            ..me.clone()
        };
        assert!(matches!(rebooted.liveness(), Liveness::Gone(why) if why.contains("restarted")));
        let elsewhere = ProcessId {
            host: format!("{}-elsewhere", me.host),
            pid: 1,
            ..me
        };
        assert!(
            matches!(elsewhere.liveness(), Liveness::Running(why) if why.contains("cannot tell"))
        );
    }
}
