#!/usr/bin/env bash
# What a backup costs a read load running beside it, and what
# `backup-push --max-rate` buys back (issue 15). One PostgreSQL 15 cluster,
# pgbench -i at scale $SCALE (20: about 300 MB), like for like:
#   - the load: `pgbench -S` (select-only), $CLIENTS clients on $THREADS
#     threads, for $LOAD_S seconds per phase, every transaction logged
#     (-l); the backup starts $LEAD_S seconds into it. A phase's figures
#     are those of the transactions that ended while its backup ran (for
#     "none", the same window after the same lead with no backup), so
#     every phase is measured over its own backup and nothing else;
#   - the phases: no backup; pgproof without a limit; pgproof at
#     --max-rate $MAX_RATE; pgBackRest, which has no rate limit of any kind
#     (2.45 has none for reads or uploads; its only lever is process-max),
#     so it is measured as it is;
#   - both tools zstd at level $LEVEL, $JOBS processes (pgBackRest
#     process-max, pgproof --jobs), fast start checkpoint, a filesystem
#     repository on the same disk, warm page cache; archive_command pushes
#     every segment through both, the tool about to be timed first (each
#     backup waits for its own push of the stop segment only);
#   - before every phase: CHECKPOINT, a WAL switch, a wait until the archiver
#     has stored everything with nothing left .ready, then sync
#     (bench/lib.sh), so that no backup waits behind a backlog;
#   - $ROUNDS rounds, the phases' order rotated every round;
#   - per phase: load tps and p99 latency, their ratios to "none" (tps: 1 =
#     no cost; p99: 1 = no cost), the backup's wall time, CPU% and peak RSS,
#     and the read rate achieved (the data directory's bytes over the
#     backup's time; for the limited run also pgproof's own count of what
#     it read) against the cap. Every round, then medians, then a
#     "RESULT key=value ..." line.
#
#   bash bench/max-rate.sh
#   SCALE=50 MAX_RATE=100MB ROUNDS=5 bash bench/max-rate.sh
#
# Knobs: SCALE (20), MAX_RATE (50MB), ROUNDS (3), LEVEL (zstd level, 1),
# JOBS (2), CLIENTS (2), THREADS (2), LOAD_S (20), LEAD_S (3), PGPROOF_BIN
# (a pgproof binary to use instead of building the release one), BENCH_DIR
# (/tmp/pgproof-bench; this script works in $BENCH_DIR/max-rate, removed at
# the start), ARCHIVE_WAIT_S (600).
# Runs as root (PostgreSQL, pgbench and both tools run as the postgres user)
# or as a user that can run PostgreSQL itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SCALE=${SCALE:-20}
MAX_RATE=${MAX_RATE:-50MB}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-1}
JOBS=${JOBS:-2}
CLIENTS=${CLIENTS:-2}
THREADS=${THREADS:-2}
LOAD_S=${LOAD_S:-20}
LEAD_S=${LEAD_S:-3}
ARCHIVE_WAIT_S=${ARCHIVE_WAIT_S:-600}
base=${BENCH_DIR:-/tmp/pgproof-bench}/max-rate
work=$base/run

[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }

bash "$root/scripts/install-test-deps.sh" >/dev/null
if [ -z "${PGPROOF_BIN:-}" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml"
  PGPROOF_BIN=${CARGO_TARGET_DIR:-$root/target}/release/pgproof
fi

stop_cluster() {
  [ -f "$work/pgdata/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$work/pgdata" -m immediate stop >/dev/null 2>&1
  return 0
}
stop_cluster
trap stop_cluster EXIT
trap 'exit 130' INT TERM
rm -rf "$base"
mkdir -p "$work"
chmod 755 "$base"
install -m 755 "$PGPROOF_BIN" "$base/pgproof"
"$base/pgproof" --version >&2 || true

# The tool about to be timed pushes each segment first (see bench/backup.sh).
archive_first() {
  local pgbr="pgbackrest --config=$work/pgbackrest.conf --stanza=bench archive-push %p"
  local pgproof="$base/pgproof --repo file://$work/pgproof-repo --cluster bench --compression zstd:$LEVEL -q wal-push %p"
  local command
  if [ "$1" = pgbr ]; then command="$pgbr && $pgproof"; else command="$pgproof && $pgbr"; fi
  psql_c "ALTER SYSTEM SET archive_command = '$command'" >/dev/null
  psql_c "SELECT pg_reload_conf()" >/dev/null
}

phases=(none pgproof pgproof-capped pgbr)
# The phases of round ROUND: rotated by one each round.
order() {
  local r=$1 i n=${#phases[@]} out=()
  for i in $(seq 0 $((n - 1))); do out+=("${phases[$(((i + r - 1) % n))]}"); done
  echo "${out[@]}"
}

epoch() { date +%s.%N; }

# phase ROUND NAME: the load, and NAME's backup in it; appends
# "round name t_start t_end" to $work/windows.
phase() {
  local round=$1 name=$2 prefix="$work/lat-$1-$2" t0 t1 load
  case $name in pgbr) archive_first pgbr ;; *) archive_first pgproof ;; esac
  archiver_caught_up
  sync
  as_pg pgbench -h "$PG_SOCK" -p "$PG_PORT" -U postgres -n -S -c "$CLIENTS" -j "$THREADS" -T "$LOAD_S" \
    -l --log-prefix="$prefix" postgres >"$work/load-$round-$name.out" 2>&1 &
  load=$!
  sleep "$LEAD_S"
  t0=$(epoch)
  case $name in
    none)
      # The same window as a backup would have, with none: the median
      # pgproof unlimited time is not known yet, so a fixed few seconds.
      sleep 3
      ;;
    pgproof)
      timed "$round" pgproof backup env PGUSER=postgres "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
        --compression "zstd:$LEVEL" backup-push "$PGDATA_DIR" --fast --jobs "$JOBS"
      ;;
    pgproof-capped)
      timed "$round" capped backup env PGUSER=postgres "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
        --compression "zstd:$LEVEL" backup-push "$PGDATA_DIR" --fast --jobs "$JOBS" --max-rate "$MAX_RATE"
      ;;
    pgbr)
      timed "$round" pgbr backup pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --type=full backup
      ;;
  esac
  t1=$(epoch)
  if ! wait "$load"; then
    echo "pgbench failed in round $round, phase $name:" >&2
    cat "$work/load-$round-$name.out" >&2
    exit 1
  fi
  if [ "$(python3 -c "import sys; print(int(float(sys.argv[2]) - float(sys.argv[1]) + $LEAD_S + 1 >= $LOAD_S))" "$t0" "$t1")" = 1 ]; then
    echo "round $round, $name: the backup outlasted the load ($LOAD_S s); raise LOAD_S" >&2
    exit 1
  fi
  echo "$round $name $t0 $t1" >>"$work/windows"
}

: >"$work/runs"
: >"$work/windows"
two_tool_cluster
echo "loading pgbench scale $SCALE" >&2
as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1
psql_c "VACUUM ANALYZE" >/dev/null
cat "$PGDATA_DIR"/base/*/* >/dev/null 2>&1 || true
# What a backup reads: the data directory less pg_wal (neither tool copies it).
db_bytes=$(du -sb --exclude=pg_wal "$PGDATA_DIR" | cut -f1)
echo "data directory without pg_wal: $((db_bytes >> 20)) MiB" >&2

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: $(order "$round")" >&2
  for name in $(order "$round"); do
    phase "$round" "$name"
  done
done
archiver_caught_up

python3 - "$work" "$db_bytes" "$MAX_RATE" "$LEVEL" "$JOBS" "$CLIENTS" "$THREADS" "$SCALE" "$ROUNDS" <<'PY'
import glob, re, sys
from statistics import median

work, db_bytes, max_rate, level, jobs, clients, threads, scale, rounds = sys.argv[1:]
db_bytes = int(db_bytes)

def parse_rate(text):
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?)B?(/s)?\s*", text, re.I)
    if not m:
        return None
    mult = {"": 1, "K": 1, "M": 2, "G": 3, "T": 4}[m.group(2).upper()]
    return float(m.group(1)) * ((1024 if m.group(3) else 1000) ** mult)

cap = parse_rate(max_rate)
names = {"none": "no backup", "pgproof": "pgproof", "pgproof-capped": f"pgproof {max_rate}", "pgbr": "pgBackRest"}
tool_of = {"pgproof": "pgproof", "pgproof-capped": "capped", "pgbr": "pgbr"}

runs = {}
for line in open(f"{work}/runs"):
    rnd, tool, op, ms, e, u, s, m = line.split()
    cpu = 100 * (float(u) + float(s)) / float(e) if float(e) else 0.0
    runs[(int(rnd), tool)] = dict(ms=int(ms), cpu=cpu, rss=int(m))

rows = []
for line in open(f"{work}/windows"):
    rnd, name, t0, t1 = line.split()
    rnd, t0, t1 = int(rnd), float(t0), float(t1)
    lat = []
    for path in glob.glob(f"{work}/lat-{rnd}-{name}.*"):
        for entry in open(path):
            f = entry.split()
            # client txno latency_us script epoch_s epoch_us
            end = int(f[4]) + int(f[5]) / 1e6
            if t0 <= end <= t1:
                lat.append(int(f[2]) / 1000.0)
    lat.sort()
    n = len(lat)
    p99 = lat[min(n - 1, int(0.99 * n))] if n else float("nan")
    row = dict(round=rnd, name=name, tps=n / (t1 - t0), p99=p99, window=t1 - t0, n=n)
    run = runs.get((rnd, tool_of.get(name)))
    if run:
        row.update(run)
        row["rate"] = db_bytes / (run["ms"] / 1000.0)
    if name == "pgproof-capped":
        out = open(f"{work}/{rnd}-capped-backup.out").read()
        m = re.search(r"read ([0-9.]+) (B|KiB|MiB|GiB) in .*?: ([0-9.]+) MB/s, (\d+)% of the limit", out)
        if m:
            row["own_rate"] = float(m.group(3)) * 1e6
    rows.append(row)

print(f"\npgbench scale {scale}, data directory {db_bytes / 2**20:.0f} MiB; load: pgbench -S, {clients} clients, {threads} threads;"
      f" zstd level {level}, {jobs} processes per tool; {rounds} rounds")
print(f"{'round':>5}  {'phase':<18} {'window s':>8} {'load tps':>9} {'p99 ms':>7} {'backup ms':>9} {'CPU%':>5} {'RSS MiB':>7} {'read MB/s':>9}")
for r in sorted(rows, key=lambda r: (r["round"], list(names).index(r["name"]))):
    b = f"{r['ms']:>9} {r['cpu']:>5.0f} {r['rss'] / 1024:>7.1f} {r['rate'] / 1e6:>9.1f}" if "ms" in r else f"{'':>9} {'':>5} {'':>7} {'':>9}"
    print(f"{r['round']:>5}  {names[r['name']]:<18} {r['window']:>8.2f} {r['tps']:>9.0f} {r['p99']:>7.2f} {b}")

def med(name, key):
    vals = [r[key] for r in rows if r["name"] == name and key in r]
    return median(vals) if vals else float("nan")

base_tps, base_p99 = med("none", "tps"), med("none", "p99")
print(f"\nmedians{'':<13} {'load tps':>9} {'tps/none':>8} {'p99 ms':>7} {'p99/none':>8} {'backup ms':>9} {'CPU%':>5} {'read MB/s':>9}")
for name in names:
    tps, p99 = med(name, "tps"), med(name, "p99")
    b = f"{med(name, 'ms'):>9.0f} {med(name, 'cpu'):>5.0f} {med(name, 'rate') / 1e6:>9.1f}" if name != "none" else ""
    print(f"{names[name]:<20} {tps:>9.0f} {tps / base_tps:>8.2f} {p99:>7.2f} {p99 / base_p99:>8.2f} {b}")
own = med("pgproof-capped", "own_rate")
if cap:
    print(f"\npgproof at --max-rate {max_rate}: {med('pgproof-capped', 'rate') / 1e6:.1f} MB/s over the whole backup"
          f" (start checkpoint and WAL wait included), {own / 1e6:.1f} MB/s while copying by its own count:"
          f" {own / cap:.2f} of the cap")
print("pgBackRest 2.45 has no rate limit; it ran as it is (process-max only).")
fields = dict(
    scale=scale, rounds=rounds, level=level, jobs=jobs, clients=clients, max_rate=max_rate,
    none_tps=round(base_tps), none_p99_ms=round(base_p99, 2),
    pgproof_tps_ratio=round(med("pgproof", "tps") / base_tps, 2),
    pgproof_p99_ratio=round(med("pgproof", "p99") / base_p99, 2),
    capped_tps_ratio=round(med("pgproof-capped", "tps") / base_tps, 2),
    capped_p99_ratio=round(med("pgproof-capped", "p99") / base_p99, 2),
    pgbr_tps_ratio=round(med("pgbr", "tps") / base_tps, 2),
    pgbr_p99_ratio=round(med("pgbr", "p99") / base_p99, 2),
    pgproof_ms=round(med("pgproof", "ms")), capped_ms=round(med("pgproof-capped", "ms")),
    pgbr_ms=round(med("pgbr", "ms")),
    capped_copy_rate_over_cap=round(own / cap, 2) if cap else "-",
)
print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
PY
