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
