#!/usr/bin/env bash
# Runs on the GPU machine, in the repository's root, after gpu-kit's parts were rebuilt under
# /root/kit (see scripts/gpu/pack.sh and docs/bench-gpu.md). Steps, one device call each:
#
#   scripts/gpu/device.sh setup    # unpack binaries, models, wheels; onnxruntime-gpu for Python
#   scripts/gpu/device.sh python   # frames (OpenCV), YOLOv8/SegFormer export, the Python side
#   scripts/gpu/device.sh bench    # bench-gpu run: the report into $OUT
#   scripts/gpu/device.sh profile  # ONNX Runtime's profiler on single models (OCR, YOLOv8x)
#   scripts/gpu/device.sh fleet STEP...  # the fleet (pack.sh --fleet): scripts/gpu-run.sh STEPs
#
# State lives under /root/gb between calls (the machine keeps /root while it stays warm).
set -euo pipefail
KIT=/root/kit
PAY=$KIT/payload/.fleet/devpayload
GB=/root/gb
OUT="${OUT:-/tmp/out}"
mkdir -p "$GB" "$OUT"
log() { echo "[$(date +%T)] device: $*" >&2; }

env_all() {
    # shellcheck disable=SC1091
    . "$KIT/env.sh"
    export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
    export FLEET_DIR=$GB/fleet FLEET_MODELS_MANIFEST=$PWD/config/models.toml
    export PATH=$GB/bin:$PATH
    export YOLO_OFFLINE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
}

case "${1:-}" in
setup)
    log "unpacking binaries, models, wheels"
    mkdir -p "$GB/bin" "$GB/fleet"
    if [ -f "$PAY/bin.tar" ]; then
        tar -C "$GB/bin" -xf "$PAY/bin.tar"
    else
        xz -dc "$PAY/bin.tar.xz" | tar -C "$GB/bin" -xf -
    fi
    if [ -f "$PAY/models.tar" ]; then
        tar -C "$GB/fleet" -xf "$PAY/models.tar"
    else
        xz -dc "$PAY/models.tar.xz" | tar -C "$GB/fleet" -xf -
    fi
    cp -r "$PAY/media" "$GB/"
    if [ -f "$PAY/svc.tar.xz" ]; then
        xz -dc "$PAY/svc.tar.xz" | tar -C "$GB" -xf -
        log "services kit: $(tr '\n' ' ' < "$GB/svc/VERSIONS")"
        ldd --version | head -n1
        { "$GB/svc/bin/ffmpeg" -hide_banner -hwaccels 2>&1 || true; } | tr "\n" " "; echo
        "$GB/svc/bin/redis-server" --version || true
    fi
    if [ ! -f "$PAY/py.tar.xz" ]; then
        env_all
        nvidia-smi --query-gpu=name,uuid,memory.total,memory.used,driver_version --format=csv
        log "setup done (fleet)"
        exit 0
    fi
    xz -dc "$PAY/py.tar.xz" | tar -C "$GB" -xf -
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$GB"/whl/*.whl
    # onnxruntime-gpu's Python package, its CUDA provider and C library linked from the kit.
    rm -rf /tmp/site/onnxruntime /tmp/site/onnxruntime_gpu-*.dist-info
    cp -r "$GB"/ortpy/* /tmp/site/
    ln -sf "$KIT/ort/libonnxruntime_providers_cuda.so" /tmp/site/onnxruntime/capi/
    ln -sf "$KIT/ort/libonnxruntime.so.1.31.1" /tmp/site/onnxruntime/capi/
    env_all
    nvidia-smi --query-gpu=name,uuid,memory.total,memory.used,driver_version --format=csv
    python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
    bench-gpu --help >/dev/null && log "setup done"
    ;;
python)
    env_all
    log "frames with OpenCV"
    python3 scripts/bench/gpu_python.py --prepare "$GB/media/bench.mp4" --frames "$GB/frames"
    log "export + Python pipelines"
    python3 scripts/bench/gpu_python.py --frames "$GB/frames" --out "$GB/onnx" --device cuda \
        --budget-s "${PY_BUDGET:-300}" \
        ${ONLY:+--only "$ONLY"} 2>&1 | tee "$GB/python.log" | grep -v -E "Warning|warn\(" || true
    cp "$GB/onnx/python.json" "$OUT/" 2>/dev/null || true
    ls -la "$GB/onnx"
    ;;
bench)
    env_all
    log "bench-gpu run"
    bench-gpu run --frames "$GB/frames" --models "$GB/onnx" --python "$GB/onnx/python.json" \
        --report "$OUT/bench-gpu.md" --json "$OUT/bench-gpu.json" --require-gpu \
        ${ONLY:+--only "$ONLY"} ${CPU_FRAMES:+--cpu-frames "$CPU_FRAMES"} 2>&1 | tail -n 60
    cp "$GB/onnx/python.json" "$OUT/" 2>/dev/null || true
    ;;
profile)
    # Where the time of single models goes (ONNX Runtime's profiler, NCHW and NHWC).
    env_all
    M=$GB/fleet/models
    for spec in "$M/ppocr/PP-OCRv6_rec_small.onnx 32x3x48x640" \
        "$M/ppocr/PP-OCRv6_rec_small.onnx 1x3x48x640" \
        "$M/ppocr/PP-OCRv6_det_small.onnx 8x3x960x544" \
        "$GB/onnx/yolov8x.onnx 16x3x640x384" "$GB/onnx/yolov8x.fp16.onnx 16x3x640x384"; do
        set -- $spec
        [ -f "$1" ] || continue
        timeout 150 python3 scripts/bench/ort_profile.py "$1" "$2" || true
    done 2>&1 | grep -v -E "^\s*$" | tee "$OUT/profile.txt"
    ;;
fleet)
    env_all
    shift
    export SVC=$GB/svc BIN=$GB/bin RUN=$GB/run MEDIA=$GB/media OUT
    export FLEET_MEDIA_LOCAL_ROOTS=$GB/run/media
    for step in "$@"; do
        # shellcheck disable=SC2086
        scripts/gpu-run.sh $step
    done
    ;;
*)
    echo "usage: device.sh setup|python|bench|fleet STEP..." >&2
    exit 64
    ;;
esac
