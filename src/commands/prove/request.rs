//! What the command line asks of prove, as given, and how the one proof or
//! the fleet's proofs end: 0 when every cluster asked for is proven, the
//! proof-failed status otherwise.

use super::{AllOutcome, ProveOptions, run, run_all};
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::ClusterName;
use crate::settings::{
    Origin, Overrides, PgdataFallback, RepositorySettings, Settings, Sourced, parse_duration,
};

#[derive(Debug, Clone, Default)]
pub struct ProveRequest {
    /// A backup name, or "latest".
    pub backup: String,
    /// The newest backup of every cluster prefix in the repository.
    pub all: bool,
    /// With `all`: how long all the proofs may take together.
    pub budget: Option<String>,
    pub keep: bool,
    pub time_limit: String,
    pub sql: Option<String>,
    pub expect: Option<String>,
    pub sql_database: String,
    pub jobs: usize,
}

impl ProveRequest {
    fn options(&self) -> Result<ProveOptions> {
        Ok(ProveOptions {
            backup: Some(self.backup.clone()),
            keep: self.keep,
            time_limit: parse_duration(&self.time_limit)?,
            sql: self.sql.clone(),
            expect: self.expect.clone(),
            sql_database: self.sql_database.clone(),
            jobs: self.jobs,
        })
    }
}

pub async fn invoke(over: &Overrides, request: ProveRequest) -> Outcome {
    let result = async {
        let opts = request.options()?;
        if request.all {
            return prove_every_cluster(over, &opts, request.budget.as_deref()).await;
        }
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        let line = run(&settings, &opts).await?;
        Ok(AllOutcome {
            text: format!("{line}\n"),
            proven: 1,
            not_proven: 0,
        })
    };
    match result.await {
        Ok(done) if done.not_proven == 0 => Outcome::success(done.text),
        Ok(done) => {
            let summary = format!(
                "{} of {} cluster(s) not proven; each is listed above",
                done.not_proven,
                done.proven + done.not_proven
            );
            Outcome::report_failing(done.text, Error::new(ErrorKind::ProofFailed, summary))
        }
        Err(e) => Outcome::failure(e),
    }
}

/// Each cluster of the listed repository with its own section's settings;
/// the budget defaults to one proof's time limit.
async fn prove_every_cluster(
    over: &Overrides,
    opts: &ProveOptions,
    budget: Option<&str>,
) -> Result<AllOutcome> {
    let repo_settings = RepositorySettings::resolve(over)?;
    let budget = match budget {
        Some(b) => parse_duration(b)?,
        None => opts.time_limit,
    };
    let settings_for = |name: &ClusterName| {
        let mut over = over.clone();
        // Each proof reads the repository that was listed, whatever
        // repository a cluster's section names.
        over.repo = Some(Sourced::new(
            repo_settings.repo.value.to_string(),
            repo_settings.repo.origin.clone(),
        ));
        over.cluster = Some(Sourced::new(
            name.to_string(),
            Origin::Derived(format!("prove --all: prefix {name} of the repository")),
        ));
        Settings::resolve(&over, None, PgdataFallback::PgdataEnv)
    };
    run_all(&repo_settings, settings_for, opts, budget).await
}
