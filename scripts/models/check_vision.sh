#!/usr/bin/env bash
# `scripts/setup-models.sh --check`: installs the reference runtimes (pinned) into .fleet/check/
# and compares the converted vision models with them (check_vision.py prints the figures).
set -euo pipefail
ROOT="$1"
CHECK="$ROOT/.fleet/check"
mkdir -p "$CHECK"
TFJS_VERSION=4.22.0
LITERT_VERSION=2.3.0
ORT_PY_VERSION=1.31.1
NUMPY_VERSION=2.4.6
# MediaPipe's Python graph needs numpy 1.x and protobuf 4.x: a venv of its own, the wheel
# from .fleet/wheels without its optional dependencies (audio, jax).
MP_NUMPY_VERSION=1.26.4
MP_PROTOBUF_VERSION=4.25.8
MP_ABSL_VERSION=2.5.1
MP_ATTRS_VERSION=26.1.0
MP_FLATBUFFERS_VERSION=25.12.19
MP_OPENCV_VERSION=4.10.0.84
MP_MATPLOTLIB_VERSION=3.11.2

if [ ! -d "$CHECK/node_modules/@tensorflow/tfjs-converter" ]; then
    (cd "$CHECK" && npm install --silent --no-audit --no-fund --no-save \
        "@tensorflow/tfjs-core@$TFJS_VERSION" "@tensorflow/tfjs-converter@$TFJS_VERSION" \
        "@tensorflow/tfjs-backend-cpu@$TFJS_VERSION")
fi
if [ ! -x "$CHECK/venv/bin/python" ]; then
    python3 -m venv "$CHECK/venv"
    "$CHECK/venv/bin/pip" install --quiet --disable-pip-version-check \
        "ai-edge-litert==$LITERT_VERSION" "onnxruntime==$ORT_PY_VERSION" "numpy==$NUMPY_VERSION"
fi
if [ ! -x "$CHECK/mp-venv/bin/python" ]; then
    python3 -m venv "$CHECK/mp-venv"
    "$CHECK/mp-venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
        "$(ls "$ROOT"/.fleet/wheels/mediapipe-0.10.21-*.whl | head -n1)"
    "$CHECK/mp-venv/bin/pip" install --quiet --disable-pip-version-check --no-warn-conflicts \
        "numpy==$MP_NUMPY_VERSION" "protobuf==$MP_PROTOBUF_VERSION" "absl-py==$MP_ABSL_VERSION" \
        "attrs==$MP_ATTRS_VERSION" "flatbuffers==$MP_FLATBUFFERS_VERSION" \
        "opencv-python-headless==$MP_OPENCV_VERSION" "matplotlib==$MP_MATPLOTLIB_VERSION"
fi
"$CHECK/venv/bin/python" "$ROOT/scripts/models/check_vision.py" --root "$ROOT" \
    --node-modules "$CHECK/node_modules" --mediapipe-python "$CHECK/mp-venv/bin/python"
