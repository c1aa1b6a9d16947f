//! `pgproof backup-list [--json]`: the complete backups of a cluster, oldest
//! first, then those whose manifest is damaged (each also a warning): one bad
//! manifest neither hides the others nor passes for a usable backup.

use super::cluster::open_repository;
use crate::commands::Outcome;
use crate::error::Result;
use crate::repo::chain::chain_in;
use crate::report;
use crate::settings::{Overrides, PgdataFallback, Settings};
use serde::Serialize;

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    started_at: String,
    stopped_at: String,
    start_lsn: String,
    stop_lsn: String,
    timeline: u32,
    start_wal: &'a str,
    stop_wal: &'a str,
    system_identifier: String,
    major: u32,
    server_version_num: u32,
    size: u64,
    stored_size: u64,
    /// `full` or `incremental`.
    #[serde(rename = "type")]
    kind: String,
    /// The backup an incremental rests on.
    parent: Option<&'a str>,
    /// The backups a restore reads, the full first, this one last.
    chain: Vec<&'a str>,
    /// Stored bytes of the whole chain.
    chain_stored_size: u64,
    files: usize,
    pgdata: &'a str,
    host: &'a str,
    /// Exempt from retention (`backup-mark NAME --permanent`).
    permanent: bool,
    /// The newest `prove` of the backup, if any.
    proof: Option<ProofRow>,
    /// Always null here; see `DamagedRow`.
    damaged: Option<String>,
}

/// A backup whose manifest cannot be used: only what its key says, and why.
#[derive(Serialize)]
struct DamagedRow<'a> {
    name: &'a str,
    binding: &'a str,
    manifest: &'a str,
    damaged: String,
}

#[derive(Serialize)]
struct ProofRow {
    succeeded: bool,
    finished_at: String,
    duration_secs: f64,
    replayed_to_lsn: Option<String>,
}

pub async fn invoke(over: &Overrides, json: bool) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        run(&settings, json).await
    };
    Outcome::of(result.await)
}

pub async fn run(settings: &Settings, json: bool) -> Result<String> {
    let repo = open_repository(settings)?;
    let set = repo.backups().await?;
    for d in &set.damaged {
        tracing::warn!("{}", d.describe());
    }
    let backups = &set.complete;
    let permanent = repo.permanent_backups().await?;
    let mut proofs = Vec::with_capacity(backups.len());
    for m in backups {
        proofs.push(repo.newest_proof(&m.binding, &m.name).await?);
    }
    let rows: Vec<Row> = backups
        .iter()
        .zip(&proofs)
        .map(|(m, proof)| {
            let chain = chain_in(backups, m);
            Row {
                name: &m.name,
                started_at: m.started_at.to_rfc3339(),
                stopped_at: m.stopped_at.to_rfc3339(),
                start_lsn: m.start_lsn.to_string(),
                stop_lsn: m.stop_lsn.to_string(),
                timeline: m.timeline,
                start_wal: &m.start_wal,
                stop_wal: &m.stop_wal,
                system_identifier: m.system_identifier.to_string(),
                major: m.major.number(),
                server_version_num: m.server_version_num,
                size: m.size,
                stored_size: m.stored_size,
                kind: m.kind.to_string(),
                parent: m.parent.as_ref().map(|p| p.name.as_str()),
                chain_stored_size: chain.iter().map(|c| c.stored_size).sum(),
                chain: chain.iter().map(|c| c.name.as_str()).collect(),
                files: m.files.len(),
                pgdata: &m.pgdata,
                host: &m.host,
                permanent: permanent.contains(&(m.binding.clone(), m.name.clone())),
                proof: proof.as_ref().map(|p| ProofRow {
                    succeeded: p.succeeded,
                    finished_at: p.finished_at.to_rfc3339(),
                    duration_secs: p.duration_secs,
                    replayed_to_lsn: p.replayed_to_lsn.map(|l| l.to_string()),
                }),
                damaged: None,
            }
        })
        .collect();
    let damaged: Vec<DamagedRow> = set
        .damaged
        .iter()
        .map(|d| DamagedRow {
            name: &d.name,
            binding: &d.binding,
            manifest: &d.manifest_key,
            damaged: d.problem.to_string(),
        })
        .collect();
    if json {
        let mut all: Vec<serde_json::Value> = Vec::new();
        for r in &rows {
            all.push(serde_json::to_value(r).expect("rows serialize"));
        }
        for d in &damaged {
            all.push(serde_json::to_value(d).expect("rows serialize"));
        }
        return Ok(serde_json::to_string_pretty(&all).expect("rows serialize") + "\n");
    }
    let mut out = format!(
        "backups of {} ({}):\n",
        settings.cluster.value,
        repo.describe()
    );
    if rows.is_empty() && damaged.is_empty() {
        out += "  none\n";
        return Ok(out);
    }
    out += &format!(
        "  {:<17} {:<20} {:<20} {:<22} {:>12} {:>12} {:>10} {:>10} {:>12}  {:<4} {}\n",
        "name",
        "started",
        "stopped",
        "type",
        "start LSN",
        "stop LSN",
        "size",
        "stored",
        "chain stored",
        "PG",
        "proof"
    );
    for ((r, m), proof) in rows.iter().zip(backups).zip(&proofs) {
        let kind = match r.parent {
            Some(parent) if r.chain.len() > 1 => format!("incr on {parent}"),
            Some(parent) => format!("incr on {parent}?"),
            None => "full".to_string(),
        };
        out += &format!(
            "  {:<17} {:<20} {:<20} {:<22} {:>12} {:>12} {:>10} {:>10} {:>12}  {:<4} {}{}\n",
            r.name,
            m.started_at.format("%Y-%m-%d %H:%M:%S"),
            m.stopped_at.format("%Y-%m-%d %H:%M:%S"),
            kind,
            r.start_lsn,
            r.stop_lsn,
            report::bytes(r.size),
            report::bytes(r.stored_size),
            report::bytes(r.chain_stored_size),
            r.major,
            proof
                .as_ref()
                .map(|p| p.summary())
                .unwrap_or_else(|| "never proven".into()),
            if r.permanent { "; permanent" } else { "" }
        );
    }
    if rows
        .iter()
        .any(|r| r.parent.is_some() && r.chain.len() == 1)
    {
        out += "  (?: the parent is missing or damaged; that incremental cannot be restored)\n";
    }
    for d in &damaged {
        out += &format!("  {:<17} DAMAGED: {}\n", d.name, d.damaged);
    }
    if !damaged.is_empty() {
        out += "  (a damaged backup cannot be restored; `pgproof verify` lists what is wrong)\n";
    }
    Ok(out)
}
