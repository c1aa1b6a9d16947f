#!/usr/bin/env bash
# The long fault-injection run: tests/faults.rs with more segments, more
# SIGKILL points and several seeds of the fault schedule. Prints each
# test's verdict and its FIGURES lines (calls, faults injected by kind,
# retries, lost, false successes) per seed; exits non-zero if any failed.
#
#   bash bench/faults.sh                         # 5000 segments, 300 kills, 3 random seeds
#   SEGMENTS=2000 SEEDS="1 2" RATE=0.3 bash bench/faults.sh
#   TESTS=wal_push_of_many bash bench/faults.sh  # one test (a name filter)
#
# Logs of each seed are kept under $BENCH_DIR/faults (default /tmp/pgproof-bench).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SEGMENTS=${SEGMENTS:-5000}
KILLS=${KILLS:-300}
RATE=${RATE:-0.2}
JOBS=${JOBS:-4}
SEEDS=${SEEDS:-"$RANDOM$RANDOM $RANDOM$RANDOM $RANDOM$RANDOM"}
TESTS=${TESTS:-}
work=${BENCH_DIR:-/tmp/pgproof-bench}/faults

bash "$root/scripts/install-test-deps.sh" >/dev/null
rm -rf "$work"
mkdir -p "$work"
pidfile=$(mktemp)
endpoint=$(bash "$root/scripts/moto.sh" "$pidfile")
trap 'kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"' EXIT

export PGPROOF_TEST_S3_ENDPOINT=$endpoint
export PGPROOF_TEST_PG_ROOT=${PGPROOF_TEST_PG_ROOT:-/opt/pgproof-test/pg}
export PGPROOF_TEST_MAJORS=${PGPROOF_TEST_MAJORS:-15}
cd "$root"
cargo test --release --locked --test faults --no-run --quiet

failed=0
for seed in $SEEDS; do
  log=$work/seed-$seed.log
  echo "== seed $seed: $SEGMENTS segments, $KILLS kills, fault rate $RATE ($log)"
  start=$(date +%s)
  # One test at a time: the figures are each test's own, not a contest for two cores.
  if ! PGPROOF_FAULT_SEED=$seed PGPROOF_FAULT_RATE=$RATE PGPROOF_FAULTS_SEGMENTS=$SEGMENTS \
      PGPROOF_FAULTS_JOBS=$JOBS PGPROOF_FAULTS_KILLS=$KILLS \
      cargo test --release --locked --test faults -- --nocapture --test-threads 1 $TESTS >"$log" 2>&1; then
    failed=1
  fi
  grep -E '^test .* \.\.\. |^FIGURES' "$log" | sed 's/^FIGURES /  /'
  grep -A3 "panicked at" "$log" | cut -c1-400 || true
  echo "   ($(( $(date +%s) - start )) s)"
done
exit $failed
