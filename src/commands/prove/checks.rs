//! The checks run against the proving server once it has replayed the
//! archive: each one becomes a `ProofCheck` (name, passed, what was found).

use crate::pg::binaries::Binaries;
use crate::pg::server::{Connection, Endpoint, connect_to};
use crate::repo::proof::ProofCheck;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn check(name: impl Into<String>, passed: bool, detail: impl Into<String>) -> ProofCheck {
    ProofCheck {
        name: name.into(),
        passed,
        detail: detail.into(),
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => e.to_string(),
        }),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The restored cluster is the backed-up system, not merely some cluster.
pub fn system_identifier(found: u64, expected: u64) -> ProofCheck {
    if found == expected {
        check("system identifier", true, found.to_string())
    } else {
        check(
            "system identifier",
            false,
            format!("the restored server reports {found}, the backup's manifest {expected}"),
        )
    }
}

/// The catalogs answer; returns the databases that accept connections.
pub async fn catalogs(conn: &Connection, timeout: Duration) -> (ProofCheck, Vec<String>) {
    let q = conn.client.query(
        "SELECT datname, datallowconn, (SELECT count(*) FROM pg_class)::bigint FROM pg_database ORDER BY datname",
        &[],
    );
    match bounded(timeout, q).await {
        Ok(rows) => {
            let relations: i64 = rows.first().map(|r| r.get(2)).unwrap_or(0);
            let all: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            let open: Vec<String> = rows
                .iter()
                .filter(|r| r.get::<_, bool>(1))
                .map(|r| r.get(0))
                .collect();
            (
                check(
                    "catalogs",
                    !open.is_empty(),
                    format!(
                        "{relations} relations in pg_class; databases: {}",
                        all.join(", ")
                    ),
                ),
                open,
            )
        }
        Err(e) => (check("catalogs", false, e), Vec::new()),
    }
}

/// Every database that allows connections accepts one and answers a query.
pub async fn connect_each(
    endpoint: &Endpoint,
    user: &str,
    databases: &[String],
    timeout: Duration,
) -> Vec<ProofCheck> {
    let mut out = Vec::new();
    for db in databases {
        let name = format!("connect {db}");
        let result = match connect_to(endpoint, user, db, timeout).await {
            Ok(c) => bounded(
                timeout,
                c.client
                    .query_one("SELECT count(*)::bigint FROM pg_class", &[]),
            )
            .await
            .map(|row| format!("{} relations", row.get::<_, i64>(0))),
            Err(e) => Err(e.to_string()),
        };
        out.push(match result {
            Ok(detail) => check(name, true, detail),
            Err(e) => check(name, false, e),
        });
    }
    out
}

/// `pg_amcheck --all` when it is installed beside the server and the
/// `amcheck` extension is available; passed with a note otherwise.
pub async fn amcheck(
    binaries: &Binaries,
    conn: &Connection,
    user: &str,
    maintenance_db: &str,
    deadline: Instant,
    timeout: Duration,
) -> ProofCheck {
    let Some(program) = binaries.tool("pg_amcheck") else {
        return check(
            "pg_amcheck",
            true,
            format!(
                "skipped: pg_amcheck is not installed in {}",
                binaries.bindir.display()
            ),
        );
    };
    let q = conn.client.query_one(
        "SELECT count(*)::bigint FROM pg_available_extensions WHERE name = 'amcheck'",
        &[],
    );
    match bounded(timeout, q).await {
        Ok(row) if row.get::<_, i64>(0) == 0 => {
            return check(
                "pg_amcheck",
                true,
                "skipped: the amcheck extension is not installed for this server",
            );
        }
        Ok(_) => {}
        Err(e) => return check("pg_amcheck", false, e),
    }
    let mut cmd = Command::new(&program);
    cmd.arg("--host")
        .arg(&conn.endpoint.host)
        .arg("--port")
        .arg(conn.endpoint.port.to_string())
        .arg("--username")
        .arg(user)
        .arg("--maintenance-db")
        .arg(maintenance_db)
        .args(["--all", "--install-missing", "--no-password"])
        .env_remove("PGDATABASE")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return check(
                "pg_amcheck",
                false,
                format!("cannot run {}: {e}", program.display()),
            );
        }
    };
    // Its output is small (one line per problem); read it once it has exited.
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return check(
                    "pg_amcheck",
                    false,
                    format!(
                        "the time limit ran out after {} of pg_amcheck",
                        crate::report::duration(started.elapsed())
                    ),
                );
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => return check("pg_amcheck", false, e.to_string()),
        }
    }
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => return check("pg_amcheck", false, e.to_string()),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let first: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(10)
        .collect();
    if out.status.success() {
        check(
            "pg_amcheck",
            true,
            format!(
                "heap and B-tree indexes of every database checked in {}",
                crate::report::duration(started.elapsed())
            ),
        )
    } else {
        check(
            "pg_amcheck",
            false,
            format!("pg_amcheck exited {}: {}", out.status, first.join(" | ")),
        )
    }
}

/// The operator's query: its first column of its first row, as text,
/// must equal the expected text (or, with no expectation, the query must succeed).
pub async fn sql(
    endpoint: &Endpoint,
    user: &str,
    dbname: &str,
    query: &str,
    expect: Option<&str>,
    timeout: Duration,
) -> ProofCheck {
    let name = "sql";
    let conn = match connect_to(endpoint, user, dbname, timeout).await {
        Ok(c) => c,
        Err(e) => return check(name, false, e.to_string()),
    };
    let messages = match bounded(timeout, conn.client.simple_query(query)).await {
        Ok(m) => m,
        Err(e) => return check(name, false, format!("{query:?} in {dbname} failed: {e}")),
    };
    let value = messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
        _ => None,
    });
    let shown = match &value {
        Some(Some(v)) => format!("{v:?}"),
        Some(None) => "NULL".into(),
        None => "no row".into(),
    };
    match expect {
        None => check(
            name,
            true,
            format!("{query:?} in {dbname} returned {shown}"),
        ),
        Some(want) => {
            let passed = matches!(&value, Some(Some(v)) if v == want);
            check(
                name,
                passed,
                format!("{query:?} in {dbname} returned {shown}, expected {want:?}"),
            )
        }
    }
}
