"""Where a model's time goes on ONNX Runtime's CUDA provider (a diagnosis, not a test).

Runs MODEL on random input of SHAPE (dynamic dimensions filled in) with ONNX Runtime's
profiler, a few warm runs first, and prints the run's median and the operators that took the
most time, per operator type and per node, for each provider configuration asked for.

    python3 ort_profile.py MODEL 32x3x48x640 [--nhwc] [--runs 10] [--json OUT]
"""

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def profile(model, shape, nhwc, runs, threads):
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    opts.intra_op_num_threads = threads
    cuda = {
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "use_tf32": "1",
        "prefer_nhwc": "1" if nhwc else "0",
    }
    sess = ort.InferenceSession(model, opts, providers=[("CUDAExecutionProvider", cuda)])
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t) * 1e3)
    path = sess.end_profiling()
    events = json.load(open(path))
    per_type = collections.Counter()
    per_node = collections.Counter()
    provider = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        node = e["name"][: -len("_kernel_time")]
        per_type[args.get("op_name", "?")] += e["dur"]
        per_node[node] += e["dur"]
        provider[node] = args.get("provider", "?")
    total_runs = runs + 3
    return {
        "median_ms": statistics.median(times),
        "by_type_ms": {k: v / 1e3 / total_runs for k, v in per_type.most_common(12)},
        "by_node_ms": [
            {"node": k, "ms": v / 1e3 / total_runs, "provider": provider[k]}
            for k, v in per_node.most_common(12)
        ],
        "cpu_nodes": sorted({k for k, p in provider.items() if "CPU" in p}),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("shape")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    shape = [int(d) for d in a.shape.split("x")]
    out = {}
    for nhwc in (False, True):
        label = "NHWC" if nhwc else "NCHW"
        try:
            r = profile(a.model, shape, nhwc, a.runs, a.threads)
        except Exception as e:  # a provider option this build refuses: say so, go on
            print(f"{os.path.basename(a.model)} {a.shape} {label}: failed: {e}", flush=True)
            continue
        out[label] = r
        print(f"{os.path.basename(a.model)} {a.shape} {label}: median {r['median_ms']:.2f} ms a run")
        for k, v in r["by_type_ms"].items():
            print(f"    {k:24s} {v:8.3f} ms")
        for n in r["by_node_ms"][:6]:
            print(f"    node {n['node'][:48]:48s} {n['ms']:8.3f} ms {n['provider']}")
        if r["cpu_nodes"]:
            print(f"    on the CPU: {', '.join(r['cpu_nodes'][:20])}")
        sys.stdout.flush()
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
