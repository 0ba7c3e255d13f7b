"""deploy/grafana/fleet.json against what the processes really export: every PromQL query of
the dashboard names only metrics found on a running dispatcher's and workers' /metrics, and
the dashboard covers what operators look for (slots vs limits, queues, durations per analyzer,
failures, GPU memory and utilization)."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from typing import Iterator, Set

from fleet_fixture import FLAKY, ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "fleet.json"
# PromQL words that look like metric names: functions, aggregations, keywords.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max",
    "abs", "ceil", "floor", "round", "vector", "scalar", "time", "label_replace", "label_join", "absent",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "changes", "resets", "sort", "sort_desc", "inf", "nan",
}


def metric_names(expr: str) -> Set[str]:
    """The metric names a PromQL expression reads."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                          # label matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # label lists
    e = re.sub(r"\[[^\]]*\]", "", e)                         # ranges
    e = re.sub(r"\$\w+|\$\{[^}]*\}", "", e)                  # dashboard variables
    tokens = re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]", t)}


def exported(text: str) -> Set[str]:
    """Every sample name a Prometheus text exposition can have, from its TYPE lines and samples."""
    names: Set[str] = set()
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\w+)", line)
        if m:
            name, kind = m.groups()
            names.add(name)
            names |= {
                "counter": {f"{name}_total", f"{name}_created"},
                "histogram": {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"},
                "summary": {f"{name}_sum", f"{name}_count"},
            }.get(kind, set())
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, 1)[0])
    return names


def queries(node) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from queries(v)


def scrape(url: str, token: str = None) -> str:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read().decode()


def test_the_extractor_finds_metric_names():
    assert metric_names('histogram_quantile(0.95, sum by (le, analyzer) (rate(fleet_x_bucket{stage=~"$stage"}[5m])))') == {"fleet_x_bucket"}
    assert metric_names("sum(fleet_a) / max by (gpu) (fleet_b) > bool 0") == {"fleet_a", "fleet_b"}


def registered_gpu_metrics() -> Set[str]:
    """The GPU gauges common/src/metrics.rs registers (prefix `fleet_`)."""
    src = (ROOT / "common" / "src" / "metrics.rs").read_text()
    return {f"fleet_{n}" for n in re.findall(r'register\(\s*"(gpu_\w+)"', src)}


def exercise(fleet) -> None:
    """Give every family a sample: prometheus-client lists a labelled family only once it has
    one. A retried analyzer (FLAKY), a failed one, a dead-lettered intake message."""
    import pika

    with fleet.client() as c:
        c.wait(c.submit_http("/videos/grafana.mp4", analyzers=[FLAKY, "cut_analysis"]).job_id, timeout=60)
    conn = pika.BlockingConnection(pika.URLParameters(fleet.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish("", f"{fleet.prefix}.jobs", b"{not json", pika.BasicProperties(content_type="application/json"))
    conn.close()


def test_every_dashboard_query_names_an_exported_metric(fleet):
    exercise(fleet)
    names: Set[str] = set()
    for _ in range(50):  # the dead letter is counted once the dispatcher consumed it
        names = exported(scrape(fleet.http_url + "/metrics", fleet.token))
        if "fleet_dead_lettered_total" in names:
            break
        time.sleep(0.1)
    for url in fleet.worker_metrics:
        names |= exported(scrape(url))
    if not shutil.which("nvidia-smi"):
        # No GPU here: the test fleet's GPU worker runs with --allow-cpu-fallback and has no
        # NVML readings to export. The GPU panels are checked against the gauges the worker
        # registers instead; on a machine with a GPU they must be scraped like the rest.
        gpu = registered_gpu_metrics()
        assert len(gpu) >= 4, gpu
        names |= gpu
    dash = json.loads(DASHBOARD.read_text())
    exprs = list(queries(dash["panels"]))
    assert len(exprs) >= 10, "the dashboard lost its panels"
    used: Set[str] = set()
    for expr in exprs:
        found = metric_names(expr)
        assert found, f"query names no metric: {expr}"
        missing = found - names
        assert not missing, f"{expr}: {sorted(missing)} not exported by the dispatcher or workers"
        used |= found
    # What operators look for is on it.
    for must in ("fleet_in_flight", "fleet_stage_limit", "fleet_queue_messages_ready", "fleet_task_duration_seconds_bucket",
                 "fleet_tasks_finished_total", "fleet_dead_lettered_total", "fleet_gpu_memory_used_bytes",
                 "fleet_gpu_utilization_percent"):
        assert must in used, f"the dashboard does not show {must}"


def test_the_dashboard_is_importable():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert "gridPos" in p and p["title"]
