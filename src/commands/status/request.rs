//! What the command line asks of status, as given, and the exit policy of
//! a monitoring check: the verdict is the status, and anything status
//! cannot trust is UNKNOWN.

use super::{Format, StatusOptions, Verdict, run, threshold_rules};
use crate::commands::Outcome;
use crate::settings::{
    Overrides, PgdataFallback, RepositorySettings, STATUS_THRESHOLDS, Settings, status_thresholds,
};

#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// Every cluster prefix of the repository.
    pub all: bool,
    pub format: Format,
    /// The threshold flags and variables, in `STATUS_THRESHOLD_KEYS` order.
    pub thresholds: [Option<String>; STATUS_THRESHOLDS],
}

pub async fn invoke(over: &Overrides, request: StatusRequest) -> Outcome {
    let result = async {
        let given = request.thresholds.each_ref().map(|t| t.as_deref());
        let thresholds = threshold_rules(given, &status_thresholds(over)?)?;
        let repo_settings = RepositorySettings::resolve(over)?;
        let server = if request.all {
            None
        } else {
            Some(Settings::resolve(over, None, PgdataFallback::PgdataEnv)?)
        };
        let opts = StatusOptions {
            cluster: server.as_ref().map(|s| s.cluster.value.clone()),
            format: request.format,
            thresholds,
            server,
        };
        run(&repo_settings, &opts).await
    };
    match result.await {
        Ok(report) => Outcome::report(report.text, report.verdict.exit_code()),
        Err(e) => Outcome::failure_with_exit(e, Verdict::Unknown.exit_code()),
    }
}
