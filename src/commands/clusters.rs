//! `pgproof clusters [--json]`: the PostgreSQL clusters on this host and
//! whether each is protected. Clusters come from pgproof's configuration,
//! Debian's `/etc/postgresql/<major>/<name>` and the postmasters running
//! now. A cluster is protected when archiving is on, `archive_command`
//! calls pgproof with settings that resolve to a repository, and that
//! repository holds a recent complete backup of it. A new cluster that
//! nobody set up stands out here instead of going unprotected for weeks.

use super::archiver;
use super::cluster::LocalCluster;
use crate::commands::Outcome;
use crate::error::Result;
use crate::pg::discovery::{self, DebianCluster};
use crate::pg::pidfile::PostmasterPid;
use crate::settings::{self, Origin, Overrides, Sourced};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClustersOptions {
    pub json: bool,
    /// A newest backup older than this makes a cluster stale.
    pub stale_after: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostCluster {
    pub pgdata: String,
    pub major: Option<u32>,
    pub port: Option<u16>,
    pub running: bool,
    pub pid: Option<u32>,
    /// Where this cluster was found: the configuration, Debian's layout, a running postmaster.
    pub found_in: Vec<String>,
    /// The name of its section in pgproof's configuration, if any.
    pub configured_as: Option<String>,
    pub archive_mode: Option<String>,
    pub archive_command: Option<String>,
    /// "server" when asked of the running server, else "configuration files".
    pub settings_from: String,
    /// `<cluster> in <repository>`, as the archiver resolves it.
    pub archives_to: Option<String>,
    pub newest_backup: Option<String>,
    pub newest_backup_age_seconds: Option<u64>,
    pub protected: bool,
    /// Why it is not protected.
    pub problems: Vec<String>,
}

pub struct ClustersReport {
    pub text: String,
    pub all_protected: bool,
}

/// One candidate data directory and what is known of it before looking inside.
#[derive(Default)]
struct Candidate {
    found_in: Vec<String>,
    configured_as: Option<String>,
    debian: Option<DebianCluster>,
    pid: Option<u32>,
}

/// `pgproof clusters`: the report, and status 1 when any cluster is not
/// protected, so that a provisioning script can stop on it.
pub async fn invoke(over: &Overrides, json: bool, stale_after: &str) -> Outcome {
    let result = async {
        let opts = ClustersOptions {
            json,
            stale_after: settings::parse_duration(stale_after)?,
        };
        run(over, &opts).await
    };
    match result.await {
        Ok(report) => Outcome::report(report.text, if report.all_protected { 0 } else { 1 }),
        Err(e) => Outcome::failure(e),
    }
}

pub async fn run(over: &Overrides, opts: &ClustersOptions) -> Result<ClustersReport> {
    let (configured, config_file) = settings::configured_clusters(over)?;
    let mut candidates: BTreeMap<PathBuf, Candidate> = BTreeMap::new();
    let config_name = config_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    for (name, section) in &configured {
        if let Some(pgdata) = &section.pgdata {
            let c = candidates.entry(settings::canonical(pgdata)).or_default();
            c.found_in
                .push(format!("[clusters.{name}] in {config_name}"));
            c.configured_as = Some(name.clone());
        }
    }
    for d in discovery::debian_clusters(Path::new(discovery::DEBIAN_CONF_ROOT)) {
        let c = candidates
            .entry(settings::canonical(&d.pgdata))
            .or_default();
        c.found_in.push(format!(
            "{}/{}/{}",
            discovery::DEBIAN_CONF_ROOT,
            d.major,
            d.name
        ));
        c.debian = Some(d);
    }
    for p in discovery::running_postmasters() {
        let c = candidates
            .entry(settings::canonical(&p.pgdata))
            .or_default();
        c.found_in
            .push(format!("running postmaster (pid {})", p.pid));
        c.pid = Some(p.pid);
    }

    let mut clusters = Vec::new();
    for (pgdata, candidate) in candidates {
        clusters.push(inspect(&pgdata, candidate, opts.stale_after).await);
    }
    let all_protected = clusters.iter().all(|c| c.protected);
    let text = if opts.json {
        serde_json::to_string_pretty(&clusters).expect("clusters serialize") + "\n"
    } else {
        render(&clusters)
    };
    Ok(ClustersReport {
        text,
        all_protected,
    })
}

async fn inspect(pgdata: &Path, c: Candidate, stale_after: Duration) -> HostCluster {
    let pid = PostmasterPid::read(pgdata)
        .ok()
        .flatten()
        .filter(|p| p.process_alive());
    let mut problems = Vec::new();
    let (server_settings, asked_error) = match &pid {
        Some(_) => match ask_server(pgdata).await {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, None),
    };
    let (archive_mode, archive_command, settings_from) = match server_settings {
        Some((mode, command)) => (Some(mode), Some(command), "server".to_string()),
        None => {
            let conf =
                discovery::read_settings(pgdata, c.debian.as_ref().map(|d| d.conf_dir.as_path()));
            let from = match asked_error {
                Some(e) => format!("configuration files (the server could not be asked: {e})"),
                None => "configuration files".to_string(),
            };
            (
                Some(
                    conf.get("archive_mode")
                        .cloned()
                        .unwrap_or_else(|| "off".into()),
                ),
                Some(conf.get("archive_command").cloned().unwrap_or_default()),
                from,
            )
        }
    };
    if !matches!(archive_mode.as_deref(), Some("on" | "always")) {
        problems.push(format!(
            "archive_mode is {}",
            archive_mode.as_deref().unwrap_or("unknown")
        ));
    }
    let mut archives_to = None;
    let (mut newest_backup, mut newest_backup_age_seconds) = (None, None);
    match archive_command.as_deref().map(archiver::parse) {
        Some(Ok(call)) => {
            let env = archiver::postmaster_environment(pgdata);
            match archiver::settings(&call, pgdata, env.as_deref()) {
                Ok(s) => {
                    archives_to = Some(format!("{} in {}", s.cluster.value, s.repo.value));
                    match newest_backup_of(&s).await {
                        Ok(Some((name, age))) => {
                            if age > stale_after {
                                problems.push(format!(
                                    "STALE: the newest backup is {} old",
                                    super::status::verdict::human(age)
                                ));
                            }
                            newest_backup = Some(name);
                            newest_backup_age_seconds = Some(age.as_secs());
                        }
                        Ok(None) => problems.push("no complete backup".into()),
                        Err(e) => problems.push(format!("its repository cannot be read: {e}")),
                    }
                }
                Err(e) => problems.push(format!(
                    "archive_command cannot find its settings: {}",
                    e.message()
                )),
            }
        }
        Some(Err(why)) => problems.push(why),
        None => problems.push("archive_command is unknown".into()),
    }
    let port = pid
        .as_ref()
        .map(|p| p.port)
        .or_else(|| c.debian.as_ref().and_then(|d| d.port))
        .or_else(|| {
            discovery::read_settings(pgdata, None)
                .get("port")
                .and_then(|p| p.parse().ok())
        });
    HostCluster {
        pgdata: pgdata.display().to_string(),
        major: discovery::data_directory_major(pgdata).or(c.debian.as_ref().map(|d| d.major)),
        port,
        running: pid.is_some(),
        pid: pid.map(|p| p.pid as u32).or(c.pid),
        found_in: c.found_in,
        configured_as: c.configured_as,
        archive_mode,
        archive_command,
        settings_from,
        archives_to,
        newest_backup,
        newest_backup_age_seconds,
        protected: problems.is_empty(),
        problems,
    }
}

/// archive_mode and archive_command as the running server has them, from a
/// connection proven to reach this very cluster.
async fn ask_server(pgdata: &Path) -> Result<(String, String)> {
    let local = LocalCluster::at(
        pgdata.to_path_buf(),
        Origin::Derived("host discovery".into()),
    )?;
    let server = local
        .connect_verified_via(None::<&Sourced<String>>, None, Duration::from_secs(5))
        .await?;
    let row = server
        .connection
        .client
        .query_one(
            "SELECT current_setting('archive_mode'), current_setting('archive_command')",
            &[],
        )
        .await
        .map_err(|e| server.connection.query_error("reading archive settings", e))?;
    Ok((row.get(0), row.get(1)))
}

async fn newest_backup_of(s: &crate::settings::Settings) -> Result<Option<(String, Duration)>> {
    let repo = crate::repo::open(
        &s.repo.value,
        s.retry
            .with_attempt_timeout_at_most(Duration::from_secs(10)),
        s.cluster.value.clone(),
    )?;
    Ok(repo.backups().await?.complete.pop().map(|m| {
        let age = (chrono::Utc::now() - m.stopped_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        (m.name, age)
    }))
}

fn render(clusters: &[HostCluster]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if clusters.is_empty() {
        out.push_str("no PostgreSQL cluster found on this host\n");
        return out;
    }
    for c in clusters {
        let _ = writeln!(
            out,
            "{}  {}",
            if c.protected {
                "protected  "
            } else {
                "UNPROTECTED"
            },
            c.pgdata
        );
        let _ = writeln!(
            out,
            "    PostgreSQL {}, port {}, {}{}",
            c.major.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
            c.port.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            if c.running { "running" } else { "stopped" },
            c.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        );
        let _ = writeln!(out, "    found in: {}", c.found_in.join("; "));
        let _ = writeln!(
            out,
            "    pgproof: {}",
            match (&c.configured_as, &c.archives_to) {
                (Some(n), Some(to)) => format!("configured as {n}; archives {to}"),
                (Some(n), None) => format!("configured as {n}; not archiving through pgproof"),
                (None, Some(to)) => format!("archives {to} (no configuration section)"),
                (None, None) => "not configured, not archiving through pgproof".into(),
            }
        );
        let _ = writeln!(
            out,
            "    newest backup: {}",
            match (&c.newest_backup, c.newest_backup_age_seconds) {
                (Some(n), Some(age)) => format!(
                    "{n}, {} ago",
                    super::status::verdict::human(Duration::from_secs(age))
                ),
                _ => "none".into(),
            }
        );
        for p in &c.problems {
            let _ = writeln!(out, "    ! {p}");
        }
    }
    let unprotected = clusters.iter().filter(|c| !c.protected).count();
    let _ = writeln!(
        out,
        "{} cluster(s), {unprotected} unprotected",
        clusters.len()
    );
    out
}
