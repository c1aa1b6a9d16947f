#!/usr/bin/env bash
# The main job of pgproof on a local filesystem repository, start to finish:
# a throwaway PostgreSQL cluster archives its WAL through `pgproof wal-push`,
# `pgproof backup-push` takes a base backup, someone drops a table by
# mistake, and `pgproof restore --target-time` brings back the moment before
# it, replaying the archive through `pgproof wal-fetch`: the table is back.
# Last, `pgproof prove` restores the backup once more into a scratch
# directory, starts PostgreSQL on it, runs its checks and records the proof,
# which `pgproof status` then shows: an untested backup is not a backup.
#
# Runs on Debian with Rust; installs PostgreSQL 15 if it is missing. Uses
# /tmp/pgproof-demo, ports picked at random, and removes nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${PGPROOF_DEMO_DIR:-/tmp/pgproof-demo}
PG_BIN=/usr/lib/postgresql/15/bin

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ ! -x "$PG_BIN/postgres" ]; then
  say "installing PostgreSQL 15 from Debian"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi
fi

say "building pgproof"
cargo build --quiet --manifest-path "$root/Cargo.toml"

for d in "$work/source" "$work/restored"; do
  [ -f "$d/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$d" -m immediate stop >/dev/null 2>&1 || true
done
rm -rf "$work"
mkdir -p "$work/repo" "$work/sock"
install -m 755 "$root/target/debug/pgproof" "$work/pgproof"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"
pgproof="$work/pgproof --repo file://$work/repo --cluster demo"
port=$(free_port)
sql() { as_pg "$PG_BIN/psql" -h "$work/sock" -p "$1" -U postgres -d postgres -qAtX -c "$2"; }

say "a throwaway cluster on port $port, archiving through: $pgproof wal-push %p"
as_pg "$PG_BIN/initdb" -D "$work/source" -U postgres --auth=trust >/dev/null
cat >>"$work/source/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$work/sock'
listen_addresses = ''
archive_mode = on
archive_command = '$pgproof wal-push %p'
log_min_messages = info
CONF
as_pg "$PG_BIN/pg_ctl" -D "$work/source" -l "$work/source.log" -w start >/dev/null
say "is everything in place? $pgproof check"
as_pg env PGUSER=postgres $pgproof --pgdata "$work/source" check
sql "$port" "CREATE TABLE accounts AS SELECT g AS id, 100 * g AS balance FROM generate_series(1, 10000) g"
echo "created table accounts: $(sql "$port" "SELECT count(*) FROM accounts") rows"

say "a base backup: $pgproof backup-push $work/source"
as_pg env PGUSER=postgres $pgproof backup-push "$work/source" --fast

say "more work, then the mistake"
sql "$port" "UPDATE accounts SET balance = balance + 1 WHERE id <= 100"
sleep 1
before=$(sql "$port" "SELECT now()")
sleep 1
sql "$port" "DROP TABLE accounts"
echo "at $before all was well; a second later someone ran: DROP TABLE accounts"
last=$(sql "$port" "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(sql "$port" "SELECT last_archived_wal FROM pg_stat_archiver")" \> "$last" ] ||
      [ "$(sql "$port" "SELECT last_archived_wal FROM pg_stat_archiver")" = "$last" ]; do sleep 0.2; done
echo "the archiver has pushed everything up to $last:"
grep 'pgproof wal-push' "$work/source.log" | sed 's/^/  /'
say "how protected is it? $pgproof status"
$pgproof status || true

say "point-in-time restore: $pgproof restore $work/restored --target-time '$before'"
$pgproof backup-list
as_pg $pgproof restore "$work/restored" --target-time "$before" --target-action promote
restored_port=$(free_port)
cat >>"$work/restored/postgresql.conf" <<CONF
port = $restored_port
archive_mode = off
CONF
as_pg "$PG_BIN/pg_ctl" -D "$work/restored" -l "$work/restored.log" -w start >/dev/null
until [ "$(sql "$restored_port" "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; do sleep 0.2; done
grep -E 'pgproof wal-fetch|recovery stopping|archive recovery complete' "$work/restored.log" | sed 's/^/  /'

say "the table is back"
sql "$restored_port" "SELECT count(*) AS rows, sum(balance) AS total FROM accounts" | sed 's/^/  rows|total: /'

as_pg "$PG_BIN/pg_ctl" -D "$work/restored" -m fast -w stop >/dev/null

say "prove the backup: $pgproof prove --scratch $work"
as_pg env PGUSER=postgres $pgproof prove --scratch "$work" \
  --sql "SELECT count(*) FROM pg_database" --expect 3

say "status now shows the proof: $pgproof status"
$pgproof status || true

as_pg "$PG_BIN/pg_ctl" -D "$work/source" -m fast -w stop >/dev/null
say "done: the repository is $work/repo/demo; both clusters are stopped"
