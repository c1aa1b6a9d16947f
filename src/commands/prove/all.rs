//! `pgproof prove --all`: the newest backup of every cluster prefix in the
//! repository, one after another, within one time budget: the nightly proof
//! of a whole fleet. Each cluster is proven with its own settings (its
//! configuration section, its major's server binaries); a cluster that
//! cannot be proven does not stop the others, and each proof, failed or
//! not, is recorded as a single `prove` records it.

use super::ProveOptions;
use crate::error::{Error, ErrorKind, Result};
use crate::repo::{ClusterName, Root};
use crate::report;
use crate::settings::{RepositorySettings, Settings};
use std::time::{Duration, Instant};

pub struct AllOutcome {
    /// One line per cluster, then a summary.
    pub text: String,
    pub proven: usize,
    pub not_proven: usize,
}

/// Proves each cluster in turn. A proof starts only while the budget
/// lasts, and its time limit is cut to what is left of it; the clusters
/// whose turn comes after the budget is spent are reported not proven.
pub async fn run_all(
    repo_settings: &RepositorySettings,
    settings_for: impl Fn(&ClusterName) -> Result<Settings>,
    opts: &ProveOptions,
    budget: Duration,
) -> Result<AllOutcome> {
    let started = Instant::now();
    let deadline = started + budget;
    let root = Root::open(&repo_settings.repo.value, repo_settings.retry)?;
    let names = root.cluster_prefixes().await?;
    if names.is_empty() {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} holds no cluster", repo_settings.repo.value),
        )
        .with_hint("clusters appear once their first WAL segment or backup is stored"));
    }
    tracing::info!(
        "proving the newest backup of {} cluster(s) in {}, one after another, within {}",
        names.len(),
        repo_settings.repo.value,
        report::duration(budget)
    );
    let mut lines = Vec::new();
    let (mut proven, mut not_proven) = (0, 0);
    for (i, name) in names.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            not_proven += 1;
            lines.push(format!(
                "{name}: NOT proven: the budget of {} was spent before its turn",
                report::duration(budget)
            ));
            continue;
        }
        tracing::info!(
            "cluster {name} ({} of {}), {} of the budget left",
            i + 1,
            names.len(),
            report::duration(left)
        );
        let proof = async {
            let settings = settings_for(name)?;
            let opts = ProveOptions {
                backup: Some("latest".to_string()),
                time_limit: opts.time_limit.min(left),
                ..opts.clone()
            };
            super::run(&settings, &opts).await
        };
        match proof.await {
            Ok(line) => {
                proven += 1;
                lines.push(line);
            }
            // The operator stopped the whole run, not one proof.
            Err(e) if e.kind() == ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                not_proven += 1;
                tracing::error!("cluster {name}: {e}");
                if let Some(hint) = e.hint() {
                    tracing::error!("hint: {hint}");
                }
                lines.push(format!("{name}: NOT proven: {e}"));
            }
        }
    }
    lines.push(format!(
        "{proven} of {} cluster(s) proven in {}",
        names.len(),
        report::duration(started.elapsed())
    ));
    Ok(AllOutcome {
        text: lines.join("\n") + "\n",
        proven,
        not_proven,
    })
}
