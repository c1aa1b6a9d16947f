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
        Self::generate_spread(scratch, count, rows, usize::MAX)
    }

    /// Like `generate`, with at most `per_directory` segments in each of the
    /// repository's WAL directories (one per 4 GiB "log" of WAL): between
    /// batches the cluster is stopped and pg_resetwal starts its WAL at the
    /// next log. Every wal-push lists its segment's directory, and moto's
    /// listing costs about a millisecond per key (tens of seconds on a loaded
    /// machine at a few thousand keys), which would time out against the short
    /// time limit the fault tests use; S3 lists a thousand keys in one page.
    pub fn generate_spread(
        scratch: &Scratch,
        count: usize,
        rows: u32,
        per_directory: usize,
    ) -> WalSource {
        let copies = scratch.dir("segments");
        let cluster = Cluster::init_with(scratch, "source", major(), &["--wal-segsize=1"]);
        cluster.configure(&format!(
            "archive_mode = on\narchive_command = 'cp %p {}/%f'\nmax_wal_size = 64MB\nmin_wal_size = 4MB\n",
            copies.display()
        ));
        cluster.start();
        cluster.execute("CREATE TABLE filler (id serial, payload text)");
        let insert = if rows == 0 {
            "INSERT INTO filler (payload) VALUES ('x')".to_string()
        } else {
            format!(
                "INSERT INTO filler (payload) SELECT md5(g::text) FROM generate_series(1, {rows}) g"
            )
        };
        let mut left = count;
        let mut log = 1u32;
        loop {
            let batch = left.min(per_directory);
            let mut client = cluster.client();
            let mut last = String::new();
            // initdb's own segments come first; a few more than asked cover them.
            for _ in 0..batch + 2 {
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
            left -= batch;
            if left == 0 {
                break;
            }
            cluster.stop();
            let out = as_postgres(cluster.bin.join("pg_resetwal"))
                .args(["-l", &format!("00000001{log:08X}00000000")])
                .arg(&cluster.pgdata)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_resetwal: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            log += 1;
            cluster.start();
        }
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
