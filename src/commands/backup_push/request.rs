//! What the command line asks of backup-push, as given: the flags are read
//! against the settings (the configuration file's backup type, say) only
//! once those are resolved.

use super::{BackupPushOptions, KindChoice, run};
use crate::commands::Outcome;
use crate::error::Result;
use crate::settings::{Overrides, PgdataFallback, Settings, Sourced, parse_duration};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct BackupPushRequest {
    /// The data directory named on the command line.
    pub pgdata: Option<PathBuf>,
    pub fast: bool,
    pub jobs: usize,
    pub archive_timeout: String,
    pub permanent: bool,
    pub incremental: bool,
    pub full: bool,
    pub offline: bool,
    pub backup_type: Option<String>,
    pub full_every: Option<String>,
    /// `--max-rate` or `PGPROOF_MAX_RATE`, with which of the two it was.
    pub max_rate: Option<Sourced<String>>,
}

impl BackupPushRequest {
    fn options(&self, settings: &Settings) -> Result<BackupPushOptions> {
        Ok(BackupPushOptions {
            max_rate: crate::rate::resolve(self.max_rate.clone(), settings.max_rate.as_ref())?,
            fast: self.fast,
            jobs: self.jobs,
            archive_timeout: parse_duration(&self.archive_timeout)?,
            permanent: self.permanent,
            offline: self.offline,
            kind: KindChoice::resolve(
                self.full,
                self.incremental,
                self.backup_type.as_deref(),
                self.full_every.as_deref(),
                settings,
            )?,
        })
    }
}

/// `pgproof backup-push`: prints the new backup's name, for scripts.
pub async fn invoke(over: &Overrides, request: BackupPushRequest) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, request.pgdata.clone(), PgdataFallback::PgdataEnv)?;
        let opts = request.options(&settings)?;
        run(&settings, &opts).await
    };
    Outcome::of(result.await.map(|name| format!("{name}\n")))
}
