"""pytest plugin: a real fleet for the Python-side tests.

The session fixture `fleet` starts the cargo-built `dispatcher` and two `worker` binaries (one
GPU-class worker with --allow-cpu-fallback, one CPU worker) against the shared RabbitMQ and
Redis, under a unique prefix so it runs beside everyone else's tests. The workers run
SYNTHETIC analyzers at a small scale (`--synthetic-scale`: each holds its slot for the
analyzer's expected time x scale): the client's tests are about the contract, not the analysis;
every SYNTHETIC outcome says so in its `backend` field. At the end the processes get SIGTERM
and the prefix's queues, exchanges and keys are deleted.

Test output (logs, screenshots) goes to $FLEET_TEST_OUT (default target/py-tests).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
AMQP_URL = os.environ.get("FLEET_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RABBITMQ_API = os.environ.get("FLEET_TEST_RABBITMQ_API", "http://guest:guest@127.0.0.1:15672/")
SYNTHETIC_SCALE = "0.002"
#: This analyzer fails permanently in the test fleet (a test-only knob of the SYNTHETIC
#: backend), so tests see a failed analyzer and its error end to end.
FAILING = "speech_emotion"
#: This one fails transiently on every attempt: retried with backoff, then failed.
FLAKY = "sound_effects"
STAGES = ["stage1", "stage2", "stage3", "stage4", "cpu"]


def out_dir() -> Path:
    d = Path(os.environ.get("FLEET_TEST_OUT", ROOT / "target" / "py-tests"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def bin_path(name: str) -> Path:
    d = Path(os.environ.get("FLEET_BIN_DIR", ROOT / "target" / "debug"))
    p = d / name
    if not p.exists():
        pytest.exit(f"{p} missing: build first (cargo build --workspace --bins)", returncode=2)
    return p


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@dataclass
class Fleet:
    prefix: str
    token: str
    http_url: str
    amqp_url: str
    redis_url: str
    worker_metrics: List[str] = field(default_factory=list)
    procs: Dict[str, subprocess.Popen] = field(default_factory=dict)

    def client(self, **kw):
        from fleet_client import FleetClient

        args = dict(http_url=self.http_url, amqp_url=self.amqp_url, redis_url=self.redis_url,
                    prefix=self.prefix, token=self.token)
        args.update(kw)
        return FleetClient(**args)

    def get(self, path: str, token: bool = True) -> "tuple[int, bytes, dict]":
        req = urllib.request.Request(self.http_url + path)
        if token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)


def fleet_config_file() -> Path:
    """config/fleet.toml plus the failing analyzer's knob, written to the test output."""
    text = (ROOT / "config" / "fleet.toml").read_text()
    for name, how in ((FAILING, "permanent"), (FLAKY, "transient")):
        assert f"[analyzers.{name}.params]" not in text, f"pick another analyzer than {name}"
        text += f'\n[analyzers.{name}.params]\nsynthetic_fail = "{how}"\n'
    path = out_dir() / "fleet.toml"
    path.write_text(text)
    return path


def _env(prefix: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OTEL_"))}
    env.update(
        FLEET_CONFIG=str(fleet_config_file()),
        FLEET_PREFIX=prefix,
        FLEET_AMQP_URL=AMQP_URL,
        FLEET_REDIS_URL=REDIS_URL,
        RUST_LOG=os.environ.get("RUST_LOG", "info"),
    )
    env.update(extra)
    return env


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready at {url} within 60 s:\n{log.read_text()[-3000:]}")


def _cleanup(prefix: str) -> None:
    import pika
    import redis

    try:
        conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        ch = conn.channel()
        for q in [f"{prefix}.jobs", *(f"{prefix}.{s}" for s in STAGES), f"{prefix}.outcomes", f"{prefix}.dlq", f"{prefix}.dead"]:
            ch.queue_delete(q)
        for x in (f"{prefix}.events", f"{prefix}.dlx"):
            ch.exchange_delete(x)
        conn.close()
    except Exception as e:  # cleanup must not hide the test's own result
        print(f"fleet cleanup (RabbitMQ): {e!r}")
    try:
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}:*", count=500):
            r.delete(key)
    except Exception as e:
        print(f"fleet cleanup (Redis): {e!r}")


@pytest.fixture(scope="session")
def fleet():
    prefix = f"py{uuid.uuid4().hex[:12]}"
    token = secrets.token_urlsafe(24)
    listen = free_addr()
    logs = out_dir() / "logs"
    logs.mkdir(exist_ok=True)
    f = Fleet(prefix=prefix, token=token, http_url=f"http://{listen}", amqp_url=AMQP_URL, redis_url=REDIS_URL)
    started: List[subprocess.Popen] = []

    def spawn(name: str, args: List[str], env: Dict[str, str]) -> "tuple[subprocess.Popen, Path]":
        log = logs / f"{name}.log"
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"), cwd=ROOT)
        started.append(p)
        f.procs[name] = p
        return p, log

    try:
        d, dlog = spawn("dispatcher", [str(bin_path("dispatcher"))],
                        _env(prefix, FLEET_LISTEN=listen, FLEET_API_TOKEN=token, FLEET_RABBITMQ_API=RABBITMQ_API))
        _wait_ready(f"{f.http_url}/readyz", d, dlog, "dispatcher")
        for cls, extra in (("gpu", ["--allow-cpu-fallback"]), ("cpu", [])):
            addr = free_addr()
            name = f"{prefix}-{cls}"
            w, wlog = spawn(f"worker-{cls}", [str(bin_path("worker")), "--class", cls, "--name", name,
                                              "--synthetic-scale", SYNTHETIC_SCALE, *extra],
                            _env(prefix, FLEET_METRICS_LISTEN=addr))
            _wait_ready(f"http://{addr}/readyz", w, wlog, f"{cls} worker")
            f.worker_metrics.append(f"http://{addr}/metrics")
        yield f
    finally:
        for p in started:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.wait(timeout=40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        _cleanup(prefix)
