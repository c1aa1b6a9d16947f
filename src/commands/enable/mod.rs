//! `pgproof enable [PGDATA] [--confirm] [--restart] [--write-config[=FILE]]`:
//! turns on archiving through pgproof, which is where most setups go wrong
//! by hand (the wrong cluster name in archive_command, a repository the
//! postgres user cannot write, a forgotten restart).
//!
//! The cluster is proven as backup-push proves it and the repository prefix
//! must be empty or this system's; then the exact settings are shown, bound
//! to this cluster's name and repository. Nothing changes without
//! `--confirm`: then ALTER SYSTEM and a reload, a restart only with
//! `--restart`, and `check` at the end, whose forced segment binds an empty
//! prefix. Writing to the repository is left to that check.

mod config_section;
mod plan;
mod restart;

use super::Outcome;
use super::archiver;
use super::check::{self, CheckOptions};
use super::cluster::{LocalCluster, VerifiedServer, announce, open_repository};
use crate::error::{Error, ErrorKind, Result};
use crate::settings::{
    self, DEFAULT_CONFIG_PATH, FileConfig, Origin, Overrides, PgdataFallback, Settings, Sourced,
    canonical,
};
use crate::storage::RepoUrl;
use config_section::SectionPlan;
use plan::{CommandParts, Current, Plan};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `enable --confirm` set everything, but archive_mode waits for a restart
/// that was not asked for: nothing is archived yet.
pub const EXIT_RESTART_NEEDED: i32 = 15;

/// `enable`'s options as the command line gives them.
pub struct EnableRequest {
    pub pgdata: Option<PathBuf>,
    pub confirm: bool,
    pub restart: bool,
    pub write_config: Option<Option<PathBuf>>,
    pub archive_timeout: String,
}

pub async fn invoke(over: &Overrides, request: EnableRequest) -> Outcome {
    let result = async {
        let opts = EnableOptions {
            pgdata: request.pgdata,
            confirm: request.confirm,
            restart: request.restart,
            write_config: request.write_config,
            archive_timeout: settings::parse_duration(&request.archive_timeout)?,
        };
        run(over, &opts).await
    };
    match result.await {
        Ok(done) => Outcome::report(String::new(), done.exit_code()),
        Err(e) => Outcome::failure(e),
    }
}

pub struct EnableOptions {
    pub pgdata: Option<PathBuf>,
    pub confirm: bool,
    pub restart: bool,
    /// `Some(None)`: the configuration file named by `--config` (else the
    /// default one); `Some(Some(file))`: that file.
    pub write_config: Option<Option<PathBuf>>,
    pub archive_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enablement {
    DryRun,
    /// Archiving is on and `check` passed.
    Enabled,
    RestartNeeded,
}

impl Enablement {
    pub fn exit_code(self) -> i32 {
        match self {
            Enablement::DryRun | Enablement::Enabled => 0,
            Enablement::RestartNeeded => EXIT_RESTART_NEEDED,
        }
    }
}

pub async fn run(over: &Overrides, opts: &EnableOptions) -> Result<Enablement> {
    let target = match &opts.write_config {
        None => None,
        Some(Some(file)) => Some(crate::commands::absolute(file)?),
        Some(None) => Some(match &over.config {
            Some(c) => crate::commands::absolute(&c.value)?,
            None => PathBuf::from(DEFAULT_CONFIG_PATH),
        }),
    };
    let loaded = match (&target, &over.config) {
        // The file --write-config is to create is read as an empty one.
        (Some(t), Some(c)) if !c.value.exists() && crate::commands::absolute(&c.value)? == *t => {
            (FileConfig::default(), Some(t.clone()))
        }
        _ => settings::load_file(over.config.as_ref())?,
    };
    let in_use = loaded
        .1
        .as_deref()
        .map(crate::commands::absolute)
        .transpose()?;
    if let (Some(t), Some(in_use)) = (&target, &in_use)
        && canonical(t) != canonical(in_use)
    {
        return Err(Error::config(format!(
            "--write-config names {}, but the settings are read from {}: archive_command can read only one file",
            t.display(),
            in_use.display()
        ))
        .with_hint(format!(
            "pass --config {} as well, or --write-config without a file to extend {}",
            t.display(),
            in_use.display()
        )));
    }
    // The file archive_command will read.
    let archiver_file = target.clone().or(in_use);
    let settings = Settings::resolve_with(
        over,
        loaded.clone(),
        opts.pgdata.clone(),
        PgdataFallback::PgdataEnv,
    )?;
    let name = settings.cluster.value.as_str().to_string();

    let local = LocalCluster::open(&settings)?;
    let repo = open_repository(&settings)?;
    let server = local.connect_verified(&settings).await?;
    announce(&settings, &local, &server, &repo);
    if server.identity.in_recovery {
        return Err(Error::new(
            ErrorKind::Refused,
            "the server is a standby: nothing was changed",
        )
        .with_hint("enable archiving on the primary (a standby archives only with archive_mode = always, set by hand)"));
    }
    match check::check_binding(&repo, &local).await? {
        Some(b) => tracing::info!(
            "{} belongs to this system (bound {})",
            repo.describe(),
            b.bound_at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => tracing::info!(
            "{} holds nothing yet: the first segment archived (the check at the end of enable --confirm forces one) binds it to this cluster",
            repo.describe()
        ),
    }
    repository_writable(&settings, &local)?;

    let pgdata = canonical(&local.pgdata);
    let section = match &target {
        Some(path) => Some(config_section::plan(
            path,
            &name,
            &section_entries(over, &settings, &loaded.0, &pgdata),
        )?),
        None => None,
    };
    let effective = match &section {
        Some(s) => s.config()?,
        None => loaded.0.clone(),
    };
    let command = bound_archive_command(
        over,
        &settings,
        &local,
        &effective,
        archiver_file.as_deref(),
    )?;
    let current = read_current(&server, &local).await?;
    shadowed(&server, &current, &command).await?;
    let plan = plan::plan(&current, &command);

    print_plan(&settings, &local, &plan, section.as_ref());
    if !opts.confirm {
        println!("dry run: nothing changed; run again with --confirm to make these changes");
        return Ok(Enablement::DryRun);
    }

    // The file first: an archive_command relying on a section that is not
    // there would archive into the wrong place, or nowhere.
    if let Some(s @ SectionPlan::Append { path, .. }) = &section {
        config_section::apply(s)?;
        println!("wrote [clusters.{name}] into {}", path.display());
    }
    if let Some(file) = &archiver_file {
        config_readable(&local, file)?;
    }
    if !plan.changes.is_empty() {
        apply(&server, &plan).await?;
    }
    if plan.needs_restart() {
        let how = restart::Restart::find(&local, &settings);
        if !opts.restart {
            let line = match &how {
                Ok(r) => r.describe(),
                Err(_) => format!("pg_ctl restart -D {} -m fast", local.pgdata.display()),
            };
            println!(
                "archive_mode takes effect only when the server restarts: until then nothing is archived. Restart it with\n  {line}\nor run enable again with --confirm --restart; then run `pgproof check`"
            );
            return Ok(Enablement::RestartNeeded);
        }
        let how = how?;
        drop(server);
        println!("restarting the server: {}", how.describe());
        how.run()
            .await
            .map_err(|e| e.context("the settings are in place, but the restart failed"))?;
        if let Some(log) = &how.server_log {
            println!("the server's output goes to {}", log.display());
        }
    } else if !plan.changes.is_empty() {
        wait_reloaded(&server, &command).await?;
    }

    let mut check_over = over.clone();
    if let Some(path) = &archiver_file {
        check_over.config = Some(Sourced::new(
            path.clone(),
            over.config
                .as_ref()
                .map(|c| c.origin.clone())
                .unwrap_or_else(|| Origin::Derived("enable".into())),
        ));
    }
    check_over.cluster = Some(Sourced::new(name.clone(), settings.cluster.origin.clone()));
    println!("checking the archiving path:");
    check::run(
        Settings::resolve(
            &check_over,
            Some(local.pgdata.clone()),
            PgdataFallback::PgdataEnv,
        ),
        &CheckOptions {
            archive_timeout: opts.archive_timeout,
        },
    )
    .await?;
    print_next(&settings, &local, archiver_file.as_deref(), &effective);
    Ok(Enablement::Enabled)
}

/// What the cluster's section says: its data directory, its repository
/// unless the file's top level names the same one, and the settings given
/// here by flag or environment that a section can hold.
fn section_entries(
    over: &Overrides,
    settings: &Settings,
    file: &FileConfig,
    pgdata: &Path,
) -> config_section::Entries {
    use toml::Value;
    let mut out = vec![("pgdata", Value::String(pgdata.display().to_string()))];
    let top = file.repo.as_deref().and_then(|r| r.parse::<RepoUrl>().ok());
    if top.as_ref() != Some(&settings.repo.value) {
        out.push(("repo", Value::String(settings.repo.value.to_string())));
    }
    if let Some(c) = &over.compression {
        out.push(("compression", Value::String(c.value.clone())));
    }
    if let Some(h) = &over.host {
        out.push(("host", Value::String(h.value.clone())));
    }
    if let Some(p) = &over.port {
        out.push(("port", Value::Integer(p.value.into())));
    }
    out
}

/// archive_command for this cluster: this pgproof binary, the file it
/// reads, the cluster's name, and the repository unless the file gives it
/// (and the server's environment cannot override that).
fn bound_archive_command(
    over: &Overrides,
    settings: &Settings,
    local: &LocalCluster,
    file: &FileConfig,
    archiver_file: Option<&Path>,
) -> Result<String> {
    let program = std::env::current_exe().map_err(|e| {
        Error::io(
            "finding this program's path",
            Path::new("/proc/self/exe"),
            e,
        )
    })?;
    let section = file.clusters.get(settings.cluster.value.as_str());
    let environment = archiver::postmaster_environment(&local.pgdata);
    let overridden = |var: &str| {
        environment
            .as_ref()
            .is_none_or(|env| env.iter().any(|(k, _)| k == var))
    };
    let file_repo = section
        .and_then(|s| s.repo.as_deref())
        .or(file.repo.as_deref())
        .and_then(|r| r.parse::<RepoUrl>().ok());
    let repo_from_file = archiver_file.is_some()
        && file_repo.as_ref() == Some(&settings.repo.value)
        && !overridden("PGPROOF_REPO");
    let mut flags = Vec::new();
    if let Some(c) = &over.compression {
        let from_file = section
            .and_then(|s| s.compression.as_deref())
            .or(file.compression.as_deref());
        if archiver_file.is_none() || from_file != Some(c.value.as_str()) {
            flags.extend(["--compression".to_string(), c.value.clone()]);
        }
    }
    if let Some(t) = &over.timeout {
        flags.extend(["--timeout".to_string(), t.value.clone()]);
    }
    if let Some(r) = over.retries {
        flags.extend(["--retries".to_string(), r.to_string()]);
    }
    if let Some(d) = &over.retry_deadline {
        flags.extend(["--retry-deadline".to_string(), d.value.clone()]);
    }
    let repo = settings.repo.value.to_string();
    plan::archive_command(&CommandParts {
        program: &program,
        config: archiver_file,
        cluster: settings.cluster.value.as_str(),
        repo: (!repo_from_file).then_some(repo.as_str()),
        flags: &flags,
    })
}

/// A file repository's directory exists and the data directory's owner,
/// who runs archive_command, may write into it.
fn repository_writable(settings: &Settings, local: &LocalCluster) -> Result<()> {
    let RepoUrl::File(root) = &settings.repo.value else {
        return Ok(());
    };
    if !root.is_dir() {
        return Err(Error::config(format!(
            "the repository directory {} does not exist: nothing was changed",
            root.display()
        ))
        .with_hint("create it (writable by the data directory's owner); pgproof does not, so that an unmounted volume is never filled by mistake"));
    }
    let prefix = root.join(settings.cluster.value.as_str());
    for dir in [root.as_path(), prefix.as_path()] {
        if !dir.is_dir() {
            continue;
        }
        let (user, writable) = owner_passes(local, &["-w", "-a", "-x"], dir);
        if !writable {
            return Err(Error::config(format!(
                "{user}, who owns {} and so runs archive_command, cannot write into the repository directory {}: nothing was changed",
                local.pgdata.display(),
                dir.display()
            ))
            .with_hint(format!("chown -R {user} {} (or grant write access)", dir.display())));
        }
    }
    Ok(())
}

/// Whether the data directory's owner passes test(1)'s `tests` on `path`
/// (`-w -a -x`: each test on `path`), and the owner's name. test(1) asks
/// the kernel, so ACLs and group membership count. When it cannot be run
/// as the owner, the archiver's own attempt, in the check, tells instead.
fn owner_passes(local: &LocalCluster, tests: &[&str], path: &Path) -> (String, bool) {
    use std::os::unix::fs::MetadataExt;
    let Ok(owner) = std::fs::metadata(&local.pgdata).map(|m| m.uid()) else {
        return (String::new(), true);
    };
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| owner.to_string());
    let me = nix::unistd::geteuid();
    let mut probe = if me.as_raw() == owner {
        std::process::Command::new("test")
    } else if me.is_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", &user, "--", "test"]);
        c
    } else {
        return (user, true);
    };
    for t in tests {
        if *t == "-a" {
            probe.arg(t);
        } else {
            probe.arg(t).arg(path);
        }
    }
    let passes = probe
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(true);
    (user, passes)
}

/// The configuration file archive_command names can be read by the user
/// the archiver runs as: otherwise every wal-push fails.
fn config_readable(local: &LocalCluster, file: &Path) -> Result<()> {
    if !file.exists() {
        return Ok(());
    }
    let (user, readable) = owner_passes(local, &["-r"], file);
    if readable {
        return Ok(());
    }
    Err(Error::config(format!(
        "{user}, who runs archive_command, cannot read the configuration file {} that it would name: the server's settings were not changed",
        file.display()
    ))
    .with_hint(format!(
        "make it (and its directories) readable by {user}, e.g. chmod 644 {}",
        file.display()
    )))
}

async fn query_text(server: &VerifiedServer, sql: &str, what: &str) -> Result<Option<String>> {
    let c = &server.connection;
    let row = c
        .bounded(what, c.timeout, c.client.query_opt(sql, &[]))
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
}

/// The latest value of `name` in the configuration files, as the server
/// reads them now; `None` when none sets it, or the view is not readable.
async fn file_setting(server: &VerifiedServer, name: &str) -> Option<String> {
    let sql = format!(
        "SELECT setting FROM pg_file_settings WHERE name = '{name}' ORDER BY seqno DESC LIMIT 1"
    );
    query_text(
        server,
        &sql,
        &format!("reading {name} from the configuration files"),
    )
    .await
    .ok()
    .flatten()
}

async fn read_current(server: &VerifiedServer, local: &LocalCluster) -> Result<Current> {
    let c = &server.connection;
    let row = c
        .bounded(
            "reading the archiving settings",
            c.timeout,
            c.client.query_one(
                "SELECT current_setting('archive_mode'), current_setting('archive_command'), \
                    current_setting('archive_library', true), current_setting('wal_level'), \
                    current_setting('config_file')",
                &[],
            ),
        )
        .await?;
    let archive_mode: String = row.get(0);
    let mut archive_command: String = row.get(1);
    if archive_command == "(disabled)" {
        // What archiving off hides in some majors: the value as configured.
        archive_command = match file_setting(server, "archive_command").await {
            Some(v) => v,
            None => {
                let config: String = row.get(4);
                let conf_dir = Path::new(&config).parent().map(Path::to_path_buf);
                crate::pg::discovery::read_settings(&local.pgdata, conf_dir.as_deref())
                    .remove("archive_command")
                    .unwrap_or_default()
            }
        };
    }
    let pending = file_setting(server, "archive_mode")
        .await
        .filter(|v| *v != archive_mode);
    Ok(Current {
        archive_mode,
        archive_mode_pending: pending,
        archive_command,
        archive_library: row.get(2),
        wal_level: row.get(3),
    })
}

/// Refuses when a setting to change is fixed where ALTER SYSTEM cannot
/// reach (the server's command line): the change would silently not apply.
async fn shadowed(server: &VerifiedServer, current: &Current, command: &str) -> Result<()> {
    let names: Vec<&str> = plan::plan(current, command)
        .changes
        .iter()
        .map(|c| c.name)
        .collect();
    for name in names {
        let sql = format!("SELECT source FROM pg_settings WHERE name = '{name}'");
        let source = query_text(server, &sql, &format!("reading where {name} is set"))
            .await?
            .unwrap_or_default();
        if source == "command line" || source == "override" {
            return Err(Error::config(format!(
                "{name} is set on the server's command line ({source}), which ALTER SYSTEM cannot override: nothing was changed"
            ))
            .with_hint(format!("remove -c {name}=… from how the server is started, then run enable again")));
        }
    }
    Ok(())
}

/// ALTER SYSTEM for each change, checked in postgresql.auto.conf as the
/// server reads it, then a reload.
async fn apply(server: &VerifiedServer, plan: &Plan) -> Result<()> {
    let c = &server.connection;
    let hint = "ALTER SYSTEM needs a superuser (or, from PostgreSQL 15, GRANT ALTER SYSTEM ON PARAMETER); connect as one with PGUSER";
    for change in &plan.changes {
        // The server quotes the value: it knows its own literal rules.
        let literal: String = c
            .bounded(
                "quoting a setting",
                c.timeout,
                c.client
                    .query_one("SELECT quote_literal($1::text)", &[&change.to]),
            )
            .await?
            .get(0);
        let sql = format!("ALTER SYSTEM SET {} = {literal}", change.name);
        c.bounded(
            &format!("setting {}", change.name),
            c.timeout,
            c.client.batch_execute(&sql),
        )
        .await
        .map_err(|e| e.with_hint(hint))?;
        if file_setting(server, change.name).await.as_deref() != Some(change.to.as_str()) {
            return Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "after ALTER SYSTEM the configuration files do not set {} = '{}'",
                    change.name, change.to
                ),
            )
            .with_hint("look at postgresql.auto.conf in the data directory"));
        }
        println!("set {} = {}", change.name, quoted(&change.to));
    }
    c.bounded(
        "reloading the configuration",
        c.timeout,
        c.client.query_one("SELECT pg_reload_conf()", &[]),
    )
    .await?;
    println!("reloaded the server's configuration");
    Ok(())
}

/// A reload is asynchronous: waits until this session, and so the server,
/// runs with the new archive_command.
async fn wait_reloaded(server: &VerifiedServer, command: &str) -> Result<()> {
    let limit = Duration::from_secs(10);
    let started = std::time::Instant::now();
    loop {
        let now = query_text(
            server,
            "SELECT current_setting('archive_command')",
            "reading archive_command",
        )
        .await?;
        if now.as_deref() == Some(command) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "the server still runs with archive_command {:?} {} after the reload",
                    now.unwrap_or_default(),
                    crate::report::duration(limit)
                ),
            )
            .with_hint("look at the server's log for configuration errors"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A value as postgresql.conf writes it.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn print_plan(
    settings: &Settings,
    local: &LocalCluster,
    plan: &Plan,
    section: Option<&SectionPlan>,
) {
    println!(
        "enable archiving of cluster {} ({}) into {}:",
        settings.cluster.value,
        local.describe(),
        settings.repo.value
    );
    if plan.changes.is_empty() {
        println!("  the server's settings are already as planned");
    }
    for c in &plan.changes {
        let when = if c.pending {
            "already in the configuration files; takes effect at a restart"
        } else if c.restart {
            "takes effect at a restart"
        } else {
            "takes effect at a reload"
        };
        println!(
            "  {} = {}  (now {}; {when})",
            c.name,
            quoted(&c.to),
            quoted(&c.from)
        );
    }
    match section {
        Some(SectionPlan::Append {
            path,
            section,
            before,
            ..
        }) => {
            println!(
                "  {} {}:",
                if before.is_some() {
                    "append to"
                } else {
                    "create"
                },
                path.display()
            );
            for line in section.lines() {
                println!("    {line}");
            }
        }
        Some(SectionPlan::AlreadyThere { path }) => println!(
            "  {} already has a [clusters.{}] section that agrees; left as it is",
            path.display(),
            settings.cluster.value
        ),
        None => {}
    }
    for w in &plan.warnings {
        println!("  warning: {w}");
    }
    let variables = match settings.repo.value {
        RepoUrl::S3 { .. } => Some("AWS_*"),
        RepoUrl::Azure { .. } => Some("AZURE_STORAGE_*"),
        RepoUrl::File(_) => None,
    };
    if let Some(variables) = variables {
        println!(
            "  note: archive_command runs with the server's environment, which must hold the {variables} variables (Debian: /etc/postgresql/<major>/<name>/environment)"
        );
    }
}

/// The commands that finish the setup: a first base backup, and its proof.
fn print_next(
    settings: &Settings,
    local: &LocalCluster,
    file: Option<&Path>,
    effective: &FileConfig,
) {
    use std::os::unix::fs::MetadataExt;
    let mut words = Vec::new();
    if nix::unistd::geteuid().is_root()
        && let Ok(m) = std::fs::metadata(&local.pgdata)
        && m.uid() != 0
        && let Ok(Some(u)) = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(m.uid()))
    {
        words.extend(["sudo".to_string(), "-u".into(), u.name]);
    }
    words.push(
        std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "pgproof".into()),
    );
    if let Some(f) = file {
        words.extend(["--config".into(), f.display().to_string()]);
    }
    words.extend(["--cluster".into(), settings.cluster.value.to_string()]);
    let name = settings.cluster.value.as_str();
    let repo_in_file = file.is_some()
        && effective
            .clusters
            .get(name)
            .and_then(|s| s.repo.as_deref())
            .or(effective.repo.as_deref())
            .and_then(|r| r.parse::<RepoUrl>().ok())
            .as_ref()
            == Some(&settings.repo.value);
    if !repo_in_file {
        words.extend(["--repo".into(), settings.repo.value.to_string()]);
    }
    let base =
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "));
    let pgdata = canonical(&local.pgdata).display().to_string();
    let pgdata = shlex::try_quote(&pgdata)
        .map(|q| q.into_owned())
        .unwrap_or(pgdata.clone());
    println!("archiving is on. Next, a first base backup and its proof:");
    println!("  {base} backup-push {pgdata} --fast");
    println!("  {base} prove");
}
