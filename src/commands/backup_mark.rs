//! `pgproof backup-mark NAME --permanent | --no-permanent`: exempts a
//! complete backup from retention, or lifts the exemption.

use super::cluster::open_repository;
use crate::commands::Outcome;
use crate::error::{Error, ErrorKind, Result};
use crate::settings::{Overrides, PgdataFallback, Settings};

pub async fn invoke(over: &Overrides, name: &str, permanent: bool) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        run(&settings, name, permanent).await
    };
    Outcome::of(result.await.map(|()| String::new()))
}

pub async fn run(settings: &Settings, name: &str, permanent: bool) -> Result<()> {
    let repo = open_repository(settings)?;
    let backups = repo.backups().await?;
    if let Some(d) = backups.damaged_named(name) {
        return Err(
            Error::new(d.problem.kind(), d.describe()).with_hint(format!(
                "{} must be repaired or removed first; `pgproof verify` lists what is wrong",
                d.manifest_key
            )),
        );
    }
    let Some(backup) = backups.complete.iter().find(|b| b.name == name) else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("{} has no complete backup named {name}", repo.describe()),
        )
        .with_hint("`pgproof backup-list` shows the backups there are"));
    };
    if permanent {
        let key = repo.mark_permanent(&backup.binding, name).await?;
        tracing::info!("backup {name} is marked permanent ({key}); `delete` will keep it");
    } else if repo.unmark_permanent(&backup.binding, name).await? {
        tracing::info!("backup {name} is no longer permanent; `delete` may remove it");
    } else {
        tracing::info!("backup {name} was not marked permanent; nothing changed");
    }
    Ok(())
}
