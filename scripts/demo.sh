#!/usr/bin/env bash
# `make demo`: starts the fleet (dispatcher, one GPU worker, one CPU worker, as separate
# processes through `fleet up`), submits a generated sample video, waits with progress,
# prints the result, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
# The file name carries the sample's version: a sample from an older script is not reused.
scripts/make-sample.sh .fleet/sample-2.mp4

export FLEET_PREFIX="${FLEET_PREFIX:-demo}"
export FLEET_LISTEN="${FLEET_LISTEN:-127.0.0.1:8080}"
export FLEET_URL="http://$FLEET_LISTEN"
# Workers read local files only under these roots: the generated sample lives in .fleet/.
export FLEET_MEDIA_LOCAL_ROOTS="${FLEET_MEDIA_LOCAL_ROOTS:-$PWD/.fleet}"
bin=target/debug
log=.fleet/demo-fleet.log

if curl -fsS "$FLEET_URL/healthz" >/dev/null 2>&1; then
  echo "demo: something already listens on $FLEET_LISTEN; stop it or set FLEET_LISTEN=127.0.0.1:<port>" >&2
  exit 1
fi
"$bin/fleet" up >"$log" 2>&1 &
up=$!
cleanup() {
  kill -TERM "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
  echo "demo: fleet stopped (log: $log)"
}
trap cleanup EXIT

for _ in $(seq 120); do
  curl -fsS "$FLEET_URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$up" 2>/dev/null || { echo "demo: fleet up exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 0.5
done
sleep 1
echo "demo: fleet running (dispatcher $FLEET_URL, prefix $FLEET_PREFIX); processes:"
grep -E "worker started|dispatcher listening|GPU pinned|cpu-fallback|no NVIDIA" "$log" | sed 's/\x1b\[[0-9;]*m//g' | sed 's/^/  /' | cut -c1-220 || true
"$bin/fleet" submit "$PWD/.fleet/sample-2.mp4" --wait --timeout 600
