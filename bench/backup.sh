#!/usr/bin/env bash
# pgproof backup-push/restore against pgBackRest backup/restore, on the same
# clusters, in one run: a pgbench scale-100 database (about 1.5 GB) and one of
# about 1 GB of incompressible rows. Both tools: zstd level 1, two processes
# (pgBackRest process-max=2, pgproof --jobs 2), a filesystem repository on the
# same disk, warm cache. Restores are timed until their files are on disk
# (the command, then sync), twice each in the order A B B A, and averaged.
# Prints time, stored size and peak memory, and ratios.
#
#   bash bench/backup.sh
#   SCALE=20 RANDOM_MB=200 bash bench/backup.sh    # a quicker run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SCALE=${SCALE:-100}
RANDOM_MB=${RANDOM_MB:-1000}
base=${BENCH_DIR:-/tmp/pgproof-bench}/backup

bash "$root/scripts/install-test-deps.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
for d in "$base"/*/pgdata; do [ -d "$d" ] && as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true; done
rm -rf "$base"
mkdir -p "$base"
chmod 755 "$base"
install -m 755 "$root/target/release/pgproof" "$base/pgproof"

timed() { # timed NAME CMD...: runs CMD as the postgres user, records ms and peak KiB
  local name=$1; shift
  # Each step starts with no dirty data of the previous one still being
  # written back, so neither tool pays for the other's writes.
  sync
  local t0; t0=$(now_ms)
  /usr/bin/time -o "$work/$name.rss" -f %M runuser -u postgres -- "$@" >"$work/$name.out" 2>&1 || { cat "$work/$name.out" >&2; exit 1; }
  # A restore counts until its files are on disk: pgBackRest syncs each
  # file as it goes, so without this the figure would only say how much
  # writeback the kernel happened to leave for later.
  [ "${TIMED_SYNC:-}" = 1 ] && sync
  echo $(( $(now_ms) - t0 )) >"$work/$name.ms"
}

restore_rounds() { # restore_rounds DIR KIND: both tools restore into DIR, twice each
  local dir=$1 kind=$2 round=0 tool
  # Each tool restores twice, in the order pgBackRest, pgproof, pgproof,
  # pgBackRest: whichever goes first on a freshly idle disk has an edge, and
  # this order gives it to both alike. The figures are the means.
  for tool in pgbr pgproof pgproof pgbr; do
    round=$((round + 1))
    rm -rf "$dir/r-$tool"
    if [ "$tool" = pgbr ]; then
      mkdir -p "$dir/r-pgbr"; chown postgres:postgres "$dir/r-pgbr"; chmod 700 "$dir/r-pgbr"
      TIMED_SYNC=1 timed "pgbr-restore-$kind-$round" pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --pg1-path="$dir/r-pgbr" restore
    else
      TIMED_SYNC=1 timed "pgproof-restore-$kind-$round" "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench restore "$dir/r-pgproof" --jobs 2
    fi
  done
  rm -rf "$dir/r-pgbr" "$dir/r-pgproof"
  mean_of() { # mean_of NAME EXT ROUND ROUND: the mean of two rounds' figures
    echo $(( ($(cat "$work/$1-$3.$2") + $(cat "$work/$1-$4.$2")) / 2 ))
  }
  for ext in ms rss; do
    mean_of "pgbr-restore-$kind" $ext 1 4 >"$work/pgbr-restore-$kind.$ext"
    mean_of "pgproof-restore-$kind" $ext 2 3 >"$work/pgproof-restore-$kind.$ext"
  done
  echo "$name: restore ($kind) ms per round: pgBackRest $(cat "$work/pgbr-restore-$kind-1.ms") $(cat "$work/pgbr-restore-$kind-4.ms"), pgproof $(cat "$work/pgproof-restore-$kind-2.ms") $(cat "$work/pgproof-restore-$kind-3.ms")" >&2
}

run_dataset() { # run_dataset NAME SQL...
  local name=$1; shift
  work=$base/$name
  mkdir -p "$work"
  new_cluster "$work"
  mkdir -p "$work/pgbackrest/repo" "$work/pgbackrest/log" "$work/pgbackrest/lock" "$work/pgproof-repo"
  cat >"$work/pgbackrest.conf" <<CONF
[global]
repo1-path=$work/pgbackrest/repo
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
compress-type=zst
compress-level=1
process-max=2
start-fast=y
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$PG_SOCK
pg1-port=$PG_PORT
CONF
  cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
archive_mode = on
archive_command = 'pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p && $base/pgproof --repo file://$work/pgproof-repo --cluster bench --compression zstd:1 -q wal-push %p'
CONF
  chown -R postgres:postgres "$work"
  pg_start
  echo "$name: loading data" >&2
  "$@"
  psql_c "CHECKPOINT" >/dev/null
  as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
  local db_size; db_size=$(psql_c "SELECT sum(pg_database_size(oid)) FROM pg_database")
  cat "$PGDATA_DIR"/base/*/* >/dev/null 2>&1 || true

  echo "$name: backups" >&2
  timed pgbr-backup pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --type=full backup
  timed pgproof-backup env PGUSER=postgres "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench --compression zstd:1 backup-push "$PGDATA_DIR" --fast --jobs 2
  pg_stop
  echo "$name: restores" >&2
  restore_rounds "$work" disk

  local pgbr_size pgproof_size
  pgbr_size=$(du -sb "$work/pgbackrest/repo/backup" | cut -f1)
  pgproof_size=$(du -sb "$work/pgproof-repo/bench/backups" | cut -f1)
  ms() { cat "$work/$1.ms"; }
  rss() { cat "$work/$1.rss"; }
  cat <<REPORT

$name: database $((db_size >> 20)) MiB
                     pgBackRest      pgproof    ratio (pgBackRest/pgproof)
backup ms          $(printf '%10s' "$(ms pgbr-backup)")   $(printf '%10s' "$(ms pgproof-backup)")    $(ratio "$(ms pgbr-backup)" "$(ms pgproof-backup)")x
restore ms         $(printf '%10s' "$(ms pgbr-restore-disk)")   $(printf '%10s' "$(ms pgproof-restore-disk)")    $(ratio "$(ms pgbr-restore-disk)" "$(ms pgproof-restore-disk)")x
stored MiB         $(printf '%10s' "$((pgbr_size >> 20))")   $(printf '%10s' "$((pgproof_size >> 20))")    $(ratio "$pgbr_size" "$pgproof_size")
backup peak KiB    $(printf '%10s' "$(rss pgbr-backup)")   $(printf '%10s' "$(rss pgproof-backup)")
restore peak KiB   $(printf '%10s' "$(rss pgbr-restore-disk)")   $(printf '%10s' "$(rss pgproof-restore-disk)")
REPORT
}

pgbench_data() { as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1; }
random_data() {
  psql_c "CREATE EXTENSION IF NOT EXISTS pgcrypto" >/dev/null
  psql_c "CREATE TABLE noise AS SELECT gen_random_bytes(1000) AS b FROM generate_series(1, $RANDOM_MB * 1000)" >/dev/null
}

run_dataset pgbench pgbench_data
run_dataset random random_data
