#!/usr/bin/env python3
"""Load and report for a running fleet (scripts/gpu-run.sh), standard library + optional matplotlib.

  fleet_load.py run --url URL --video PATH --jobs N --label L --out DIR --config fleet.toml
      Submits N jobs of one video at once over the HTTP API (distinct job ids: nothing is
      shared between them but the file), follows them to the end, and samples the GPU through
      nvidia-smi (NVML) and the GPU worker's /metrics meanwhile. Writes DIR/L.json (every
      job, every analyzer's slot span, the samples), DIR/L.md (figures) and DIR/L.png (slot
      occupancy per stage next to GPU utilization and memory) when matplotlib is there.
  fleet_load.py summarize-result RESULT.json      one result as a table
  fleet_load.py compare A.json B.json             two results of one video, analyzer by analyzer
  fleet_load.py guard HOG.log SAMPLES.txt RESULT.json   the memory-guard run of gpu-run.sh guard
  fleet_load.py report DATA.json [--config fleet.toml] [--plot OUT.png]   figures again
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request

IGNORED_KEYS = {"backend", "provider", "duration_ms", "worker", "started_at_ms",
                "finished_at_ms", "attempts", "timing", "model_device", "elapsed_ms"}


def http(method, url, body=None, timeout=30):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    token = os.environ.get("FLEET_API_TOKEN")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Sampler:
    """nvidia-smi every 200 ms and the worker's /metrics every second, in the background."""

    def __init__(self, metrics_url):
        self.metrics_url = metrics_url
        self.gpu, self.worker = [], []
        self.stop = threading.Event()
        self.proc = None
        self.threads = []

    def start(self):
        if shutil.which("nvidia-smi"):
            self.proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used,memory.total",
                 "--format=csv,noheader,nounits", "-lms", "200"],
                stdout=subprocess.PIPE, text=True)
            self.threads.append(threading.Thread(target=self._gpu, daemon=True))
        self.threads.append(threading.Thread(target=self._metrics, daemon=True))
        for t in self.threads:
            t.start()

    def _gpu(self):
        for line in self.proc.stdout:
            try:
                util, used, total = (float(x) for x in line.split(","))
            except ValueError:
                continue
            self.gpu.append({"t": time.time(), "util": util, "used_mib": used, "total_mib": total})
            if self.stop.is_set():
                break

    def _metrics(self):
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=2) as r:
                    text = r.read().decode()
                s = {"t": time.time()}
                for line in text.splitlines():
                    if line.startswith(("fleet_in_flight", "fleet_gpu_paused",
                                        "fleet_model_device_bytes")):
                        name, _, value = line.rpartition(" ")
                        s[name] = float(value)
                self.worker.append(s)
            except (OSError, ValueError):
                pass
            self.stop.wait(1.0)

    def finish(self):
        self.stop.set()
        if self.proc:
            self.proc.terminate()
        for t in self.threads:
            t.join(timeout=3)


def run(a):
    cfg = tomllib.load(open(a.config, "rb"))
    limits = {name: s["concurrency"] for name, s in cfg["stages"].items()}
    deps = {name: a.get("needs", []) + a.get("uses", []) for name, a in cfg["analyzers"].items()}
    sampler = Sampler(a.metrics)
    sampler.start()
    t0 = time.time()
    ids = []
    for i in range(a.jobs):
        ans = http("POST", f"{a.url}/v1/jobs", {"video": a.video,
                                                "metadata": {"load": a.label, "copy": i}})
        ids.append(ans["job_id"])
    print(f"load {a.label}: {len(ids)} jobs submitted in {time.time() - t0:.2f} s", flush=True)
    done, last_print = {}, 0.0
    while len(done) < len(ids):
        for j in ids:
            if j in done:
                continue
            v = http("GET", f"{a.url}/v1/jobs/{j}")
            if v["status"] in ("completed", "cancelled"):
                done[j] = v
        now = time.time()
        if now - last_print > 10:
            print(f"  {now - t0:6.1f} s: {len(done)}/{len(ids)} jobs done", flush=True)
            last_print = now
        if now - t0 > a.timeout:
            # The figures of what finished, marked as a cut run (a device call has a limit).
            print(f"load {a.label}: {len(ids) - len(done)} jobs not done after {a.timeout} s; "
                  "reporting the completed ones", flush=True)
            break
        time.sleep(0.25)
    t_end = time.time()
    sampler.finish()
    if not done:
        sys.exit(f"load {a.label}: no job completed in {a.timeout} s")
    jobs = []
    for j in [j for j in ids if j in done]:
        r = http("GET", f"{a.url}/v1/jobs/{j}/result")
        jobs.append({"id": j, "created_at_ms": done[j]["created_at_ms"],
                     "completed_at_ms": done[j].get("completed_at_ms"),
                     "status": r["status"], "analyzers": r["analyzers"],
                     "failed": r.get("failed", {})})
    data = {"label": a.label, "video": a.video, "jobs_n": len(jobs), "submitted": len(ids),
            "cut_at_s": a.timeout if len(done) < len(ids) else None, "limits": limits,
            "deps": deps,
            "t0": t0, "t_end": t_end, "jobs": jobs, "gpu": sampler.gpu,
            "worker": sampler.worker}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, f"{a.label}.json"), "w") as f:
        json.dump(data, f)
    report = figures(data)
    with open(os.path.join(a.out, f"{a.label}.md"), "w") as f:
        f.write(report)
    print(report)
    plot(data, os.path.join(a.out, f"{a.label}.png"))


def spans(data):
    """Each analyzer run as a slot span, with the time it became ready: its job's creation or
    the end of the last analyzer it depends on (`needs` and `uses`), whichever is later."""
    out = []
    deps = data.get("deps", {})
    for j in data["jobs"]:
        an = j["analyzers"]
        for name, o in an.items():
            if o.get("started_at_ms") and o.get("finished_at_ms") and o["worker"] != "dispatcher":
                ready = max([j["created_at_ms"]] + [an[d]["finished_at_ms"] for d in deps.get(name, [])
                                                    if d in an and an[d].get("finished_at_ms")])
                out.append({"job": j["id"], "analyzer": name, "stage": o["stage"],
                            "status": o["status"], "backend": o["backend"],
                            "start": o["started_at_ms"] / 1000 - data["t0"],
                            "end": o["finished_at_ms"] / 1000 - data["t0"],
                            "ready": ready / 1000 - data["t0"],
                            "queued": (o["started_at_ms"] - ready) / 1000})
    return out


def occupancy(sp, stage, t):
    return sum(1 for s in sp if s["stage"] == stage and s["start"] <= t < s["end"])


def figures(data):
    sp = spans(data)
    t0 = data["t0"]
    ends = [j["completed_at_ms"] / 1000 - t0 for j in data["jobs"] if j["completed_at_ms"]]
    lat = sorted((j["completed_at_ms"] - j["created_at_ms"]) / 1000
                 for j in data["jobs"] if j["completed_at_ms"])
    makespan = max(ends)
    lines = [f"## {data['label']}: {data['jobs_n']} jobs of {os.path.basename(data['video'])}", "",
             f"- makespan {makespan:.1f} s (first submit to last completion); "
             f"**{3600 * data['jobs_n'] / makespan:.0f} videos/hour**"
             + (f" (run cut at {data['cut_at_s']:.0f} s: {data['jobs_n']} of {data['submitted']} "
                "jobs completed; the figure counts those)" if data.get("cut_at_s") else ""),
             f"- job latency (submit to completed): median {statistics.median(lat):.1f} s, "
             f"min {lat[0]:.1f} s, max {lat[-1]:.1f} s"]
    st = {}
    for s in sp:
        st.setdefault(s["stage"], []).append(s)
    lines += ["", "| stage | limit | tasks | slot-s | busy share of makespan | idle slot-s while its tasks waited |",
              "|---|---:|---:|---:|---:|---:|"]
    for stage in sorted(st):
        ss = st[stage]
        limit = data["limits"].get(stage, 1)
        slot_s = sum(s["end"] - s["start"] for s in ss)
        # Waiting work: a slot under the limit while tasks of the stage were ready (their job
        # submitted, what they depend on done) but not started.
        last_start = max(s["start"] for s in ss)
        idle, step, t = 0.0, 0.05, 0.0
        while t < last_start:
            waiting = sum(1 for s in ss if s["ready"] <= t < s["start"])
            if waiting:
                idle += step * min(waiting, max(0, limit - occupancy(ss, stage, t)))
            t += step
        lines.append(f"| {stage} | {limit} | {len(ss)} | {slot_s:.1f} | "
                     f"{slot_s / (limit * makespan):.2f} | {idle:.1f} |")
    by = {}
    for s in sp:
        by.setdefault(s["analyzer"], []).append(s)
    lines += ["", "| analyzer | stage | backend | status | median slot s | median wait when ready s |",
              "|---|---|---|---|---:|---:|"]
    for name in sorted(by, key=lambda n: -statistics.median(x["end"] - x["start"] for x in by[n])):
        xs = by[name]
        backends = ",".join(sorted({x["backend"] for x in xs}))
        statuses = ",".join(sorted({x["status"] for x in xs}))
        lines.append(f"| {name} | {xs[0]['stage']} | {backends} | {statuses} | "
                     f"{statistics.median(x['end'] - x['start'] for x in xs):.2f} | "
                     f"{statistics.median(x['queued'] for x in xs):.2f} |")
    g = [x for x in data["gpu"] if x["t"] <= t0 + makespan]
    if g:
        busy = [x["util"] for x in g]
        lines += ["", f"- GPU utilization (NVML, {len(g)} samples at 200 ms): mean "
                  f"{statistics.mean(busy):.0f} %, median {statistics.median(busy):.0f} %, "
                  f"share of samples >= 80 %: {sum(b >= 80 for b in busy) / len(busy):.2f}; "
                  f"memory used max {max(x['used_mib'] for x in g) / 1024:.1f} GiB of "
                  f"{g[0]['total_mib'] / 1024:.1f} GiB"]
    failed = sum(len(j["failed"]) for j in data["jobs"])
    lines.append(f"- analyzer failures: {failed}")
    return "\n".join(lines) + "\n"


def plot(data, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot")
        return
    sp = spans(data)
    stages = sorted({s["stage"] for s in sp})
    end = max(s["end"] for s in sp)
    ts = [i * end / 600 for i in range(601)]
    rows = len(stages) + 2
    fig, ax = plt.subplots(rows, 1, figsize=(11, 1.6 * rows), sharex=True)
    for i, stage in enumerate(stages):
        ax[i].fill_between(ts, [occupancy(sp, stage, t) for t in ts], step="post", alpha=0.6)
        ax[i].axhline(data["limits"].get(stage, 1), ls="--", c="k", lw=0.8)
        ax[i].set_ylabel(stage, rotation=0, ha="right")
    g = data["gpu"]
    gt = [x["t"] - data["t0"] for x in g]
    ax[-2].plot(gt, [x["util"] for x in g], lw=0.8)
    ax[-2].set_ylim(0, 105)
    ax[-2].set_ylabel("GPU util %", rotation=0, ha="right")
    ax[-1].plot(gt, [x["used_mib"] / 1024 for x in g], lw=0.8, c="C1")
    ax[-1].set_ylabel("GPU mem GiB", rotation=0, ha="right")
    ax[-1].set_xlabel("seconds from the first submit")
    ax[-1].set_xlim(0, end)
    fig.suptitle(f"{data['label']}: slots per stage (dashed: limit), GPU through NVML")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


def summarize(a):
    r = json.load(open(a.result))
    print(f"job {r.get('job_id', '?')}: {r['status']}")
    for name, o in sorted(r["analyzers"].items()):
        print(f"  {name:26} {o['status']:8} {o['backend']:12} {o['duration_ms'] / 1000:7.2f} s"
              f"  {o.get('error') or ''}"[:160])


def diff(a, b, path, out, rel):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in IGNORED_KEYS:
                continue
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only in {'B' if k not in a else 'A'}")
            else:
                diff(a[k], b[k], f"{path}.{k}", out, rel)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} vs {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, rel)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if abs(a - b) > rel * max(1.0, abs(a), abs(b)):
            out.append(f"{path}: {a} vs {b}")
    elif a != b:
        out.append(f"{path}: {json.dumps(a)[:60]} vs {json.dumps(b)[:60]}")


def compare(a):
    ra, rb = json.load(open(a.a)), json.load(open(a.b))
    same = 0
    for name in sorted(set(ra["analyzers"]) | set(rb["analyzers"])):
        oa, ob = ra["analyzers"].get(name), rb["analyzers"].get(name)
        if oa is None or ob is None:
            print(f"{name}: only in {'B' if oa is None else 'A'}")
            continue
        out = []
        diff({"status": oa["status"], "result": oa.get("result")},
             {"status": ob["status"], "result": ob.get("result")}, name, out, a.rel)
        tag = f"{oa['backend']} vs {ob['backend']}"
        if out:
            print(f"{name} ({tag}): {len(out)} differences")
            for d in out[:a.show]:
                print(f"    {d}")
        else:
            same += 1
            print(f"{name} ({tag}): identical (numbers within {a.rel:g} relative)")
    print(f"{same} of {len(ra['analyzers'])} analyzers identical")


def report(a):
    data = json.load(open(a.data))
    if a.config:
        cfg = tomllib.load(open(a.config, "rb"))
        data["deps"] = {n: x.get("needs", []) + x.get("uses", []) for n, x in cfg["analyzers"].items()}
    text = figures(data)
    print(text)
    if a.plot:
        plot(data, a.plot)


def decode_log(a):
    """Decode passes in a `fleet up` log: wall time per pass, per worker."""
    import re
    per = {}
    for line in open(a.log, errors="replace"):
        if "decoded frames in one pass" not in line:
            continue
        who = line.split("|", 1)[0].strip()
        m = re.search(r"elapsed_ms=(\d+)", line)
        nv = re.search(r"nvdec=(\w+)", line)
        if m:
            per.setdefault((who, nv.group(1) if nv else "?"), []).append(int(m.group(1)) / 1000)
    print("| process | NVDEC | decode passes | median s | max s | total s |\n|---|---|---:|---:|---:|---:|")
    for (who, nv), xs in sorted(per.items()):
        print(f"| {who} | {nv} | {len(xs)} | {statistics.median(xs):.2f} | {max(xs):.2f} | {sum(xs):.1f} |")


def guard(a):
    hog = open(a.hog).read().split("\n")
    held = next(float(x.split()[0]) for x in hog if "holding" in x)
    released = next(float(x.split()[0]) for x in hog if "released" in x)
    rows = []
    for line in open(a.samples):
        t, rest = line.split(" ", 1)
        paused, in_flight, job = (x.strip() for x in rest.split("|"))
        rows.append((float(t), paused, in_flight, job))
    first_paused = next((t for t, p, _, _ in rows if p == "1"), None)
    resumed = next((t for t, p, _, _ in rows if first_paused and t > first_paused and p == "0"), None)
    r = json.load(open(a.result)) if os.path.getsize(a.result) else {"analyzers": {}}
    gpu_starts = [o["started_at_ms"] / 1000 for o in r["analyzers"].values()
                  if o.get("started_at_ms") and o.get("stage", "").startswith("stage")]
    first_gpu = min(gpu_starts) if gpu_starts else None
    rel = lambda t: "never" if t is None else f"{t - held:+.1f} s"
    print(f"## Memory guard under a foreign allocation\n\n"
          f"- foreign process took the card at 0.0 s ({hog[0].split(' ', 1)[1]}), released it at "
          f"{released - held:+.1f} s\n"
          f"- worker paused (fleet_gpu_paused = 1) first seen at {rel(first_paused)}; "
          f"resumed (0) at {rel(resumed)}\n"
          f"- first GPU-stage task of the job submitted meanwhile started at {rel(first_gpu)}; "
          f"job {r.get('status', '?')}\n"
          f"- samples: {len(rows)} at 0.5 s (time, paused, in flight, job progress)\n")
    if first_gpu is not None and first_paused is not None and held < first_gpu < released:
        print("**The guard did not hold: a GPU task started while the card was full.**")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--url", required=True)
    r.add_argument("--video", required=True)
    r.add_argument("--jobs", type=int, default=20)
    r.add_argument("--label", default="load")
    r.add_argument("--out", required=True)
    r.add_argument("--config", required=True)
    r.add_argument("--metrics", default="http://127.0.0.1:9100/metrics")
    r.add_argument("--timeout", type=float, default=1800)
    s = sub.add_parser("summarize-result")
    s.add_argument("result")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--rel", type=float, default=0.02)
    c.add_argument("--show", type=int, default=6)
    rp = sub.add_parser("report")
    rp.add_argument("data")
    rp.add_argument("--config")
    rp.add_argument("--plot")
    dl = sub.add_parser("decode")
    dl.add_argument("log")
    g = sub.add_parser("guard")
    g.add_argument("hog")
    g.add_argument("samples")
    g.add_argument("result")
    a = p.parse_args()
    {"run": run, "summarize-result": summarize, "compare": compare, "guard": guard,
     "report": report, "decode": decode_log}[a.cmd](a)


if __name__ == "__main__":
    main()
