#!/usr/bin/env bash
# pgproof backup-push/restore against pgBackRest backup/restore, on the same
# PostgreSQL 15 cluster, like for like:
#   - datasets (each on its own fresh cluster): "pgbench" = pgbench -i at
#     scale $SCALE (100: about 1.5 GB); "random" (reported as
#     pgbench+random) = the same plus $RANDOM_MB MB of incompressible rows;
#   - both tools zstd at level $LEVEL, $JOBS processes (pgBackRest
#     process-max, pgproof --jobs), a filesystem repository on the same disk,
#     warm page cache; archive_command pushes every segment through both,
#     the tool about to be timed first (each backup waits for its own push
#     of the stop segment, not for the other tool's);
#   - before every timed backup: CHECKPOINT (so neither tool's fast start
#     checkpoint writes the other's dirty buffers), a WAL switch, and a wait
#     until the archiver has stored everything up to it with nothing left
#     .ready (so neither tool's backup waits for its stop segment behind a
#     backlog), then sync;
#   - $ROUNDS rounds of one FULL backup per tool, the order alternating
#     (round 1 pgBackRest first, round 2 pgproof first, ...), then $ROUNDS
#     rounds of restores of each tool's newest backup in the same alternating
#     order, each into a fresh directory and timed until its files are on
#     disk (the command, then sync);
#   - per run: wall time, CPU% and peak RSS; per dataset: every run, then
#     medians, stored size of one backup and the pgBackRest/pgproof ratios,
#     and one "RESULT key=value ..." line to compare runs by.
#
#   bash bench/backup.sh
#   SCALE=20 RANDOM_MB=200 bash bench/backup.sh      # a quicker run
#   DATASETS=pgbench ROUNDS=5 LEVEL=3 bash bench/backup.sh
#
# Knobs: SCALE (100), RANDOM_MB (500), ROUNDS (3), LEVEL (zstd level, 1),
# JOBS (2), DATASETS ("pgbench random"), BENCH_DIR (/tmp/pgproof-bench; this
# script works in $BENCH_DIR/backup, removed at the start), ARCHIVE_WAIT_S
# (600: how long to wait for the archiver before giving up).
# Runs as root (PostgreSQL and both tools run as the postgres user) or as a
# user that can run PostgreSQL itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SCALE=${SCALE:-100}
RANDOM_MB=${RANDOM_MB:-500}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-1}
JOBS=${JOBS:-2}
DATASETS=${DATASETS:-"pgbench random"}
ARCHIVE_WAIT_S=${ARCHIVE_WAIT_S:-600}
base=${BENCH_DIR:-/tmp/pgproof-bench}/backup

for d in $DATASETS; do
  case $d in pgbench | random) ;; *) echo "DATASETS: unknown dataset '$d' (pgbench, random)" >&2; exit 2 ;; esac
done
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }

bash "$root/scripts/install-test-deps.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

# Servers of an earlier, interrupted run; and none left running by this one.
stop_clusters() {
  local d
  for d in "$base"/*/pgdata; do
    [ -f "$d/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1
  done
  return 0
}
stop_clusters
trap stop_clusters EXIT
trap 'exit 130' INT TERM
rm -rf "$base"
mkdir -p "$base"
chmod 755 "$base"
install -m 755 "${CARGO_TARGET_DIR:-$root/target}/release/pgproof" "$base/pgproof"

size_of() { if [ -d "$1" ]; then du -sb "$1" | cut -f1; else echo 0; fi; }

# The order of round ROUND: pgBackRest first in odd rounds, pgproof in even.
# archive_first TOOL: archive_command pushes each segment with TOOL first.
# A backup waits until its stop segment is in its own archive; with the
# other tool's push first in the same command it would also wait for that
# one. So the tool about to be timed goes first.
archive_first() {
  local pgbr="pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p"
  local pgproof="$base/pgproof --repo file://$work/pgproof-repo --cluster bench --compression zstd:$LEVEL -q wal-push %p"
  local command
  if [ "$1" = pgbr ]; then command="$pgbr && $pgproof"; else command="$pgproof && $pgbr"; fi
  psql_c "ALTER SYSTEM SET archive_command = '$command'" >/dev/null
  psql_c "SELECT pg_reload_conf()" >/dev/null
}

order() { if [ $(($1 % 2)) = 1 ]; then echo "pgbr pgproof"; else echo "pgproof pgbr"; fi; }

backup_rounds() {
  local round tool before
  for round in $(seq 1 "$ROUNDS"); do
    for tool in $(order "$round"); do
      archive_first "$tool"
      archiver_caught_up
      if [ "$tool" = pgbr ]; then
        before=$(size_of "$work/pgbackrest/repo/backup")
        timed "$round" pgbr backup pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --type=full backup
        echo "$round pgbr $(($(size_of "$work/pgbackrest/repo/backup") - before))" >>"$work/stored"
      else
        before=$(size_of "$work/pgproof-repo/bench/backups")
        timed "$round" pgproof backup env PGUSER=postgres "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
          --compression "zstd:$LEVEL" backup-push "$PGDATA_DIR" --fast --jobs "$JOBS"
        echo "$round pgproof $(($(size_of "$work/pgproof-repo/bench/backups") - before))" >>"$work/stored"
      fi
    done
  done
}

restore_rounds() {
  local round tool
  for round in $(seq 1 "$ROUNDS"); do
    for tool in $(order "$round"); do
      # Untimed: the previous restores go, so every restore starts from the
      # same free space and without the other's files in the page cache.
      rm -rf "$work/r-pgbr" "$work/r-pgproof"
      if [ "$tool" = pgbr ]; then
        mkdir -m 700 "$work/r-pgbr"
        [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/r-pgbr"
        TIMED_SYNC=1 timed "$round" pgbr restore pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --pg1-path="$work/r-pgbr" restore
      else
        TIMED_SYNC=1 timed "$round" pgproof restore "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
          restore "$work/r-pgproof" --jobs "$JOBS"
      fi
    done
    # The floor: the data directory's relations (base/ and global/, nearly
    # all its bytes; not pg_wal, which restores do not fill) written by cp,
    # which only copies from the page cache, until synced. No restore can
    # be more than (pgBackRest's time / this) times pgBackRest's speed on
    # this disk.
    rm -rf "$work/r-pgbr" "$work/r-pgproof" "$work/r-copy"
    mkdir -m 700 "$work/r-copy"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/r-copy"
    TIMED_SYNC=1 timed "$round" copy restore cp -a "$PGDATA_DIR/base" "$PGDATA_DIR/global" "$work/r-copy/"
  done
  rm -rf "$work/r-pgbr" "$work/r-pgproof" "$work/r-copy"
}

# report LABEL DB_BYTES: every run, then the medians and ratios, from
# $work/runs and $work/stored.
report() {
  python3 - "$1" "$2" "$work/runs" "$work/stored" "$LEVEL" "$JOBS" "$ROUNDS" "$SCALE" "$RANDOM_MB" <<'PY'
import sys
from statistics import median

label, db_bytes, runs_path, stored_path, level, jobs, rounds, scale, random_mb = sys.argv[1:]
names = {"pgbr": "pgBackRest", "pgproof": "pgproof", "copy": "cp -a"}
runs = []
for line in open(runs_path):
    rnd, tool, op, ms, e, u, s, m = line.split()
    cpu = 100 * (float(u) + float(s)) / float(e) if float(e) else 0.0
    runs.append(dict(round=int(rnd), tool=tool, op=op, ms=int(ms), cpu=cpu, rss=int(m)))
stored = {}
for line in open(stored_path):
    rnd, tool, size = line.split()
    stored[(int(rnd), tool)] = int(size)

print(f"\n{label}: database {int(db_bytes) >> 20} MiB, zstd level {level}, {jobs} processes per tool, {rounds} rounds")
print(f"{'round':>5}  {'tool':<10}  {'op':<7}  {'ms':>8}  {'CPU%':>5}  {'peak RSS MiB':>12}  {'stored MiB':>10}")
for r in runs:
    st = stored.get((r["round"], r["tool"])) if r["op"] == "backup" else None
    st = f"{st / 2**20:.1f}" if st is not None else ""
    print(f"{r['round']:>5}  {names[r['tool']]:<10}  {r['op']:<7}  {r['ms']:>8}  {r['cpu']:>5.0f}  {r['rss'] / 1024:>12.1f}  {st:>10}")

def med(tool, op, key):
    return median(r[key] for r in runs if r["tool"] == tool and r["op"] == op)

def med_stored(tool):
    return median(v for (_, t), v in stored.items() if t == tool)

def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"

print(f"\nmedians{'':<21}{'pgBackRest':>12}{'pgproof':>12}   pgBackRest/pgproof")
rows = [
    ("backup ms", "backup", "ms", True),
    ("restore ms", "restore", "ms", True),
    ("backup CPU %", "backup", "cpu", False),
    ("restore CPU %", "restore", "cpu", False),
    ("backup peak RSS MiB", "backup", "rss", False),
    ("restore peak RSS MiB", "restore", "rss", False),
]
for title, op, key, with_ratio in rows:
    a, b = med("pgbr", op, key), med("pgproof", op, key)
    if key == "rss":
        a, b = a / 1024, b / 1024
    fmt = (lambda v: f"{v:.0f}") if key != "rss" else (lambda v: f"{v:.1f}")
    tail = f"   {ratio(a, b)}x" if with_ratio else ""
    print(f"{title:<28}{fmt(a):>12}{fmt(b):>12}{tail}")
sa, sb = med_stored("pgbr"), med_stored("pgproof")
print(f"{'stored MiB (one backup)':<28}{sa / 2**20:>12.1f}{sb / 2**20:>12.1f}   {ratio(sa, sb)}")
print("(ratio > 1: pgproof faster, or stores less)")
floor = med("copy", "restore", "ms")
print(f"restore floor: cp -a of base/ and global/ until synced, {floor:.0f} ms (median): a restore here can"
      f" be about {ratio(med('pgbr', 'restore', 'ms'), floor)}x pgBackRest's speed at the most")

dataset = "pgbench" if label == "pgbench" else "pgbench+random"
fields = dict(
    dataset=dataset, scale=scale, random_mb=random_mb if label != "pgbench" else 0,
    level=level, jobs=jobs, rounds=rounds,
    backup_ratio=ratio(med("pgbr", "backup", "ms"), med("pgproof", "backup", "ms")),
    restore_ratio=ratio(med("pgbr", "restore", "ms"), med("pgproof", "restore", "ms")),
    pgbr_backup_ms=round(med("pgbr", "backup", "ms")),
    pgproof_backup_ms=round(med("pgproof", "backup", "ms")),
    pgbr_restore_ms=round(med("pgbr", "restore", "ms")),
    pgproof_restore_ms=round(med("pgproof", "restore", "ms")),
    pgbr_backup_cpu=round(med("pgbr", "backup", "cpu")),
    pgproof_backup_cpu=round(med("pgproof", "backup", "cpu")),
    pgbr_restore_cpu=round(med("pgbr", "restore", "cpu")),
    pgproof_restore_cpu=round(med("pgproof", "restore", "cpu")),
    pgbr_backup_rss_kib=round(med("pgbr", "backup", "rss")),
    pgproof_backup_rss_kib=round(med("pgproof", "backup", "rss")),
    pgbr_restore_rss_kib=round(med("pgbr", "restore", "rss")),
    pgproof_restore_rss_kib=round(med("pgproof", "restore", "rss")),
    pgbr_stored=round(sa), pgproof_stored=round(sb),
    copy_floor_ms=round(floor),
)
print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
PY
}

run_dataset() { # run_dataset NAME LOAD_FUNCTION
  local name=$1 load=$2
  work=$base/$name
  mkdir -p "$work"
  : >"$work/runs"
  : >"$work/stored"
  two_tool_cluster
  echo "$name: loading data" >&2
  "$load"
  local db_size; db_size=$(psql_c "SELECT sum(pg_database_size(oid)) FROM pg_database")
  cat "$PGDATA_DIR"/base/*/* >/dev/null 2>&1 || true

  echo "$name: backups, $ROUNDS rounds" >&2
  backup_rounds
  archiver_caught_up
  pg_stop
  echo "$name: restores, $ROUNDS rounds" >&2
  restore_rounds
  report "$name" "$db_size"
}

pgbench_data() { as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1; }
random_data() {
  pgbench_data
  psql_c "CREATE EXTENSION IF NOT EXISTS pgcrypto" >/dev/null
  psql_c "CREATE TABLE noise AS SELECT gen_random_bytes(1000) AS b FROM generate_series(1, $RANDOM_MB * 1000)" >/dev/null
}

for d in $DATASETS; do
  run_dataset "$d" "${d}_data"
done
