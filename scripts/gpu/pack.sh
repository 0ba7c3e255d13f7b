#!/usr/bin/env bash
# Packs what the GPU benchmark and the GPU fleet run need on the device machine (H200, no
# registry) into .fleet/devpayload/, then lets ../shared/tools/gpu-kit.sh add ONNX Runtime's
# CUDA build and split everything into parts of one device call each. Run from the checkout.
#
#   scripts/gpu/pack.sh            # bench-gpu, models, bench media, Python wheels
#   scripts/gpu/pack.sh --fleet    # the fleet instead: worker, dispatcher, fleet, bench-decode,
#                                  # every model (Whisper for the CPU workers too), media, and
#                                  # the services kit (RabbitMQ, Redis, ffmpeg: services-kit.sh)
#   scripts/gpu/pack.sh --all      # both in one kit (one device session runs both)
#
# What the device then runs: scripts/gpu/device.sh (docs/bench-gpu.md, docs/gpu-fleet.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
P=.fleet/devpayload
FLEET=0
BENCH=1
case "${1:-}" in
--fleet) FLEET=1 BENCH=0 ;;
--all) FLEET=1 ;;
esac
rm -rf "$P" && mkdir -p "$P"

echo "pack: release binaries"
bins=""
crates=""
if [ "$FLEET" = 1 ]; then
    bins="worker dispatcher fleet bench-decode"
    crates="-p worker -p dispatcher -p fleet"
fi
if [ "$BENCH" = 1 ]; then
    bins="$bins bench-gpu"
    crates="$crates -p gpubench"
fi
# shellcheck disable=SC2086
cargo build --release $crates --bins >/dev/null
mkdir -p "$P/bin.tmp"
for b in $bins; do
    [ -x "target/release/$b" ] || continue
    cp "target/release/$b" "$P/bin.tmp/"
    strip "$P/bin.tmp/$b"
done
if [ "$FLEET" = 1 ]; then
    tar -C "$P/bin.tmp" -cf "$P/bin.tar" .
else
    tar -C "$P/bin.tmp" -cf - . | xz -9 -T2 > "$P/bin.tar.xz"
fi
rm -rf "$P/bin.tmp"

if [ "$FLEET" = 1 ]; then
    echo "pack: models (FP32 + FP16 variants, Whisper's converted graphs for the CPU workers)"
    # Not compressed: the ONNX weights shrink by ~10 % under xz, which costs minutes on two
    # cores; carrying the extra parts costs seconds.
    tar -C .fleet --exclude models/whisper/tiny.en.ct2.bin -cf "$P/models.tar" models
else
    echo "pack: models (FP32 + FP16 variants; Whisper runs on CPU workers and stays home)"
    tar -C .fleet --exclude models/whisper -cf - models | xz -6 -T2 > "$P/models.tar.xz"
fi

echo "pack: benchmark media"
mkdir -p "$P/media"
[ -f .fleet/bench/bench.mp4 ] || scripts/bench/make-bench-video.sh .fleet/bench/bench.mp4
cp .fleet/bench/bench.mp4 "$P/media/"
[ -f .fleet/sample.mp4 ] || scripts/make-sample.sh .fleet/sample.mp4
cp .fleet/sample.mp4 "$P/media/" 2>/dev/null || true

if [ "$FLEET" = 1 ]; then
    [ -f .fleet/sample-2.mp4 ] || scripts/make-sample.sh .fleet/sample-2.mp4
    cp .fleet/sample-2.mp4 "$P/media/"
    # The fleet's workload video: the benchmark's pictures with English speech (espeak-ng)
    # over the whole 30 s instead of the tone, so the CPU workers transcribe real words.
    if [ ! -f .fleet/bench/fleet.mp4 ]; then
        w=$(mktemp --suffix=.wav)
        espeak-ng -v en-us -s 150 -w "$w" "Hello and welcome back. Today I show you three \
quick editing tricks for your videos. First, cut on the beat. Second, keep every shot short. \
Third, put your caption in the lower third. Follow for more, and check the link in my bio. \
See you tomorrow with a new trick."
        ffmpeg -v error -y -i .fleet/bench/bench.mp4 -i "$w" -filter_complex \
            "[1:a]apad,atrim=duration=30,aresample=44100[a]" -map 0:v -map "[a]" -c:v copy \
            -c:a aac -b:a 128k .fleet/bench/fleet.mp4
        rm -f "$w"
    fi
    cp .fleet/bench/fleet.mp4 "$P/media/"
    [ -f .fleet/svc-kit.tar.xz ] || scripts/gpu/services-kit.sh .fleet/svc-kit.tar.xz
    cp .fleet/svc-kit.tar.xz "$P/svc.tar.xz"
    if [ "$BENCH" = 0 ]; then
        du -sh "$P"/*
        [ -n "${PACK_NO_KIT:-}" ] || ../shared/tools/gpu-kit.sh "$P"
        exit 0
    fi
fi

echo "pack: Python wheels the device lacks"
W=.fleet/devwheels
mkdir -p "$W"
dl() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d "$W" "$@"
}
dl ultralytics==8.3.40 ultralytics-thop==2.2.3 rapidocr==3.10.0 pyclipper==1.4.0 \
    shapely==2.2.0 omegaconf==2.4.0 colorlog==6.12.0 \
    onnxconverter-common==1.16.0
# omegaconf's parser runtime is published as a source archive only: a pure-Python wheel of it.
ls "$W"/antlr4_python3_runtime-4.9.3-*.whl >/dev/null 2>&1 ||
    python3 -m pip wheel -q --no-deps -w "$W" antlr4-python3-runtime==4.9.3
# onnxruntime-gpu's Python package without its 284 MB CUDA provider (and the C library the
# kit already carries): the device links both to the kit's copies.
GW=$(ls .fleet/gpu-kit/wheel/onnxruntime_gpu-1.31.1-*.whl | head -n1)
rm -rf "$P/ortpy" && mkdir -p "$P/ortpy"
unzip -q "$GW" -d "$P/ortpy" -x 'onnxruntime/capi/libonnxruntime_providers_cuda.so' \
    'onnxruntime/capi/libonnxruntime_providers_tensorrt.so' 'onnxruntime/capi/libonnxruntime.so.1.31.1'
mkdir -p "$P/whl" && cp "$W"/*.whl "$P/whl/"
tar -C "$P" -cf - whl ortpy | xz -6 -T2 > "$P/py.tar.xz"
rm -rf "$P/whl" "$P/ortpy"

du -sh "$P"/*
[ -n "${PACK_NO_KIT:-}" ] || ../shared/tools/gpu-kit.sh "$P"
