#!/usr/bin/env bash
# The whole fleet on a GPU host that has no registry: RabbitMQ, Redis and ffmpeg from the
# services kit (scripts/gpu/services-kit.sh), the fleet's release binaries, ONNX Runtime's CUDA
# build (../shared/tools/gpu-kit.sh). Run from the repository's root. Steps:
#
#   scripts/gpu-run.sh services     # start RabbitMQ and Redis on loopback from the kit
#   scripts/gpu-run.sh up [ARGS]    # `fleet up ARGS` in the background (default: --gpus 0)
#   scripts/gpu-run.sh demo         # the sample video through the fleet, result printed
#   scripts/gpu-run.sh load LABEL N VIDEO   # N jobs of VIDEO at once; report data into $OUT
#   scripts/gpu-run.sh plan         # `fleet plan` from the durations measured so far
#   scripts/gpu-run.sh workload     # JOBS copies on the GPU pinned by UUID, as configured;
#                                   # with PLANNED=1 on the config `plan` wrote
#   scripts/gpu-run.sh guard        # memory guard: pause/resume under a foreign allocation
#   scripts/gpu-run.sh idle         # models unloaded after FLEET_MODEL_IDLE_SECS without work
#   scripts/gpu-run.sh nvdec        # CPU decode vs NVDEC for one job's frames (bench-decode)
#   scripts/gpu-run.sh stop         # stop the fleet (the services keep running)
#   scripts/gpu-run.sh down         # stop the fleet and the services this script started
#   scripts/gpu-run.sh all          # services, up, demo, load, down in one go
#
# Paths (environment): SVC the unpacked kit's svc/ folder, BIN the fleet's binaries, MEDIA
# the folder with sample-2.mp4 and bench.mp4 (the 30 s 1080x1920 benchmark video),
# FLEET_DIR the models' folder, RUN the state folder (logs, Redis AOF, RabbitMQ data), OUT
# where reports go. Ports: AMQP_PORT (5672), REDIS_PORT (6379), FLEET_LISTEN (127.0.0.1:8080).
# See docs/gpu-fleet.md for the run on the H200 and what it measured.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SVC="${SVC:-$ROOT/.fleet/svc}"
BIN="${BIN:-$ROOT/target/release}"
RUN="${RUN:-$ROOT/.fleet/gpu-run}"
OUT="${OUT:-$RUN/out}"
MEDIA="${MEDIA:-$ROOT/.fleet}"
MEDIA_BENCH="${MEDIA_BENCH:-$MEDIA/bench.mp4}"
MEDIA_FLEET="${MEDIA_FLEET:-$MEDIA/fleet.mp4}"
WORKER_METRICS="${WORKER_METRICS:-http://127.0.0.1:9100/metrics}"
AMQP_PORT="${AMQP_PORT:-5672}"
REDIS_PORT="${REDIS_PORT:-6379}"
export FLEET_LISTEN="${FLEET_LISTEN:-127.0.0.1:8080}"
export FLEET_URL="http://$FLEET_LISTEN"
export FLEET_AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"
export FLEET_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
export FLEET_PREFIX="${FLEET_PREFIX:-gpu}"
export FLEET_MEDIA_LOCAL_ROOTS="${FLEET_MEDIA_LOCAL_ROOTS:-$RUN/media}"
# Workers load and warm their models before taking work (the first job of a fresh fleet paid
# 27-38 s of loads on the H200 otherwise); PRELOAD=0 measures the cold path.
export FLEET_PRELOAD_MODELS="${PRELOAD:-1}"
mkdir -p "$RUN" "$OUT" "$RUN/media"
log() { echo "[$(date +%T)] gpu-run: $*" >&2; }
die() { log "$*"; exit 1; }

[ -f "$SVC/env.sh" ] || die "no services kit at $SVC (scripts/gpu/services-kit.sh, then unpack)"
# shellcheck disable=SC1091
. "$SVC/env.sh"

# curl where there is one; the GPU image may have only Python.
if ! command -v curl >/dev/null; then
    curl() {
        local url=${*: -1}
        python3 -c 'import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
except Exception:
    sys.exit(22)' "$url"
    }
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
    local port=$1 what=$2 n=0
    until port_open "$port"; do
        n=$((n + 1))
        [ "$n" -le 120 ] || die "$what did not open port $port in 60 s"
        sleep 0.5
    done
}

rabbit_env() {
    export RABBITMQ_NODENAME=fleet@localhost RABBITMQ_NODE_PORT=$AMQP_PORT
    export RABBITMQ_DIST_PORT=$((AMQP_PORT + 20000))
    export RABBITMQ_MNESIA_BASE=$RUN/rabbitmq/mnesia RABBITMQ_LOG_BASE=$RUN/rabbitmq/log
    export RABBITMQ_ENABLED_PLUGINS_FILE=$RUN/rabbitmq/enabled_plugins
    export RABBITMQ_CONFIG_FILE=$RUN/rabbitmq/rabbitmq.conf
    export RABBITMQ_CONF_ENV_FILE=$RUN/rabbitmq/rabbitmq-env.conf
    export RABBITMQ_ADVANCED_CONFIG_FILE=$RUN/rabbitmq/advanced.config
    export RABBITMQ_PID_FILE=$RUN/rabbitmq/pid
    export ERL_EPMD_PORT=$((AMQP_PORT + 30000))
}

services() {
    if port_open "$REDIS_PORT"; then
        log "Redis already listens on $REDIS_PORT; using it"
    else
        mkdir -p "$RUN/redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$RUN/redis" \
            --appendonly yes --appendfsync everysec --save "" \
            --logfile "$RUN/redis/redis.log" --pidfile "$RUN/redis/pid"
        wait_port "$REDIS_PORT" Redis
        touch "$RUN/redis/ours"
        log "Redis on 127.0.0.1:$REDIS_PORT (AOF in $RUN/redis)"
    fi
    if port_open "$AMQP_PORT"; then
        log "RabbitMQ already listens on $AMQP_PORT; using it"
    else
        rabbit_env
        mkdir -p "$RUN/rabbitmq/log" "$RUN/rabbitmq/mnesia"
        echo "[]." > "$RABBITMQ_ENABLED_PLUGINS_FILE"
        : > "$RABBITMQ_CONF_ENV_FILE"
        echo "[]." > "$RABBITMQ_ADVANCED_CONFIG_FILE"
        cat > "$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
disk_free_limit.absolute = 1GB
EOF
        # Erlang's distribution listens on loopback only, too.
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        export ERL_EPMD_ADDRESS=127.0.0.1
        rabbitmq-server -detached >"$RUN/rabbitmq/start.log" 2>&1 ||
            die "rabbitmq-server did not start: $(tail -5 "$RUN/rabbitmq/start.log")"
        wait_port "$AMQP_PORT" RabbitMQ
        touch "$RUN/rabbitmq/ours"
        log "RabbitMQ $(basename "$(ls -d "$SVC"/rabbitmq/lib/rabbitmq_server-*)") on 127.0.0.1:$AMQP_PORT"
    fi
    ffprobe -version | head -n1 >&2
}

up() {
    [ -x "$BIN/fleet" ] || die "no fleet binary in $BIN"
    if curl -fsS "$FLEET_URL/healthz" >/dev/null 2>&1; then die "something listens on $FLEET_LISTEN"; fi
    log "fleet up ${*:---gpus 0}"
    # shellcheck disable=SC2068
    setsid "$BIN/fleet" up ${@:---gpus 0} >"$RUN/fleet.log" 2>&1 &
    echo $! > "$RUN/fleet.pid"
    local n=0
    until curl -fsS "$FLEET_URL/readyz" >/dev/null 2>&1; do
        n=$((n + 1))
        kill -0 "$(cat "$RUN/fleet.pid")" 2>/dev/null || { tail -30 "$RUN/fleet.log" >&2; die "fleet up exited"; }
        [ "$n" -le 240 ] || die "fleet not ready in 120 s"
        sleep 0.5
    done
    sleep 1
    grep -E "worker started|dispatcher listening|GPU pinned|pinned|provider" "$RUN/fleet.log" |
        sed 's/\x1b\[[0-9;]*m//g' | cut -c1-240 >&2 || true
}

fleet_down() {
    if [ -f "$RUN/fleet.pid" ]; then
        local pid
        pid=$(cat "$RUN/fleet.pid")
        if kill -0 "$pid" 2>/dev/null; then
            log "stopping the fleet"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$RUN/fleet.pid"
    fi
}

down() {
    fleet_down
    if [ -f "$RUN/rabbitmq/ours" ]; then
        rabbit_env
        log "stopping RabbitMQ"
        rabbitmqctl -n "$RABBITMQ_NODENAME" shutdown >/dev/null 2>&1 ||
            kill "$(cat "$RABBITMQ_PID_FILE" 2>/dev/null)" 2>/dev/null || true
        epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1 || true
        rm -f "$RUN/rabbitmq/ours"
    fi
    if [ -f "$RUN/redis/ours" ]; then
        log "stopping Redis"
        redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        rm -f "$RUN/redis/ours"
    fi
}

media() {
    # Videos live under FLEET_MEDIA_LOCAL_ROOTS; copied in, so jobs name them there.
    local src=$1 dst
    dst="$RUN/media/$(basename "$src")"
    [ -f "$dst" ] || cp "$src" "$dst"
    echo "$dst"
}

demo() {
    local v
    local label=${2:-demo}
    v=$(media "${1:-$MEDIA/sample-2.mp4}")
    log "$label: $v"
    "$BIN/fleet" submit "$v" --wait --timeout 600 --json > "$OUT/$label-result.json"
    python3 scripts/gpu/fleet_load.py summarize-result "$OUT/$label-result.json"
}

load() {
    local label=$1 n=$2 v
    v=$(media "$3")
    python3 scripts/gpu/fleet_load.py run --url "$FLEET_URL" --video "$v" --jobs "$n" \
        --label "$label" --out "$OUT" --config "${FLEET_CONFIG:-$ROOT/config/fleet.toml}" \
        --metrics "$WORKER_METRICS" --timeout "${LOAD_TIMEOUT_S:-1800}"
}

metric() { curl -fsS "$WORKER_METRICS" 2>/dev/null | grep -E "^$1" || true; }

guard() {
    # A foreign process (PyTorch) takes the card above the warning level while a job waits:
    # the worker must stop taking work, and take it again once the memory is back.
    local v hold=${GUARD_HOLD_S:-20}
    v=$(media "$MEDIA/sample-2.mp4")
    python3 - "$hold" > "$OUT/guard-hog.log" 2>&1 <<'PY' &
import sys, time, torch
free, total = torch.cuda.mem_get_info()
take = int(free - 0.05 * total)            # leaves ~5 % free: well above "critical"
x = torch.empty(take, dtype=torch.uint8, device="cuda")
print(f"{time.time():.3f} holding {take / 2**30:.1f} GiB of {total / 2**30:.1f}", flush=True)
time.sleep(float(sys.argv[1]))
del x
torch.cuda.empty_cache()
print(f"{time.time():.3f} released", flush=True)
PY
    local hog=$!
    sleep 4
    local id
    id=$("$BIN/fleet" submit "$v" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
    log "guard: job $id submitted while the card is full"
    : > "$OUT/guard-samples.txt"
    for _ in $(seq $(( (hold + 40) * 2 ))); do
        printf '%s %s | %s | %s\n' "$(date +%s.%N | cut -c1-14)" \
            "$(metric fleet_gpu_paused | awk '{print $NF}' | head -n1)" \
            "$(metric fleet_in_flight | awk '{s+=$NF} END {print s+0}')" \
            "$(curl -fsS "$FLEET_URL/v1/jobs/$id" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j["progress"]["done"], "/", j["progress"]["total"])')" \
            >> "$OUT/guard-samples.txt"
        grep -q completed <(tail -n1 "$OUT/guard-samples.txt") && break
        sleep 0.5
    done
    wait "$hog" || true
    cat "$OUT/guard-hog.log"
    "$BIN/fleet" result "$id" --json > "$OUT/guard-result.json" 2>/dev/null || true
    python3 scripts/gpu/fleet_load.py guard "$OUT/guard-hog.log" "$OUT/guard-samples.txt" "$OUT/guard-result.json" | tee "$OUT/guard.md"
}

idle() {
    local secs=${FLEET_MODEL_IDLE_SECS:-600}
    log "idle: models resident now:"
    metric fleet_model_device_bytes | tee "$OUT/idle-before.txt"
    log "idle: waiting $((secs + 15)) s without work"
    sleep $((secs + 15))
    metric fleet_model_device_bytes | tee "$OUT/idle-after.txt"
    nvidia-smi --query-gpu=memory.used --format=csv | tee -a "$OUT/idle-after.txt"
}

# The run's config: the shipped one with a decode budget for a host with memory to spare
# (20 jobs' frames at once), or what `plan` proposed.
run_config() {
    if [ "${PLANNED:-0}" = 1 ]; then
        echo "$RUN/planned.toml"
        return
    fi
    sed "s/^decode_memory_bytes = .*/decode_memory_bytes = ${DECODE_BYTES:-8589934592}/" \
        "$ROOT/config/fleet.toml" > "$RUN/fleet.toml"
    operator_models "$RUN/fleet.toml"
    echo "$RUN/fleet.toml"
}

# OPERATOR_MODELS=DIR: the seed's heavy models instead of the shipped light ones, from the
# exports of scripts/bench/gpu_python.py (random weights: their timings are real, their
# detections are not): YOLOv8x for object_detection, YOLOv8s for product_detection,
# SegFormer-b2 for background_segmentation, each with its FP16 twin where there is one.
operator_models() {
    local dir=${OPERATOR_MODELS:-} cfg=$1 a m f
    [ -n "$dir" ] || return 0
    for pair in object_detection:yolov8x product_detection:yolov8s background_segmentation:segformer-b2; do
        a=${pair%%:*} m=${pair#*:} f=$dir/$m.onnx
        [ -f "$f" ] || { log "no $f: $a keeps its shipped model"; continue; }
        grep -q "^\[analyzers\.$a\.params\]" "$cfg" && die "$a already has a params table"
        {
            echo "[analyzers.$a.params]"
            echo "model = \"$f\""
            echo "sha256 = \"$(sha256sum "$f" | cut -c1-64)\""
            if [ -f "$dir/$m.fp16.onnx" ]; then
                echo "model_fp16 = \"$dir/$m.fp16.onnx\""
                echo "model_fp16_sha256 = \"$(sha256sum "$dir/$m.fp16.onnx" | cut -c1-64)\""
            fi
        } >> "$cfg"
        log "$a runs $m (operator export, random weights)"
    done
}

plan() {
    FLEET_CONFIG=$(PLANNED=0 run_config) "$BIN/fleet" plan --measured-prefix "$FLEET_PREFIX" \
        --budget-gb "${BUDGET_GB:-127}" --write "$RUN/planned.toml" | tee "$OUT/plan.txt"
    sed -i "s/^decode_memory_bytes = .*/decode_memory_bytes = ${DECODE_BYTES:-8589934592}/" "$RUN/planned.toml"
}

workload() {
    local uuid label
    uuid=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i "${GPU:-0}")
    export FLEET_CONFIG
    FLEET_CONFIG=$(run_config)
    label=$([ "${PLANNED:-0}" = 1 ] && echo planned || echo fleet)-${JOBS:-20}
    up --gpus "$uuid" --cpu-workers "${CPU_WORKERS:-2}"
    load "$label" "${JOBS:-20}" "${VIDEO:-$MEDIA_FLEET}"
    fleet_down
    sed 's/\x1b\[[0-9;]*m//g' "$RUN/fleet.log" > "$OUT/$label-fleet.log"
    python3 scripts/gpu/fleet_load.py decode "$OUT/$label-fleet.log" | tee -a "$OUT/$label.md"
}

nvdec() {
    "$BIN/bench-decode" "$OUT/bench-decode-gpu.md" --config "${FLEET_CONFIG:-$ROOT/config/fleet.toml}" \
        --only shipped --video "$MEDIA_BENCH" --nvdec "${NVDEC_DEVICE:-0}"
    cat "$OUT/bench-decode-gpu.md"
}

case "${1:-}" in
services) services ;;
up) shift; up "$@" ;;
demo) shift; demo "$@" ;;
load) shift; load "$@" ;;
guard) guard ;;
plan) plan ;;
workload) workload ;;
idle) idle ;;
nvdec) nvdec ;;
stop) fleet_down ;;
down) down ;;
all)
    trap down EXIT
    services
    up --gpus "${GPU:-0}" --cpu-workers "${CPU_WORKERS:-2}"
    demo
    load "fleet-${JOBS:-20}" "${JOBS:-20}" "${VIDEO:-$MEDIA_FLEET}"
    ;;
*)
    sed -n '2,26p' "$0" >&2
    exit 64
    ;;
esac
