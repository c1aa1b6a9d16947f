#!/usr/bin/env bash
# pgproof wal-push against pgBackRest archive-push, on the same real WAL
# segments, in one run. Both compress with zstd level $LEVEL into a
# filesystem repository on the same disk, one call per segment as
# archive_command makes them, with a warm page cache. Three ways are timed:
# pgBackRest archive-push, pgproof wal-push one at a time (--push-ahead 0),
# and pgproof catching up a backlog (every segment already .ready, default
# push-ahead). $ROUNDS rounds, each into fresh repositories, the order
# reversed every other round (pgBackRest, pgproof, backlog; then backlog,
# pgproof, pgBackRest) so no way always runs first. Prints every round's
# figures (ms per segment, CPU%, peak RSS, stored size), the medians, the
# ratios and one "RESULT key=value ..." line to compare runs by.
#
#   bash bench/wal-push.sh            # 40 segments, 3 rounds
#   SEGMENTS=64 ROUNDS=5 bash bench/wal-push.sh
#
# Knobs: SEGMENTS (40), ROUNDS (3), LEVEL (zstd level, 1), BENCH_DIR
# (/tmp/pgproof-bench; this script works in $BENCH_DIR/wal-push, removed at
# the start). Runs as root (PostgreSQL and both tools run as the postgres
# user) or as a user that can run PostgreSQL itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SEGMENTS=${SEGMENTS:-40}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-1}
work=${BENCH_DIR:-/tmp/pgproof-bench}/wal-push
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }

bash "$root/scripts/install-test-deps.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

stop_cluster() {
  [ -f "$work/pgdata/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null 2>&1
  return 0
}
stop_cluster
trap stop_cluster EXIT
trap 'exit 130' INT TERM
rm -rf "$work"
mkdir -p "$work"
chmod 755 "$work"
install -m 755 "${CARGO_TARGET_DIR:-$root/target}/release/pgproof" "$work/pgproof"
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

mkdir -p "$work/pgbackrest/log" "$work/pgbackrest/lock" "$work/pgbackrest/empty-repo"
cat >"$work/pgbackrest.conf" <<CONF
[global]
repo1-path=$work/pgbackrest/repo
log-path=$work/pgbackrest/log
lock-path=$work/pgbackrest/lock
compress-type=zst
compress-level=$LEVEL
process-max=2
log-level-console=warn
log-level-file=off

[bench]
pg1-path=$PGDATA_DIR
pg1-socket-path=$PG_SOCK
pg1-port=$PG_PORT
CONF
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"
# stanza-create needs the server; each round starts from a copy of the
# repository it leaves, so the server can be stopped for the measurement.
as_pg pgbackrest --config="$work/pgbackrest.conf" --repo1-path="$work/pgbackrest/empty-repo" --stanza=bench stanza-create >/dev/null
pg_stop

mapfile -t segs < <(find "$work/segments" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9A-F]{24}' -printf '%f\n' | sort | tail -n "$SEGMENTS")
if [ "${#segs[@]}" -lt "$SEGMENTS" ]; then
  echo "only ${#segs[@]} segments were generated" >&2
  exit 1
fi
cat "${segs[@]/#/$work/segments/}" >/dev/null
n=${#segs[@]}
printf '%s\n' "${segs[@]}" >"$work/segments.list"

# Each loop runs in one shell of the unprivileged user, as the archiver
# would call the tool: no per-call user switching in the measurement.
cat >"$work/loop.sh" <<'LOOP'
set -euo pipefail
work=$1 mode=$2 level=$3
cd "$work/segments"
while read -r s; do
  case $mode in
    pgbackrest) pgbackrest --config="$work/pgbackrest.conf" --stanza=bench archive-push "$work/segments/$s" ;;
    pgproof) "$work/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
               --pgdata "$work/pgdata" --compression "zstd:$level" -q --push-ahead 0 wal-push "$s" ;;
    backlog) "$work/pgproof" --repo "file://$work/pgproof-repo-ahead" --cluster bench \
               --pgdata "$work/pgdata" --compression "zstd:$level" -q wal-push "$s"
             mv "archive_status/$s.ready" "archive_status/$s.done" ;;
  esac
done <"$work/segments.list"
LOOP

as_pg_argv=()
[ "$(id -u)" = 0 ] && as_pg_argv=(runuser -u postgres --)

# fresh MODE: an empty repository for MODE (and, for the backlog, every
# segment marked .ready, as PostgreSQL leaves them when the archiver is
# behind; the loop marks each one .done after its call returns, as
# PostgreSQL does). Prints the directory whose size is the stored size.
fresh() {
  case $1 in
    pgbackrest)
      rm -rf "$work/pgbackrest/repo"
      cp -a "$work/pgbackrest/empty-repo" "$work/pgbackrest/repo"
      echo "$work/pgbackrest/repo/archive" ;;
    pgproof)
      rm -rf "$work/pgproof-repo"
      as_pg mkdir "$work/pgproof-repo"
      echo "$work/pgproof-repo/bench/wal" ;;
    backlog)
      rm -rf "$work/pgproof-repo-ahead" "$work/segments/archive_status"
      as_pg mkdir "$work/pgproof-repo-ahead" "$work/segments/archive_status"
      (cd "$work/segments/archive_status" && printf '%s.ready\0' "${segs[@]}" | as_pg xargs -0 touch)
      echo "$work/pgproof-repo-ahead/bench/wal" ;;
  esac
}

# One line per run in $work/runs: "round mode ms elapsed_s user_s sys_s
# maxrss_kib stored_bytes". /usr/bin/time covers the whole loop: CPU counts
# every call (and the loop's own shell, a few ms); peak RSS is that of the
# largest single process among them, i.e. the tool's largest call.
: >"$work/runs"
echo "pushing $n segments ($((n * 16)) MiB) with each tool, $ROUNDS rounds" >&2
for round in $(seq 1 "$ROUNDS"); do
  modes="pgbackrest pgproof backlog"
  [ $((round % 2)) = 0 ] && modes="backlog pgproof pgbackrest"
  for mode in $modes; do
    stored_dir=$(fresh "$mode")
    # No writeback of the previous run left for this one to pay for.
    sync
    t0=$(now_ms)
    if ! /usr/bin/time -o "$work/time" -f '%e %U %S %M' "${as_pg_argv[@]}" bash "$work/loop.sh" "$work" "$mode" "$LEVEL" >"$work/out" 2>&1; then
      echo "round $round, $mode failed:" >&2
      cat "$work/out" "$work/time" >&2
      exit 1
    fi
    ms=$(($(now_ms) - t0))
    echo "$round $mode $ms $(tail -n 1 "$work/time") $(du -sb "$stored_dir" | cut -f1)" >>"$work/runs"
    echo "  round $round $mode: $ms ms" >&2
  done
done

python3 - "$work/runs" "$n" "$LEVEL" "$ROUNDS" "$(pgbackrest version | cut -d' ' -f2)" <<'PY'
import sys
from statistics import median

runs_path, n, level, rounds, pgbr_version = sys.argv[1:]
n = int(n)
names = {
    "pgbackrest": f"pgBackRest {pgbr_version} archive-push",
    "pgproof": "pgproof wal-push, one at a time",
    "backlog": "pgproof wal-push, backlog (push-ahead 4)",
}
runs = []
for line in open(runs_path):
    rnd, mode, ms, e, u, s, m, stored = line.split()
    cpu = 100 * (float(u) + float(s)) / float(e) if float(e) else 0.0
    runs.append(dict(round=int(rnd), mode=mode, ms=int(ms), cpu=cpu, rss=int(m), stored=int(stored)))

print(f"\nwal-push benchmark: {n} segments of pgbench WAL (16 MiB each), zstd level {level}, "
      f"filesystem repository, warm cache, {rounds} rounds")
print(f"{'round':>5}  {'':<42}{'total ms':>9}  {'ms/segment':>10}  {'CPU%':>5}  {'peak RSS MiB':>12}  {'stored MiB':>10}")
for r in runs:
    print(f"{r['round']:>5}  {names[r['mode']]:<42}{r['ms']:>9}  {r['ms'] / n:>10.1f}  {r['cpu']:>5.0f}"
          f"  {r['rss'] / 1024:>12.1f}  {r['stored'] / 2**20:>10.1f}")

def med(mode, key):
    return median(r[key] for r in runs if r["mode"] == mode)

print(f"\nmedians{'':<37}{'ms/segment':>10}  {'CPU%':>5}  {'peak RSS MiB':>12}  {'stored MiB':>10}")
for mode in ("pgbackrest", "pgproof", "backlog"):
    print(f"{'':<7}{names[mode]:<42}{med(mode, 'ms') / n:>10.1f}  {med(mode, 'cpu'):>5.0f}"
          f"  {med(mode, 'rss') / 1024:>12.1f}  {med(mode, 'stored') / 2**20:>10.1f}")

def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"

one = ratio(med("pgbackrest", "ms"), med("pgproof", "ms"))
ahead = ratio(med("pgbackrest", "ms"), med("backlog", "ms"))
print(f"\nspeed ratio, pgBackRest time / pgproof time (median): one at a time {one}x, backlog {ahead}x")
print(f"stored size ratio, pgproof / pgBackRest: {ratio(med('pgproof', 'stored'), med('pgbackrest', 'stored'))}")
fields = dict(
    segments=n, level=level, rounds=rounds, one_ratio=one, backlog_ratio=ahead,
    pgbr_ms_per_seg=f"{med('pgbackrest', 'ms') / n:.1f}",
    pgproof_ms_per_seg=f"{med('pgproof', 'ms') / n:.1f}",
    backlog_ms_per_seg=f"{med('backlog', 'ms') / n:.1f}",
    pgbr_cpu=round(med("pgbackrest", "cpu")), pgproof_cpu=round(med("pgproof", "cpu")),
    backlog_cpu=round(med("backlog", "cpu")),
    pgbr_rss_kib=round(med("pgbackrest", "rss")), pgproof_rss_kib=round(med("pgproof", "rss")),
    backlog_rss_kib=round(med("backlog", "rss")),
    pgbr_stored=round(med("pgbackrest", "stored")), pgproof_stored=round(med("pgproof", "stored")),
)
print("RESULT bench=wal-push " + " ".join(f"{k}={v}" for k, v in fields.items()))
PY
