#!/usr/bin/env bash
# Starts the moto S3 server on a free loopback port and creates the test
# bucket. Prints the endpoint URL; the server's PID is written to $1.
set -euo pipefail
pidfile=${1:?usage: moto.sh PIDFILE}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=${TMPDIR:-/tmp}/pgproof-moto-$port.log
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
echo $! >"$pidfile"
for _ in $(seq 1 100); do
  if python3 - "$port" <<'PY' 2>/dev/null
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket="pgproof-test")
PY
  then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  sleep 0.2
done
echo "moto did not start; see $log" >&2
exit 1
