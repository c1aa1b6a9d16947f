#!/usr/bin/env bash
# Starts Azurite's Blob service (the Azure Storage emulator) on a free
# loopback port and creates the test container. Prints the blob endpoint
# (http://127.0.0.1:PORT/devstoreaccount1 is the account's URL); the
# server's PID is written to $1.
set -euo pipefail
pidfile=${1:?usage: azurite.sh PIDFILE}
AZURITE=${PGPROOF_TEST_AZURITE:-/opt/pgproof-test/azurite/node_modules/.bin/azurite-blob}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
data=$(mktemp -d "${TMPDIR:-/tmp}/pgproof-azurite-$port.XXXXXX")
log=$data.log
"$AZURITE" --blobHost 127.0.0.1 --blobPort "$port" --location "$data" --skipApiVersionCheck --silent >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 100); do
  if python3 - "$port" <<'PY' 2>/dev/null
import sys
from azure.storage.blob import BlobServiceClient
# Azurite's well-known development account and key.
conn = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        f"BlobEndpoint=http://127.0.0.1:{sys.argv[1]}/devstoreaccount1;")
BlobServiceClient.from_connection_string(conn).create_container("pgproof-test")
PY
  then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.3
done
echo "Azurite did not start; see $log" >&2
exit 1
