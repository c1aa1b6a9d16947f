//! What the command line asks of restore, as given: the recovery target
//! flags (clap lets at most one through) and the tablespace moves.

use super::{RestoreOptions, Target, WriteMode, run};
use crate::commands::{Outcome, absolute};
use crate::error::{Error, Result};
use crate::settings::{Overrides, PgdataFallback, Settings};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    pub dest: PathBuf,
    pub backup: Option<String>,
    pub target_time: Option<String>,
    pub target_lsn: Option<String>,
    pub target_xid: Option<String>,
    pub target_name: Option<String>,
    pub target_immediate: bool,
    pub target_action: Option<String>,
    /// `OID=DIR`, as given to --tablespace.
    pub tablespaces: Vec<String>,
    pub jobs: usize,
    pub direct_io: bool,
}

impl RestoreRequest {
    fn target(&self) -> Option<Target> {
        let given = [
            self.target_time.clone().map(Target::Time),
            self.target_lsn.clone().map(Target::Lsn),
            self.target_xid.clone().map(Target::Xid),
            self.target_name.clone().map(Target::Name),
            self.target_immediate.then_some(Target::Immediate),
        ];
        given.into_iter().flatten().next()
    }

    fn options(&self) -> Result<RestoreOptions> {
        let tablespace_map = self
            .tablespaces
            .iter()
            .map(|t| parse_tablespace_move(t))
            .collect::<Result<_>>()?;
        Ok(RestoreOptions {
            dest: absolute(&self.dest)?,
            backup: self.backup.clone(),
            target: self.target(),
            target_action: self.target_action.clone(),
            tablespace_map,
            jobs: self.jobs,
            write_mode: if self.direct_io {
                WriteMode::Direct
            } else {
                WriteMode::Buffered
            },
            durable: true,
        })
    }
}

/// `OID=DIR`: the tablespace and its new place, made absolute, as it goes
/// into tablespace_map and the pg_tblspc links.
pub fn parse_tablespace_move(given: &str) -> Result<(u32, PathBuf)> {
    let (oid, dir) = given
        .split_once('=')
        .and_then(|(o, d)| Some((o.parse::<u32>().ok()?, PathBuf::from(d))))
        .filter(|(_, d)| !d.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::config(format!("--tablespace {given:?} is not OID=DIR"))
                .with_hint("the OID is the name of the tablespace's link in pg_tblspc (SELECT oid, spcname FROM pg_tablespace)")
        })?;
    Ok((oid, absolute(&dir)?))
}

/// `pgproof restore`: what to run next is logged; nothing is printed.
pub async fn invoke(over: &Overrides, request: RestoreRequest) -> Outcome {
    let result = async {
        let settings = Settings::resolve(over, None, PgdataFallback::PgdataEnv)?;
        run(&settings, &request.options()?).await
    };
    Outcome::of(result.await.map(|()| String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tablespace_move_is_an_oid_and_a_directory() {
        assert_eq!(
            parse_tablespace_move("16385=/srv/ts").unwrap(),
            (16385, PathBuf::from("/srv/ts"))
        );
        let (_, relative) = parse_tablespace_move("16385=ts").unwrap();
        assert!(relative.is_absolute() && relative.ends_with("ts"));
        for bad in ["16385", "ts=/srv/ts", "=/srv", "16385=", "-1=/srv"] {
            let e = parse_tablespace_move(bad).unwrap_err();
            assert_eq!(e.kind().exit_code(), 3, "{bad}");
        }
    }

    #[test]
    fn the_one_target_given_is_the_target() {
        let none = RestoreRequest::default();
        assert_eq!(none.target(), None);
        let lsn = RestoreRequest {
            target_lsn: Some("0/3000000".into()),
            ..RestoreRequest::default()
        };
        assert_eq!(lsn.target(), Some(Target::Lsn("0/3000000".into())));
        let immediate = RestoreRequest {
            target_immediate: true,
            ..RestoreRequest::default()
        };
        assert_eq!(immediate.target(), Some(Target::Immediate));
    }
}
