//! Real WAL, cheaply: a cluster initdb'd with 1 MiB segments whose archiver
//! copies every completed segment aside. The copies are what the tests push.

use crate::common::*;
use std::path::PathBuf;

/// The major the fault tests run on: 15 unless PGPROOF_TEST_MAJORS leaves it out.
pub fn major() -> u32 {
    let wanted = majors();
    if wanted.contains(&15) { 15 } else { wanted[0] }
}

pub struct WalSource {
    pub cluster: Cluster,
    /// Completed segments, in order, copied aside by the archiver.
    pub segments: Vec<PathBuf>,
}

impl WalSource {
    /// `count` completed segments, each holding `rows` inserted rows (0: a
    /// single small insert, so that switching is all that fills the WAL).
    /// The cluster is stopped afterwards; its pg_control is what wal-push reads.
    pub fn generate(scratch: &Scratch, count: usize, rows: u32) -> WalSource {
        let copies = scratch.dir("segments");
        let cluster = Cluster::init_with(scratch, "source", major(), &["--wal-segsize=1"]);
        cluster.configure(&format!(
            "archive_mode = on\narchive_command = 'cp %p {}/%f'\nmax_wal_size = 64MB\nmin_wal_size = 4MB\n",
            copies.display()
        ));
        cluster.start();
        let mut client = cluster.client();
        client
            .batch_execute("CREATE TABLE filler (id serial, payload text)")
            .unwrap();
        let insert = if rows == 0 {
            "INSERT INTO filler (payload) VALUES ('x')".to_string()
        } else {
            format!(
                "INSERT INTO filler (payload) SELECT md5(g::text) FROM generate_series(1, {rows}) g"
            )
        };
        let mut last = String::new();
        // initdb's own segments come first; a few more than asked cover them.
        for _ in 0..count + 2 {
            client.batch_execute(&insert).unwrap();
            let row = client
                .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
                .unwrap();
            last = row.get(0);
        }
        drop(client);
        wait_until(
            "the archiver copied every segment",
            std::time::Duration::from_secs(300),
            || {
                let done = cluster
                    .query_one("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
                done.as_str() >= last.as_str()
            },
        );
        cluster.stop();
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&copies)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = file_name(p);
                n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .collect();
        segments.sort();
        assert!(
            segments.len() >= count,
            "only {} segments were generated, {count} wanted",
            segments.len()
        );
        // The last ones: each made by this loop, none an initdb leftover.
        let segments = segments.split_off(segments.len() - count);
        WalSource { cluster, segments }
    }
}
