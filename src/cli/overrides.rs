//! The global flags and their variables as settings overrides, each
//! remembering where it came from, for the messages that name it.

use super::args::Cli;
use crate::settings::{Origin, Overrides, Sourced};
use clap::ArgMatches;
use clap::parser::ValueSource;

pub(super) fn origin(
    matches: &ArgMatches,
    id: &'static str,
    flag: &'static str,
    env: &'static str,
) -> Origin {
    match matches.value_source(id) {
        Some(ValueSource::EnvVariable) => Origin::Env(env),
        _ => Origin::Flag(flag),
    }
}

pub(super) fn overrides(cli: &Cli, m: &ArgMatches) -> Overrides {
    let sourced =
        |v: Option<String>, id, flag, env| v.map(|v| Sourced::new(v, origin(m, id, flag, env)));
    Overrides {
        config: cli
            .config
            .clone()
            .map(|v| Sourced::new(v, origin(m, "config", "--config", "PGPROOF_CONFIG"))),
        cluster: sourced(
            cli.cluster.clone(),
            "cluster",
            "--cluster",
            "PGPROOF_CLUSTER",
        ),
        repo: sourced(cli.repo.clone(), "repo", "--repo", "PGPROOF_REPO"),
        compression: sourced(
            cli.compression.clone(),
            "compression",
            "--compression",
            "PGPROOF_COMPRESSION",
        ),
        pgdata: cli
            .pgdata
            .clone()
            .map(|v| Sourced::new(v, origin(m, "pgdata", "--pgdata", "PGPROOF_PGDATA"))),
        timeout: sourced(
            cli.timeout.clone(),
            "timeout",
            "--timeout",
            "PGPROOF_TIMEOUT",
        ),
        retries: cli.retries,
        retry_deadline: sourced(
            cli.retry_deadline.clone(),
            "retry_deadline",
            "--retry-deadline",
            "PGPROOF_RETRY_DEADLINE",
        ),
        host: cli
            .pghost
            .clone()
            .map(|v| Sourced::new(v, origin(m, "pghost", "--pghost", "PGPROOF_PGHOST"))),
        port: cli
            .pgport
            .map(|v| Sourced::new(v, origin(m, "pgport", "--pgport", "PGPROOF_PGPORT"))),
        push_ahead: cli.push_ahead,
        prefetch: cli.prefetch,
        pg_bindir: sourced(
            cli.pg_bindir.clone(),
            "pg_bindir",
            "--pg-bindir",
            "PGPROOF_PG_BINDIR",
        ),
        scratch: None,
    }
}
