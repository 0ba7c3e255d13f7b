#!/usr/bin/env bash
# The Python-side tests (part of `make test`): the client package (clients/python/tests) and
# tests/py (README examples, OpenAPI + schemathesis, /ui in headless Chromium, k8s manifests
# through kubectl/kustomize/kubernetes-validate, the Grafana dashboard). They start their own
# dispatcher and workers from target/debug (build first: cargo build --workspace --bins).
# Output (logs, screenshots, schemathesis report): target/py-tests/.
#
#   scripts/test-py.sh                 # everything
#   scripts/test-py.sh -k ui           # pytest arguments pass through
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup-tools.sh"
export FLEET_TEST_OUT="${FLEET_TEST_OUT:-$ROOT/target/py-tests}"
cd "$ROOT"
exec "$ROOT/.fleet/py/bin/python" -m pytest -c "$ROOT/tests/py/pytest.ini" -p no:cacheprovider "$@"
