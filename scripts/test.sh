#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the moto S3 server on
# loopback, runs every unit and integration test against real PostgreSQL
# servers of each installed major, then stops moto.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

pidfile=$(mktemp)
endpoint=$(bash scripts/moto.sh "$pidfile")
trap 'kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"' EXIT
echo "test.sh: moto S3 server at $endpoint" >&2

export PGPROOF_TEST_S3_ENDPOINT=$endpoint
export PGPROOF_TEST_PG_ROOT=${PGPROOF_TEST_PG_ROOT:-/opt/pgproof-test/pg}
cargo test --locked "$@"
