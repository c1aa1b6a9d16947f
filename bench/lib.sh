# shellcheck shell=bash
# Shared helpers for the benchmarks: a throwaway PostgreSQL 15 cluster run as
# the unprivileged user, and timing in milliseconds.

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# new_cluster DIR: initdb into DIR/pgdata with a private socket directory;
# sets PGDATA_DIR, PG_SOCK and PG_PORT.
new_cluster() {
  local dir=$1
  PGDATA_DIR=$dir/pgdata
  PG_SOCK=$dir/sock
  PG_PORT=$(free_port)
  mkdir -p "$PG_SOCK"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir" "$PG_SOCK"
  as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
  cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
listen_addresses = ''
max_wal_size = 8GB
checkpoint_timeout = 1h
wal_level = replica
CONF
}

pg_start() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/../server.log" -w start >/dev/null; }
pg_stop() { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >/dev/null; }
psql_c() { as_pg "$PG_BIN/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -qAtX -c "$1"; }

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else '-')" "$1" "$2"; }

# What bench/backup.sh and bench/incremental.sh share: they set $work,
# $base and ARCHIVE_WAIT_S first.

as_pg_argv=()
[ "$(id -u)" = 0 ] && as_pg_argv=(runuser -u postgres --)

# timed ROUND TOOL OP CMD...: runs CMD as the postgres user and appends
# "round tool op ms elapsed_s user_s sys_s maxrss_kib" to $work/runs.
# ms is the wall time from just before the command until it returned (and,
# with TIMED_SYNC=1, until the sync after it returned); elapsed, user and
# sys are /usr/bin/time's for the command alone, and they include every
# child the command waited for (pgBackRest's helper processes). Peak RSS
# (%M) is the largest single process, not a sum: for pgBackRest, which
# runs one process per job plus the main one, it understates its total.
timed() {
  local round=$1 tool=$2 op=$3; shift 3
  local name="$round-$tool-$op"
  # Each step starts with no dirty data of the previous one still being
  # written back, so neither tool pays for the other's writes.
  sync
  local t0; t0=$(now_ms)
  if ! /usr/bin/time -o "$work/$name.time" -f '%e %U %S %M' "${as_pg_argv[@]}" "$@" >"$work/$name.out" 2>&1; then
    echo "$name failed:" >&2
    cat "$work/$name.out" "$work/$name.time" >&2
    exit 1
  fi
  # A restore counts until its files are on disk: pgBackRest syncs each
  # file as it goes, so without this the figure would only say how much
  # writeback the kernel happened to leave for later.
  if [ "${TIMED_SYNC:-}" = 1 ]; then sync; fi
  local ms=$(($(now_ms) - t0))
  echo "$round $tool $op $ms $(tail -n 1 "$work/$name.time")" >>"$work/runs"
  local e u s m
  read -r e u s m <"$work/$name.time"
  printf "  round %s %-7s %-${TIMED_OP_WIDTH:-7}s %7d ms  CPU %s%%  peak RSS %s MiB\n" "$round" "$tool" "$op" "$ms" \
    "$(python3 -c "import sys; e,c=float(sys.argv[1]),float(sys.argv[2])+float(sys.argv[3]); print(f'{100*c/e:.0f}' if e else '-')" "$e" "$u" "$s")" \
    "$((m >> 10))" >&2
}

server_log_tail() { echo "--- last lines of $work/server.log:" >&2; tail -n 30 "$work/server.log" >&2; }

# archiver_caught_up: CHECKPOINT, switch WAL, and wait until the archiver has
# stored the segment switched from and no file is left .ready. Fails on any
# failed archive_command: in this benchmark both tools must always succeed,
# and the archiver's retry pauses would distort the next backup.
archiver_caught_up() {
  psql_c "CHECKPOINT" >/dev/null
  local target t0 row reached failed last_failed ready backlog
  target=$(psql_c "SELECT pg_walfile_name(pg_switch_wal())")
  t0=$(now_ms)
  backlog=$(psql_c "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
  while :; do
    # String order is WAL order for segment names (and a .backup history
    # file sorts after its segment); COLLATE "C" so no locale reorders them.
    row=$(psql_c "SELECT coalesce(last_archived_wal >= '$target' COLLATE \"C\", false), failed_count,
                         coalesce(last_failed_wal, ''),
                         (SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready')
                  FROM pg_stat_archiver")
    IFS="|" read -r reached failed last_failed ready <<<"$row"
    if [ "$failed" != 0 ]; then
      echo "archiving failed ($failed times, last $last_failed): see archive_command's output below" >&2
      server_log_tail
      exit 1
    fi
    [ "$reached" = t ] && [ "$ready" = 0 ] && break
    if [ $(($(now_ms) - t0)) -gt $((ARCHIVE_WAIT_S * 1000)) ]; then
      echo "the archiver did not reach $target within ${ARCHIVE_WAIT_S}s ($ready files still .ready)" >&2
      server_log_tail
      exit 1
    fi
    sleep 0.1
  done
  echo "  archiver caught up to $target in $(($(now_ms) - t0)) ms ($backlog .ready after the switch)" >&2
}

# two_tool_cluster: a new cluster in $work archiving every segment through
# pgBackRest (stanza "bench", zstd level $LEVEL, $JOBS processes) and then
# pgproof (cluster "bench"), both into repositories under $work; started,
# the stanza created.
two_tool_cluster() {
  new_cluster "$work"
  mkdir -p "$work/pgbackrest/repo" "$work/pgbackrest/log" "$work/pgbackrest/lock" "$work/pgproof-repo"
  cat >"$work/pgbackrest.conf" <<CONF
[global]
repo1-path=$work/pgbackrest/repo
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
compress-type=zst
compress-level=$LEVEL
process-max=$JOBS
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
archive_command = 'pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p && $base/pgproof --repo file://$work/pgproof-repo --cluster bench --compression zstd:$LEVEL -q wal-push %p'
CONF
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"
  pg_start
  # Before any segment is archived: without the stanza pgBackRest's
  # archive-push fails and the archiver backs off.
  as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
}
