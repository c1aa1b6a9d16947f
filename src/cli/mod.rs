//! The command line: parses the arguments, hands each command its options
//! as given, and prints the outcome the command decided (its text, its
//! failure and hint, its exit status). Parsing of times, targets and
//! durations, and each command's exit policy, live with the commands.

mod args;
mod overrides;
mod reference;

pub use args::{Cli, Command, DeleteRule};

use crate::commands::{
    Outcome, backup_list, backup_mark, backup_push, check, clusters, delete, enable, prove, rebind,
    restore, status, verify, wal_fetch, wal_push,
};
use crate::report::{self, Verbosity};
use crate::settings::{Origin, Sourced};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// Parses the process arguments, runs the command and returns the exit status.
pub fn main() -> i32 {
    let matches = match Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let verbosity = match (cli.quiet, cli.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        (false, 1) => Verbosity::Verbose,
        _ => Verbosity::Debug,
    };
    let label = cli.command.label();
    report::init_logging(verbosity, label);
    let interval = match cli
        .progress_interval
        .as_deref()
        .map(crate::settings::parse_duration)
    {
        None => crate::progress::DEFAULT_LINE_INTERVAL,
        Some(Ok(d)) => d,
        Some(Err(e)) => return finish(Outcome::failure(e)),
    };
    crate::progress::init(cli.quiet, cli.progress.as_deref(), interval);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgproof {label}: ERROR: cannot start the async runtime: {e}");
            return 70;
        }
    };
    let stats = cli.stats || verbosity == Verbosity::Debug;
    let outcome = runtime.block_on(dispatch(cli, &matches));
    let status = finish(outcome);
    if stats {
        eprintln!("pgproof {label}: {}", crate::storage::stats::requests());
    }
    status
}

/// Prints what the command decided and returns its exit status.
fn finish(outcome: Outcome) -> i32 {
    print!("{}", outcome.text);
    if let Some(err) = &outcome.failure {
        tracing::error!("{err}");
        if let Some(hint) = err.hint() {
            tracing::error!("hint: {hint}");
        }
    }
    outcome.exit
}

async fn dispatch(cli: Cli, matches: &ArgMatches) -> Outcome {
    let mut over = overrides::overrides(&cli, matches);
    match cli.command {
        Command::Completions { shell } => reference::completions(shell),
        Command::Man { dir } => Outcome::of(reference::man(dir.as_deref()).map(|()| String::new())),
        Command::WalPush { path } => {
            wal_push::invoke(&over, wal_push::WalPushOptions { path }).await
        }
        Command::WalFetch {
            name,
            dest,
            history_only,
        } => {
            let opts = wal_fetch::WalFetchOptions {
                name,
                dest,
                history_only,
            };
            wal_fetch::invoke(&over, opts).await
        }
        Command::WalPrefetch { name } => wal_fetch::invoke_prefetcher(&over, &name).await,
        Command::BackupPush {
            pgdata,
            fast,
            jobs,
            archive_timeout,
            permanent,
            incremental,
            full,
            offline,
            backup_type,
            full_every,
            max_rate,
        } => {
            let max_rate = max_rate.map(|r| {
                let origin = subcommand_origin(
                    matches,
                    "backup-push",
                    "max_rate",
                    "--max-rate",
                    "PGPROOF_MAX_RATE",
                );
                Sourced::new(r, origin)
            });
            let request = backup_push::BackupPushRequest {
                pgdata,
                fast,
                jobs,
                archive_timeout,
                permanent,
                incremental,
                full,
                offline,
                backup_type,
                full_every,
                max_rate,
            };
            backup_push::invoke(&over, request).await
        }
        Command::BackupList { json } => backup_list::invoke(&over, json).await,
        Command::BackupMark {
            name, permanent, ..
        } => backup_mark::invoke(&over, &name, permanent).await,
        Command::Restore {
            dest,
            backup,
            target_time,
            target_lsn,
            target_xid,
            target_name,
            target_immediate,
            target_action,
            tablespaces,
            jobs,
            direct_io,
        } => {
            let request = restore::RestoreRequest {
                dest,
                backup,
                target_time,
                target_lsn,
                target_xid,
                target_name,
                target_immediate,
                target_action,
                tablespaces,
                jobs,
                direct_io,
            };
            restore::invoke(&over, request).await
        }
        Command::Check { archive_timeout } => check::invoke(&over, &archive_timeout).await,
        Command::Rebind {
            pgdata,
            confirm,
            reason,
        } => rebind::invoke(&over, pgdata, rebind::RebindOptions { confirm, reason }).await,
        Command::Enable {
            pgdata,
            confirm,
            restart,
            write_config,
            archive_timeout,
        } => {
            let request = enable::EnableRequest {
                pgdata,
                confirm,
                restart,
                write_config,
                archive_timeout,
            };
            enable::invoke(&over, request).await
        }
        Command::Delete {
            rule,
            confirm,
            json,
            unfinished_age,
        } => {
            let rule = match rule {
                DeleteRule::Retain { count } => delete::RuleRequest::Retain(count),
                DeleteRule::Before { when } => delete::RuleRequest::Before(when),
            };
            let request = delete::DeleteRequest {
                rule,
                confirm,
                json,
                unfinished_age,
            };
            delete::invoke(&over, request).await
        }
        Command::Verify { backup } => verify::invoke(&over, verify::VerifyOptions { backup }).await,
        Command::Prove {
            backup,
            all,
            budget,
            scratch,
            keep,
            time_limit,
            sql,
            expect,
            sql_database,
            jobs,
        } => {
            over.scratch = scratch.map(|s| {
                let origin =
                    subcommand_origin(matches, "prove", "scratch", "--scratch", "PGPROOF_SCRATCH");
                Sourced::new(s, origin)
            });
            let request = prove::ProveRequest {
                backup,
                all,
                budget,
                keep,
                time_limit,
                sql,
                expect,
                sql_database,
                jobs,
            };
            prove::invoke(&over, request).await
        }
        Command::Status {
            all,
            json,
            prometheus,
            warn_wal_age,
            crit_wal_age,
            warn_backup_age,
            crit_backup_age,
            warn_proof_age,
            crit_proof_age,
            warn_rpo,
            crit_rpo,
            warn_rto,
            crit_rto,
        } => {
            let format = match (json, prometheus) {
                (true, _) => status::Format::Json,
                (_, true) => status::Format::Prometheus,
                _ => status::Format::Text,
            };
            let request = status::StatusRequest {
                all,
                format,
                thresholds: [
                    warn_wal_age,
                    crit_wal_age,
                    warn_backup_age,
                    crit_backup_age,
                    warn_proof_age,
                    crit_proof_age,
                    warn_rpo,
                    crit_rpo,
                    warn_rto,
                    crit_rto,
                ],
            };
            status::invoke(&over, request).await
        }
        Command::Clusters { json, stale_after } => {
            clusters::invoke(&over, json, &stale_after).await
        }
    }
}

/// Where a subcommand's own flag with a variable of its own (prove's
/// `--scratch`, backup-push's `--max-rate`) took its value from.
fn subcommand_origin(
    matches: &ArgMatches,
    subcommand: &str,
    id: &str,
    flag: &'static str,
    env: &'static str,
) -> Origin {
    let source = matches
        .subcommand_matches(subcommand)
        .and_then(|m| m.value_source(id));
    match source {
        Some(ValueSource::EnvVariable) => Origin::Env(env),
        _ => Origin::Flag(flag),
    }
}
