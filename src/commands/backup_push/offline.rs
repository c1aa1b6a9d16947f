//! `backup-push --offline`: a base backup of a cleanly shut down cluster,
//! with no server to ask.
//!
//! pg_control is both the identity (as every command reads it) and the
//! consistency point: a cluster shut down cleanly has written everything
//! up to its shutdown checkpoint, so a copy of its files is consistent as
//! it stands, with no backup_label. PostgreSQL still reads the checkpoint
//! record at startup, so the segment holding it (and the history files of
//! its timelines) is copied from pg_wal, as pgBackRest does for offline
//! backups; nothing else of pg_wal is.
//!
//! No server may run during the copy: the cluster must be shut down and
//! without a live postmaster when the copy starts and when it ends, with
//! the same checkpoint in pg_control. A server started and stopped again
//! meanwhile leaves a newer checkpoint, and the backup is abandoned.

use super::walk::SourceFile;
use crate::error::{Error, ErrorKind, Result};
use crate::pg::control::{ClusterState, ControlFile};
use crate::pg::lsn::Lsn;
use crate::pg::pidfile::PostmasterPid;
use crate::pg::walname::Segment;
use crate::repo::path_bytes::PathBytes;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The checkpoint record is short (well under a WAL page), but it may start
/// near a segment's end and continue in the next one.
const CHECKPOINT_RECORD_REACH: u64 = 8192;

/// pg_control of `pgdata`, read now, when it says the cluster was shut down
/// cleanly and no postmaster runs; a refusal that says why otherwise.
pub fn stopped_cluster(pgdata: &Path) -> Result<ControlFile> {
    if let Some(pid) = PostmasterPid::read(pgdata)?.filter(|p| p.process_alive()) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the cluster in {} is running (postmaster.pid names live process {}); an offline backup needs it shut down",
                pgdata.display(),
                pid.pid
            ),
        )
        .with_hint("run backup-push without --offline to back up the running server, or stop it cleanly (pg_ctl stop -m fast) first"));
    }
    let control = ControlFile::read(pgdata)?;
    if control.state != ClusterState::ShutDown {
        let why = match control.state {
            ClusterState::ShutDownInRecovery => {
                "a standby's files need WAL from its primary to be consistent"
            }
            _ => {
                "it was not shut down cleanly (crashed, killed, or stopped with -m immediate), so its files are consistent only with WAL replayed over them"
            }
        };
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "pg_control of {} says the cluster is {}, not shut down: {why}",
                pgdata.display(),
                control.state
            ),
        )
        .with_hint("start the cluster and stop it with pg_ctl stop -m fast (or smart), then run backup-push --offline again; or back up the running server without --offline"));
    }
    Ok(control)
}

/// After the copy: the cluster must still be shut down at the checkpoint
/// it was at when the copy began, or some file may come from a running server.
pub fn still_stopped(pgdata: &Path, before: &ControlFile) -> Result<()> {
    let now = stopped_cluster(pgdata).map_err(|e| {
        e.context("the cluster changed while its files were copied; the backup was abandoned")
    })?;
    if now.checkpoint != before.checkpoint {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the cluster in {} was started while its files were copied (its checkpoint moved from {} to {}); the backup was abandoned",
                pgdata.display(),
                before.checkpoint,
                now.checkpoint
            ),
        )
        .with_hint("keep the cluster stopped for the whole backup-push --offline, and run it again"));
    }
    Ok(())
}

/// The files of pg_wal a restore needs to start from the shutdown
/// checkpoint: the segments from its redo point to the end of its record,
/// and every timeline history file.
pub fn wal_files(pgdata: &Path, control: &ControlFile) -> Result<Vec<SourceFile>> {
    let seg_size = u64::from(control.wal_segment_size);
    let first = Segment::containing(control.timeline, control.checkpoint_redo, seg_size);
    let last = Segment::containing(
        control.timeline,
        Lsn(control.checkpoint.0 + CHECKPOINT_RECORD_REACH),
        seg_size,
    );
    let pg_wal = pgdata.join("pg_wal");
    let mut files = Vec::new();
    let mut seg = first;
    loop {
        let name = seg.to_string();
        match source_file(&pg_wal, &name)? {
            Some(f) => files.push(f),
            // The record may end before the next segment was ever created.
            None if seg.number(seg_size) > control.checkpoint.0 / seg_size => {}
            None => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{} lacks WAL segment {name}, which holds the shutdown checkpoint at {} that pg_control names: the cluster could not start from a copy",
                        pg_wal.display(),
                        control.checkpoint
                    ),
                )
                .with_hint("start and stop the cluster cleanly so that it writes a new checkpoint, then run backup-push --offline again"));
            }
        }
        if seg == last {
            break;
        }
        seg = seg.next(seg_size);
    }
    let entries = std::fs::read_dir(&pg_wal).map_err(|e| Error::io("listing", &pg_wal, e))?;
    let mut histories: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.ends_with(".history"))
        .collect();
    histories.sort();
    for name in histories {
        files.extend(source_file(&pg_wal, &name)?);
    }
    Ok(files)
}

fn source_file(pg_wal: &Path, name: &str) -> Result<Option<SourceFile>> {
    let full = pg_wal.join(name);
    let meta = match std::fs::metadata(&full) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading the metadata of", &full, e)),
    };
    Ok(Some(SourceFile {
        path: PathBytes::from(format!("pg_wal/{name}").as_str()),
        tablespace: None,
        full,
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
        mtime: meta.mtime(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data directory holding only a real, cleanly shut down pg_control
    /// of PostgreSQL 16 (from the fixtures) and, when asked, the segment of
    /// its checkpoint.
    fn stopped_dir(with_segment: bool) -> (tempfile::TempDir, ControlFile) {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg/16/pg_control");
        std::fs::create_dir_all(dir.path().join("global")).unwrap();
        std::fs::create_dir_all(dir.path().join("pg_wal")).unwrap();
        std::fs::copy(fixture, dir.path().join("global/pg_control")).unwrap();
        std::fs::write(dir.path().join("PG_VERSION"), "16\n").unwrap();
        let control = ControlFile::read(dir.path()).unwrap();
        if with_segment {
            let seg = Segment::containing(
                control.timeline,
                control.checkpoint,
                u64::from(control.wal_segment_size),
            );
            std::fs::write(dir.path().join("pg_wal").join(seg.to_string()), b"wal").unwrap();
            std::fs::write(
                dir.path().join("pg_wal/00000002.history"),
                b"1\t0/3000000\tno reason\n",
            )
            .unwrap();
        }
        (dir, control)
    }

    #[test]
    fn a_cleanly_stopped_cluster_gives_its_checkpoint_segment_and_histories() {
        let (dir, control) = stopped_dir(true);
        assert_eq!(stopped_cluster(dir.path()).unwrap(), control);
        let files = wal_files(dir.path(), &control).unwrap();
        let names: Vec<String> = files.iter().map(|f| f.path.to_string()).collect();
        let seg = Segment::containing(
            control.timeline,
            control.checkpoint,
            u64::from(control.wal_segment_size),
        );
        assert_eq!(
            names,
            vec![
                format!("pg_wal/{seg}"),
                "pg_wal/00000002.history".to_string()
            ]
        );
        still_stopped(dir.path(), &control).unwrap();
    }

    #[test]
    fn a_missing_checkpoint_segment_or_a_moved_checkpoint_is_refused() {
        let (dir, control) = stopped_dir(false);
        let e = wal_files(dir.path(), &control).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("shutdown checkpoint"), "{e}");
        // A server started and stopped during the copy leaves a newer checkpoint.
        let mut earlier = control.clone();
        earlier.checkpoint = Lsn(control.checkpoint.0 - 0x100);
        let e = still_stopped(dir.path(), &earlier).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(
            e.to_string()
                .contains("was started while its files were copied"),
            "{e}"
        );
    }
}
