#!/usr/bin/env bash
# Installs (Debian packages) and starts what the fleet needs on this machine: RabbitMQ,
# Redis, ffmpeg, espeak-ng (test speech), fonts (test overlays). Idempotent and quick when
# everything is already there.
set -euo pipefail

need_pkgs=()
command -v rabbitmq-server >/dev/null 2>&1 || need_pkgs+=(rabbitmq-server)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v ffmpeg >/dev/null 2>&1 || need_pkgs+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need_pkgs+=(espeak-ng)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3 python3-pip python3-venv)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_pkgs+=(fonts-dejavu-core)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "services: installing ${need_pkgs[*]} (apt-get)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  # With its append-only file, as the fleet expects of Redis (a restart keeps the jobs).
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly yes \
    --appendfsync everysec --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/fleet-redis.log"
  for _ in $(seq 50); do redis-cli ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "services: starting RabbitMQ on 127.0.0.1:5672"
  rabbitmq-server -detached >/dev/null 2>&1 || true
  timeout 120 rabbitmqctl await_startup >/dev/null 2>&1 || true
  for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.5; done
fi
# The management plugin gives `fleet queues` ready/unacked counts (ships with the server).
if command -v rabbitmq-plugins >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null; then
  rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null 2>&1 || true
fi

redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "services: Redis is not answering on 127.0.0.1:6379" >&2; exit 1; }
(exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { echo "services: RabbitMQ is not answering on 127.0.0.1:5672" >&2; exit 1; }
# A broker under a resource alarm accepts connections but blocks every publisher: tests and
# jobs would hang instead of failing. Say so now (usually the disk: RabbitMQ stops taking
# messages when its disk has less free space than disk_free_limit).
if command -v rabbitmq-diagnostics >/dev/null 2>&1 && ! rabbitmq-diagnostics -q check_alarms >/dev/null 2>&1; then
  echo "services: RabbitMQ reports a resource alarm and blocks publishers:" >&2
  rabbitmq-diagnostics -q alarms >&2 || true
  df -h /var/lib/rabbitmq >&2 || true
  echo "services: free disk space (or memory) so that the alarm clears, then run this again" >&2
  exit 1
fi
command -v cargo >/dev/null 2>&1 || { echo "services: no Rust toolchain (cargo); install Rust >= 1.88 (rustup) first" >&2; exit 1; }
echo "services: RabbitMQ, Redis, ffmpeg ready"
