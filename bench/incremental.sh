#!/usr/bin/env bash
# pgproof incremental backups (backup-push --incremental) against pgBackRest's,
# on the same PostgreSQL 15 cluster, like for like. Issue 13's targets: at
# pgbench scale 100, after a full backup, 1% of pgbench_accounts updated and
# a checkpoint, the incremental takes at most 25% of the full's time and
# stores at most 5% of its bytes, and restoring it takes at most 1.2x the
# full's restore time.
#
# pgBackRest here is 2.45, which has no block incremental (that came in
# 2.46): its incrementals are file-level (--type=incr stores every file
# whose size or timestamp changed, whole). That is what pgproof is compared
# with, and its --type=full for the fulls.
#
#   - update patterns (each on its own fresh cluster, pgbench -i at scale
#     $SCALE): "clustered" = each round updates 1% of pgbench_accounts as
#     one range of aid (a different range each round); "random" = 1% of the
#     rows picked at random, which touches about 45% of the table's pages
#     (one row in 100, 61 rows a page), so no incremental, block or file,
#     can be small there: it is the worst case, not the issue's;
#   - both tools zstd at level $LEVEL, $JOBS processes (pgBackRest
#     process-max, pgproof --jobs), a filesystem repository on the same disk,
#     warm page cache; archive_command pushes every segment through both,
#     the tool about to be timed first (each backup waits for its own push
#     of the stop segment, not for the other tool's);
#   - before every timed backup: CHECKPOINT, a WAL switch, and a wait until
#     the archiver has stored everything up to it with nothing left .ready,
#     then sync (as bench/backup.sh);
#   - one FULL backup per tool (pgBackRest first), then $ROUNDS rounds of:
#     update 1% of the accounts rows, CHECKPOINT, one INCREMENTAL per tool,
#     the order alternating (round 1 pgproof first, round 2 pgBackRest
#     first, ...). Each incremental rests on the tool's previous backup: both
#     tools build a chain;
#   - then $ROUNDS rounds of restores of each tool's full and of its newest
#     incremental (pgproof restore --backup NAME, pgbackrest restore --set),
#     in alternating order, each into a fresh directory and timed until its
#     files are on disk (the command, then sync);
#   - per run: wall time, CPU% and peak RSS; per backup: the bytes it stored
#     by the tool's own account (pgproof backup-list --json "stored_size";
#     pgbackrest info --output=json, info.repository.delta);
#   - per pattern: every run, medians, incremental/full ratios of backup
#     time, stored bytes and restore time for each tool (against the
#     targets 0.25, 0.05 and 1.2), the pgBackRest/pgproof ratios of the
#     incrementals, and one "RESULT key=value ..." line to compare runs by;
#   - a correctness check at the end of each pattern: pgproof's newest
#     incremental restored once more (untimed, --target-immediate, promoted)
#     and started; sum(abalance) and count(*) of pgbench_accounts must be
#     the source's right after the last incremental (nothing writes after
#     it). The script fails if they differ.
#
#   bash bench/incremental.sh
#   SCALE=10 ROUNDS=1 bash bench/incremental.sh        # a quick run
#   PATTERNS=clustered ROUNDS=5 LEVEL=3 bash bench/incremental.sh
#
# Knobs: SCALE (100), ROUNDS (3), LEVEL (zstd level, 1), JOBS (2),
# PATTERNS ("clustered random"), BENCH_DIR (/tmp/pgproof-bench; this script
# works in $BENCH_DIR/incremental, removed at the start), ARCHIVE_WAIT_S
# (600: how long to wait for the archiver before giving up).
# Runs as root (PostgreSQL and both tools run as the postgres user) or as a
# user that can run PostgreSQL itself.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib.sh"
SCALE=${SCALE:-100}
ROUNDS=${ROUNDS:-3}
LEVEL=${LEVEL:-1}
JOBS=${JOBS:-2}
PATTERNS=${PATTERNS:-"clustered random"}
ARCHIVE_WAIT_S=${ARCHIVE_WAIT_S:-600}
base=${BENCH_DIR:-/tmp/pgproof-bench}/incremental

for p in $PATTERNS; do
  case $p in clustered | random) ;; *) echo "PATTERNS: unknown pattern '$p' (clustered, random)" >&2; exit 2 ;; esac
done
[ "$ROUNDS" -ge 1 ] || { echo "ROUNDS must be at least 1" >&2; exit 2; }
[ "$SCALE" -ge 1 ] || { echo "SCALE must be at least 1" >&2; exit 2; }

bash "$root/scripts/install-test-deps.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"

# Servers of an earlier, interrupted run (the sources and the restored
# copies the correctness check starts); and none left running by this one.
stop_clusters() {
  local d
  for d in "$base"/*/pgdata "$base"/*/check; do
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

TIMED_OP_WIDTH=12

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

# The order of step N: pgBackRest first when N is odd, pgproof when even.
order() { if [ $(($1 % 2)) = 1 ]; then echo "pgbr pgproof"; else echo "pgproof pgbr"; fi; }

# newest_pgproof / newest_pgbr: "NAME TYPE STORED_BYTES" of the tool's
# newest backup, by the tool's own account.
newest_pgproof() {
  as_pg "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench backup-list --json | python3 -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if not r.get("damaged")]
r = rows[-1]
print(r["name"], r.get("type", "unknown"), r["stored_size"])'
}
newest_pgbr() {
  as_pg pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --output=json info | python3 -c '
import json, sys
b = json.load(sys.stdin)[0]["backup"][-1]
print(b["label"], b["type"], b["info"]["repository"]["delta"])'
}

# backup ROUND TOOL KIND: one timed backup (KIND full or incr) by TOOL after
# the archiver has caught up; checks the tool took the kind asked for, and
# appends "round tool kind name stored_bytes" to $work/stored.
backup() {
  local round=$1 tool=$2 kind=$3 name type stored want
  archive_first "$tool"
  archiver_caught_up
  if [ "$tool" = pgbr ]; then
    timed "$round" pgbr "backup-$kind" pgbackrest --config="$work/pgbackrest.conf" --stanza=bench --type="$kind" backup
    read -r name type stored <<<"$(newest_pgbr)"
    want=$kind
  else
    local flag=--full
    [ "$kind" = incr ] && flag=--incremental
    timed "$round" pgproof "backup-$kind" env PGUSER=postgres "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
      --compression "zstd:$LEVEL" backup-push "$PGDATA_DIR" "$flag" --fast --jobs "$JOBS"
    read -r name type stored <<<"$(newest_pgproof)"
    want=full
    [ "$kind" = incr ] && want=incremental
  fi
  if [ "$type" != "$want" ]; then
    echo "$tool's backup of round $round is $name of type '$type', not $want:" >&2
    cat "$work/$round-$tool-backup-$kind.out" >&2
    exit 1
  fi
  echo "$round $tool $kind $name $stored" >>"$work/stored"
}

# update_rows ROUND: 1% of pgbench_accounts, as $pattern says, then CHECKPOINT.
update_rows() {
  local round=$1 rows=$((SCALE * 100000)) n sql before wal
  n=$((rows / 100))
  if [ "$pattern" = clustered ]; then
    local x=$((((round - 1) % 100) * n))
    sql="UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > $x AND aid <= $((x + n))"
  else
    sql="UPDATE pgbench_accounts SET abalance = abalance + 1
         WHERE aid IN (SELECT (random() * $rows)::int + 1 FROM generate_series(1, $n))"
  fi
  before=$(psql_c "SELECT pg_current_wal_lsn()")
  psql_c "$sql" >/dev/null
  psql_c "CHECKPOINT" >/dev/null
  wal=$(psql_c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$before')")
  echo "  round $round: $pattern update of $n rows and checkpoint, $((wal >> 20)) MiB of WAL" >&2
}

backup_rounds() {
  local round tool
  for tool in $(order 1); do
    backup 0 "$tool" full
  done
  for round in $(seq 1 "$ROUNDS"); do
    update_rows "$round"
    # Warm, as the full's data was: whatever the update did not bring in.
    cat "$PGDATA_DIR"/base/*/* >/dev/null 2>&1 || true
    for tool in $(order $((round + 1))); do
      backup "$round" "$tool" incr
    done
  done
}

# The name of TOOL's newest backup of KIND (full or incr).
backup_name() { awk -v t="$1" -v k="$2" '$2 == t && $3 == k { n = $4 } END { print n }' "$work/stored"; }

restore_rounds() {
  local round tool kind kinds name
  for round in $(seq 1 "$ROUNDS"); do
    kinds="full incr"
    [ $((round % 2)) = 0 ] && kinds="incr full"
    for kind in $kinds; do
      for tool in $(order "$round"); do
        name=$(backup_name "$tool" "$kind")
        # Untimed: the previous restores go, so every restore starts from the
        # same free space and without the other's files in the page cache.
        rm -rf "$work/r-pgbr" "$work/r-pgproof"
        if [ "$tool" = pgbr ]; then
          mkdir -m 700 "$work/r-pgbr"
          [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/r-pgbr"
          TIMED_SYNC=1 timed "$round" pgbr "restore-$kind" pgbackrest --config="$work/pgbackrest.conf" --stanza=bench \
            --pg1-path="$work/r-pgbr" --set="$name" restore
        else
          TIMED_SYNC=1 timed "$round" pgproof "restore-$kind" "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
            restore "$work/r-pgproof" --backup "$name" --jobs "$JOBS"
        fi
      done
    done
  done
  rm -rf "$work/r-pgbr" "$work/r-pgproof"
}

# check_restored EXPECTED: restores pgproof's newest incremental (untimed)
# up to the end of the backup, starts it promoted, and compares its
# pgbench_accounts with EXPECTED ("sum|count" of the source after the last
# incremental). Fails loudly on any difference.
check_restored() {
  local expected=$1 name got port t0 dir=$work/check
  name=$(backup_name pgproof incr)
  echo "$pattern: checking pgproof's incremental $name restored" >&2
  rm -rf "$dir"
  if ! as_pg "$base/pgproof" --repo "file://$work/pgproof-repo" --cluster bench \
      restore "$dir" --backup "$name" --target-immediate --target-action promote --jobs "$JOBS" >"$work/check-restore.out" 2>&1; then
    echo "CHECK FAILED: restoring pgproof's incremental $name failed:" >&2
    cat "$work/check-restore.out" >&2
    exit 1
  fi
  port=$(free_port)
  # Its own port, and no archiving: the promoted copy must not push its new
  # timeline into the benchmark's repositories.
  if ! as_pg "$PG_BIN/pg_ctl" -D "$dir" -l "$work/check.log" -w -t 600 \
      -o "-c port=$port -c unix_socket_directories=$PG_SOCK -c archive_mode=off" start >/dev/null; then
    echo "CHECK FAILED: the restored copy of $name did not start; last lines of $work/check.log:" >&2
    tail -n 30 "$work/check.log" >&2
    exit 1
  fi
  t0=$(now_ms)
  while [ "$(as_pg "$PG_BIN/psql" -h "$PG_SOCK" -p "$port" -U postgres -d postgres -qAtX -c "SELECT pg_is_in_recovery()")" != f ]; do
    if [ $(($(now_ms) - t0)) -gt 600000 ]; then
      echo "CHECK FAILED: the restored copy of $name did not end recovery within 600 s; last lines of $work/check.log:" >&2
      tail -n 30 "$work/check.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  got=$(as_pg "$PG_BIN/psql" -h "$PG_SOCK" -p "$port" -U postgres -d postgres -qAtX \
    -c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
  as_pg "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
  if [ "$got" != "$expected" ]; then
    echo "CHECK FAILED: pgproof's incremental $name restored has pgbench_accounts sum(abalance)|count(*) = $got," \
      "the source had $expected when it was taken" >&2
    exit 1
  fi
  rm -rf "$dir"
  echo "$pattern: check passed: $name restored has sum(abalance)|count(*) = $got, as the source" >&2
  check_result="ok"
}

# report PATTERN DB_BYTES: every run, then the medians and ratios, from
# $work/runs and $work/stored.
report() {
  python3 - "$1" "$2" "$work/runs" "$work/stored" "$LEVEL" "$JOBS" "$ROUNDS" "$SCALE" "$check_result" <<'PY'
import sys
from statistics import median

pattern, db_bytes, runs_path, stored_path, level, jobs, rounds, scale, check = sys.argv[1:]
names = {"pgbr": "pgBackRest", "pgproof": "pgproof"}
runs = []
for line in open(runs_path):
    rnd, tool, op, ms, e, u, s, m = line.split()
    cpu = 100 * (float(u) + float(s)) / float(e) if float(e) else 0.0
    runs.append(dict(round=int(rnd), tool=tool, op=op, ms=int(ms), cpu=cpu, rss=int(m)))
stored = {}
backup_names = {}
for line in open(stored_path):
    rnd, tool, kind, name, size = line.split()
    stored[(int(rnd), tool, kind)] = int(size)
    backup_names[(int(rnd), tool, kind)] = name

print(f"\n{pattern}: pgbench scale {scale}, database {int(db_bytes) >> 20} MiB, 1% of pgbench_accounts updated"
      f" per round ({pattern}), zstd level {level}, {jobs} processes per tool, {rounds} rounds"
      " (round 0: the full backups)")
print(f"{'round':>5}  {'tool':<10}  {'op':<12}  {'ms':>8}  {'CPU%':>5}  {'peak RSS MiB':>12}  {'stored MiB':>10}  backup")
for r in runs:
    key = (r["round"], r["tool"], r["op"].removeprefix("backup-"))
    st = stored.get(key) if r["op"].startswith("backup-") else None
    st = f"{st / 2**20:.2f}" if st is not None else ""
    bn = backup_names.get(key, "") if r["op"].startswith("backup-") else ""
    print(f"{r['round']:>5}  {names[r['tool']]:<10}  {r['op']:<12}  {r['ms']:>8}  {r['cpu']:>5.0f}"
          f"  {r['rss'] / 1024:>12.1f}  {st:>10}  {bn}")

def med(tool, op, key):
    return median(r[key] for r in runs if r["tool"] == tool and r["op"] == op)

def med_stored(tool, kind):
    return median(v for (_, t, k), v in stored.items() if t == tool and k == kind)

def ratio(a, b):
    return f"{a / b:.3f}" if b else "-"

print(f"\nmedians{'':<22}{'pgBackRest':>12}{'pgproof':>12}   pgBackRest/pgproof")
rows = [
    ("full backup ms", "backup-full", "ms", True),
    ("incr backup ms", "backup-incr", "ms", True),
    ("full restore ms", "restore-full", "ms", True),
    ("incr restore ms", "restore-incr", "ms", True),
    ("full backup CPU %", "backup-full", "cpu", False),
    ("incr backup CPU %", "backup-incr", "cpu", False),
    ("full restore CPU %", "restore-full", "cpu", False),
    ("incr restore CPU %", "restore-incr", "cpu", False),
    ("full backup peak RSS MiB", "backup-full", "rss", False),
    ("incr backup peak RSS MiB", "backup-incr", "rss", False),
    ("full restore peak RSS MiB", "restore-full", "rss", False),
    ("incr restore peak RSS MiB", "restore-incr", "rss", False),
]
for title, op, key, with_ratio in rows:
    a, b = med("pgbr", op, key), med("pgproof", op, key)
    if key == "rss":
        a, b = a / 1024, b / 1024
    fmt = (lambda v: f"{v:.0f}") if key != "rss" else (lambda v: f"{v:.1f}")
    tail = f"   {ratio(a, b)}x" if with_ratio else ""
    print(f"{title:<29}{fmt(a):>12}{fmt(b):>12}{tail}")
for title, kind in (("full stored MiB", "full"), ("incr stored MiB", "incr")):
    a, b = med_stored("pgbr", kind), med_stored("pgproof", kind)
    print(f"{title:<29}{a / 2**20:>12.2f}{b / 2**20:>12.2f}   {ratio(a, b)}x")
print("(pgBackRest/pgproof > 1: pgproof faster, or stores less)")

# incr/full per tool, against issue 13's targets.
targets = [
    ("incr backup time / full backup time", "time", 0.25),
    ("incr stored / full stored", "stored", 0.05),
    ("incr restore time / full restore time", "restore", 1.2),
]

def own(tool, what):
    if what == "time":
        a, b = med(tool, "backup-incr", "ms"), med(tool, "backup-full", "ms")
    elif what == "stored":
        a, b = med_stored(tool, "incr"), med_stored(tool, "full")
    else:
        a, b = med(tool, "restore-incr", "ms"), med(tool, "restore-full", "ms")
    return a / b if b else float("nan")

print(f"\nincremental / full (medians){'':<12}{'pgBackRest':>12}{'pgproof':>12}   target  pgproof")
for title, what, target in targets:
    a, b = own("pgbr", what), own("pgproof", what)
    verdict = "met" if b <= target else "MISSED"
    print(f"{title:<40}{a:>12.3f}{b:>12.3f}   <= {target:<4}  {verdict}")

vs = dict(
    incr_backup_ratio=ratio(med("pgbr", "backup-incr", "ms"), med("pgproof", "backup-incr", "ms")),
    incr_stored_ratio=ratio(med_stored("pgbr", "incr"), med_stored("pgproof", "incr")),
    incr_restore_ratio=ratio(med("pgbr", "restore-incr", "ms"), med("pgproof", "restore-incr", "ms")),
)
print(f"pgBackRest/pgproof, incrementals: backup time {vs['incr_backup_ratio']}x,"
      f" stored {vs['incr_stored_ratio']}x, restore time {vs['incr_restore_ratio']}x")

f3 = lambda v: f"{v:.3f}"
fields = dict(
    pattern=pattern, scale=scale, level=level, jobs=jobs, rounds=rounds,
    pgproof_incr_time_ratio=f3(own("pgproof", "time")),
    pgproof_incr_stored_ratio=f3(own("pgproof", "stored")),
    pgproof_incr_restore_ratio=f3(own("pgproof", "restore")),
    pgbr_incr_time_ratio=f3(own("pgbr", "time")),
    pgbr_incr_stored_ratio=f3(own("pgbr", "stored")),
    pgbr_incr_restore_ratio=f3(own("pgbr", "restore")),
    **vs,
)
for tool in ("pgbr", "pgproof"):
    for op in ("backup-full", "backup-incr", "restore-full", "restore-incr"):
        o = op.replace("-", "_")
        fields[f"{tool}_{o}_ms"] = round(med(tool, op, "ms"))
        fields[f"{tool}_{o}_cpu"] = round(med(tool, op, "cpu"))
        fields[f"{tool}_{o}_rss_kib"] = round(med(tool, op, "rss"))
    fields[f"{tool}_full_stored"] = round(med_stored(tool, "full"))
    fields[f"{tool}_incr_stored"] = round(med_stored(tool, "incr"))
fields["check"] = check
print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))
PY
}

run_pattern() { # run_pattern PATTERN
  pattern=$1
  work=$base/$pattern
  check_result=none
  mkdir -p "$work"
  : >"$work/runs"
  : >"$work/stored"
  two_tool_cluster
  echo "$pattern: loading pgbench scale $SCALE" >&2
  as_pg "$PG_BIN/pgbench" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -i -s "$SCALE" -q postgres >/dev/null 2>&1
  local db_size expected
  db_size=$(psql_c "SELECT sum(pg_database_size(oid)) FROM pg_database")
  cat "$PGDATA_DIR"/base/*/* >/dev/null 2>&1 || true

  echo "$pattern: full backups, then $ROUNDS rounds of update and incremental backups" >&2
  backup_rounds
  # What the newest incrementals hold: nothing writes after them.
  expected=$(psql_c "SELECT sum(abalance), count(*) FROM pgbench_accounts")
  archiver_caught_up
  pg_stop
  echo "$pattern: restores, $ROUNDS rounds" >&2
  restore_rounds
  check_restored "$expected"
  report "$pattern" "$db_size"
}

for p in $PATTERNS; do
  run_pattern "$p"
done
