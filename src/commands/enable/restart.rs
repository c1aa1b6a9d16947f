//! Restarting the server so that archive_mode takes effect, the way the
//! cluster is run: `pg_ctlcluster` for a Debian cluster (which knows its
//! service, environment file and log), else `pg_ctl restart` as the data
//! directory's owner, with the postmaster's own environment and log file,
//! so that the restarted server runs as the one it replaces did.

use crate::commands::cluster::LocalCluster;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::discovery;
use crate::settings::{Settings, canonical};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// pg_ctl's own wait for the shutdown and the start, each.
const PG_CTL_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Restart {
    program: PathBuf,
    args: Vec<OsString>,
    /// The environment to run with; `None`: this process's.
    env: Option<Vec<(OsString, OsString)>>,
    /// Where the restarted server's output goes, when pg_ctl decides it.
    pub server_log: Option<PathBuf>,
}

impl Restart {
    /// How `local` is restarted, found from how it runs now.
    pub fn find(local: &LocalCluster, settings: &Settings) -> Result<Restart> {
        let major = local.control.major.number();
        let here = canonical(&local.pgdata);
        let debian = discovery::debian_clusters(Path::new(discovery::DEBIAN_CONF_ROOT))
            .into_iter()
            .find(|c| c.major == major && canonical(&c.pgdata) == here);
        if let Some(c) = debian
            && crate::commands::archiver::program_runs("pg_ctlcluster")
        {
            return Ok(Restart {
                program: on_path("pg_ctlcluster"),
                args: vec![major.to_string().into(), c.name.into(), "restart".into()],
                env: None,
                server_log: None,
            });
        }

        let pid = crate::pg::pidfile::PostmasterPid::read(&local.pgdata)?
            .filter(|p| p.process_alive())
            .map(|p| p.pid);
        let pg_ctl = pg_ctl(pid, local, settings)?;
        let log = pid.and_then(server_log_of).unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "pgproof-restart-{}-{}.log",
                settings.cluster.value,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            ))
        });
        let mut args: Vec<OsString> = vec![
            pg_ctl.into_os_string(),
            "restart".into(),
            "-D".into(),
            here.clone().into_os_string(),
            "-m".into(),
            "fast".into(),
            "-w".into(),
            "-t".into(),
            PG_CTL_WAIT.as_secs().to_string().into(),
            // The new postmaster writes here, not into pipes of ours: a
            // postmaster holding them open would keep this call from ever
            // seeing their end.
            "-l".into(),
            log.clone().into_os_string(),
        ];
        let owner = std::fs::metadata(&local.pgdata)
            .map_err(|e| Error::io("reading the owner of", &local.pgdata, e))?
            .uid();
        let program = if nix::unistd::geteuid().is_root() && owner != 0 {
            // PostgreSQL refuses to run as root.
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
                .ok()
                .flatten()
                .ok_or_else(|| {
                    Error::config(format!(
                        "the owner of {} (uid {owner}) has no user name",
                        local.pgdata.display()
                    ))
                })?;
            let mut wrapped: Vec<OsString> = vec!["-u".into(), user.name.into(), "--".into()];
            wrapped.append(&mut args);
            args = wrapped;
            on_path("runuser")
        } else {
            PathBuf::from(args.remove(0))
        };
        Ok(Restart {
            program,
            args,
            env: pid.and_then(environment_of),
            server_log: Some(log),
        })
    }

    /// The command line, as an operator would type it.
    pub fn describe(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|w| {
                let w = w.to_string_lossy();
                shlex::try_quote(&w)
                    .map(|q| q.into_owned())
                    .unwrap_or_else(|_| w.into_owned())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub async fn run(&self) -> Result<()> {
        // pg_ctl's messages go to a file: its stdout and stderr are
        // inherited by the postmaster it starts when it is given no log.
        let errors = std::env::temp_dir().join(format!(
            "pgproof-restart-{}.{}.err",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        let file = std::fs::File::create(&errors).map_err(|e| Error::io("creating", &errors, e))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(file))
            .kill_on_drop(true);
        if let Some(env) = &self.env {
            cmd.env_clear().envs(env.iter().cloned());
        }
        let limit = PG_CTL_WAIT * 2 + Duration::from_secs(30);
        let outcome = tokio::time::timeout(limit, cmd.status()).await;
        let said = std::fs::read_to_string(&errors).unwrap_or_default();
        let _ = std::fs::remove_file(&errors);
        let log_hint = match &self.server_log {
            Some(log) => format!("the server's log is {}", log.display()),
            None => "see the server's log".into(),
        };
        match outcome {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(Error::new(
                ErrorKind::Postgres,
                format!("`{}` failed ({status}): {}", self.describe(), said.trim()),
            )
            .with_hint(log_hint)),
            Ok(Err(e)) => Err(Error::new(
                ErrorKind::Postgres,
                format!("cannot run `{}`", self.describe()),
            )
            .with_source(e)),
            Err(_) => Err(Error::new(
                ErrorKind::Postgres,
                format!(
                    "`{}` did not finish within {}",
                    self.describe(),
                    crate::report::duration(limit)
                ),
            )
            .with_hint(log_hint)),
        }
    }
}

/// `name` as found on this process's PATH: the restart may run with the
/// postmaster's environment, whose PATH may lack it.
fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// pg_ctl beside the running postmaster's own binary (the major and build
/// that runs this cluster), else where `prove` would find the server binaries.
fn pg_ctl(pid: Option<i32>, local: &LocalCluster, settings: &Settings) -> Result<PathBuf> {
    if let Some(pid) = pid
        && let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe"))
        && let Some(dir) = exe.parent()
        && dir.join("pg_ctl").is_file()
    {
        return Ok(dir.join("pg_ctl"));
    }
    let setting = settings
        .pg_bindir
        .as_ref()
        .map(|b| (b.value.clone(), b.origin.to_string()));
    let binaries = crate::pg::binaries::find(
        local.control.major,
        setting.as_ref().map(|(v, o)| (v.as_str(), o.as_str())),
    )?;
    binaries.tool("pg_ctl").ok_or_else(|| {
        Error::config(format!(
            "no pg_ctl beside {}",
            binaries.postgres().display()
        ))
        .with_hint("restart the server yourself")
    })
}

/// The file the postmaster writes its output to (pg_ctl's `-l`), when it is one.
fn server_log_of(pid: i32) -> Option<PathBuf> {
    let target = std::fs::read_link(format!("/proc/{pid}/fd/2")).ok()?;
    let meta = std::fs::metadata(&target).ok()?;
    (target.is_absolute() && meta.is_file()).then_some(target)
}

/// The postmaster's environment, when this user may read it.
fn environment_of(pid: i32) -> Option<Vec<(OsString, OsString)>> {
    use std::os::unix::ffi::OsStrExt;
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter_map(|kv| {
                let at = kv.iter().position(|b| *b == b'=')?;
                Some((
                    std::ffi::OsStr::from_bytes(&kv[..at]).to_os_string(),
                    std::ffi::OsStr::from_bytes(&kv[at + 1..]).to_os_string(),
                ))
            })
            .collect(),
    )
}
