#!/usr/bin/env bash
# The whole test suite: installs what it needs, starts the moto S3 server and
# the Azurite Azure Storage emulator on loopback, runs every unit and
# integration test against real PostgreSQL servers of each installed major,
# then stops the emulators.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

pidfile=$(mktemp)
azurite_pidfile=$(mktemp)
trap 'kill "$(cat "$pidfile")" "$(cat "$azurite_pidfile")" 2>/dev/null || true; rm -f "$pidfile" "$azurite_pidfile"' EXIT
endpoint=$(bash scripts/moto.sh "$pidfile")
echo "test.sh: moto S3 server at $endpoint" >&2
azurite=$(bash scripts/azurite.sh "$azurite_pidfile")
echo "test.sh: Azurite blob service at $azurite" >&2

export PGPROOF_TEST_S3_ENDPOINT=$endpoint
export PGPROOF_TEST_AZURITE_ENDPOINT=$azurite
export PGPROOF_TEST_PG_ROOT=${PGPROOF_TEST_PG_ROOT:-/opt/pgproof-test/pg}
cargo test --locked "$@"
