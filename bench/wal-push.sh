#!/usr/bin/env bash
# pgproof wal-push against pgBackRest archive-push, on the same real WAL
# segments, in one run. Both compress with zstd level 1 into a filesystem
# repository on the same disk, one call per segment as archive_command makes
# them, with a warm page cache. Prints milliseconds per segment, repository
# sizes, peak memory of one call, and the ratios.
#
#   bash bench/wal-push.sh            # 40 segments
#   SEGMENTS=64 bash bench/wal-push.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SEGMENTS=${SEGMENTS:-40}
work=${BENCH_DIR:-/tmp/pgproof-bench}/wal-push

bash "$root/scripts/install-test-deps.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

as_pg "$PG_BIN/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"
install -m 755 "$root/target/release/pgproof" "$work/pgproof"
new_cluster "$work"
# The archiver copies each completed segment aside: these are the test data.
mkdir -p "$work/segments"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/segments"
cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
archive_mode = on
archive_command = 'cp %p $work/segments/%f'
CONF
pg_start

echo "generating WAL: pgbench initialisation and a short read-write run" >&2
as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -s 60 -q postgres >/dev/null 2>&1
as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -c 4 -j 2 -T 15 -N postgres >/dev/null 2>&1
last=$(psql_c "SELECT pg_walfile_name(pg_switch_wal())")
until [ "$(psql_c "SELECT last_archived_wal FROM pg_stat_archiver")" = "$last" ]; do sleep 0.2; done

mkdir -p "$work/pgbackrest/repo" "$work/pgbackrest/log" "$work/pgbackrest/lock" "$work/pgbackrest/spool"
cat >"$work/pgbackrest.conf" <<CONF
[global]
repo1-path=$work/pgbackrest/repo
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
spool-path=$work/pgbackrest/spool
compress-type=zst
compress-level=1
process-max=2
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$PG_SOCK
pg1-port=$PG_PORT
CONF
mkdir -p "$work/pgproof-repo" "$work/pgproof-repo-ahead"
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"
as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
pg_stop

mapfile -t segs < <(ls "$work/segments" | grep -E '^[0-9A-F]{24}$' | sort | tail -n "$SEGMENTS")
if [ "${#segs[@]}" -lt "$SEGMENTS" ]; then
  echo "only ${#segs[@]} segments were generated" >&2
  exit 1
fi
cat "${segs[@]/#/$work/segments/}" >/dev/null
bytes=$(( ${#segs[@]} * 16 * 1024 * 1024 ))

cd "$work/segments"
pgproof_push() { as_pg "$work/pgproof" --repo "file://$1" --cluster bench --pgdata "$PGDATA_DIR" --compression zstd:1 -q "${@:2}"; }

echo "pushing ${#segs[@]} segments ($((bytes >> 20)) MiB) with each tool" >&2
printf '%s\n' "${segs[@]}" >"$work/segments.list"
# Each loop runs in one shell of the unprivileged user, as the archiver
# would call the tool: no per-call user switching in the measurement. The
# first call of each tool also records its peak memory (KiB).
cat >"$work/loop.sh" <<'LOOP'
set -euo pipefail
work=$1 mode=$2
cd "$work/segments"
first=$(head -1 "$work/segments.list")
while read -r s; do
  rss=/dev/null; [ "$s" = "$first" ] && rss=$work/$mode.rss
  case $mode in
    pgbackrest) /usr/bin/time -o "$rss" -f %M pgbackrest --config="$work/pgbackrest.conf" --stanza=bench archive-push "$work/segments/$s" ;;
    pgproof) /usr/bin/time -o "$rss" -f %M "$work/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
               --pgdata "$work/pgdata" --compression zstd:1 -q --push-ahead 0 wal-push "$s" ;;
    backlog) "$work/pgproof" --repo "file://$work/pgproof-repo-ahead" --cluster bench \
               --pgdata "$work/pgdata" --compression zstd:1 -q wal-push "$s"
             mv "archive_status/$s.ready" "archive_status/$s.done" ;;
  esac
done <"$work/segments.list"
LOOP
timed() { local t0; t0=$(now_ms); as_pg bash "$work/loop.sh" "$work" "$1"; echo $(( $(now_ms) - t0 )); }
pgbr_ms=$(timed pgbackrest)
pgproof_ms=$(timed pgproof)
# An archiver catching up: every segment is already marked .ready, and
# PostgreSQL marks each one .done after its call returns.
as_pg mkdir -p archive_status
for s in "${segs[@]}"; do as_pg touch "archive_status/$s.ready"; done
ahead_ms=$(timed backlog)

pgbr_rss=$(cat "$work/pgbackrest.rss")
pgproof_rss=$(cat "$work/pgproof.rss")

pgbr_size=$(du -sb "$work/pgbackrest/repo/archive" | cut -f1)
pgproof_size=$(du -sb "$work/pgproof-repo/bench/wal" | cut -f1)
n=${#segs[@]}
per() { python3 -c "print(f'{$1/$n:.1f}')"; }

cat <<REPORT

wal-push benchmark: $n segments of pgbench WAL (16 MiB each), zstd level 1, filesystem repository, warm cache
                                   total ms   ms/segment   stored MiB   peak RSS KiB
pgBackRest $(pgbackrest version | cut -d' ' -f2) archive-push        $(printf '%8d' "$pgbr_ms")   $(printf '%10s' "$(per "$pgbr_ms")")   $(printf '%10s' "$((pgbr_size >> 20))")   $(printf '%12s' "$pgbr_rss")
pgproof wal-push (one at a time)  $(printf '%8d' "$pgproof_ms")   $(printf '%10s' "$(per "$pgproof_ms")")   $(printf '%10s' "$((pgproof_size >> 20))")   $(printf '%12s' "$pgproof_rss")
pgproof wal-push (backlog, push-ahead 4) $(printf '%4d' "$ahead_ms")   $(printf '%9s' "$(per "$ahead_ms")")

speed ratio, pgBackRest time / pgproof time: one at a time $(ratio "$pgbr_ms" "$pgproof_ms")x, backlog $(ratio "$pgbr_ms" "$ahead_ms")x
stored size ratio, pgproof / pgBackRest: $(ratio "$pgproof_size" "$pgbr_size")
REPORT
