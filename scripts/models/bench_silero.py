"""The silero-vad package's own pipeline (ONNX model) on raw audio, for `bench-models`.

Loads AUDIO (f32 little-endian, 16 kHz mono) and the model, runs one warm-up, prints
`{"load_s": ...}`, then for every line `run` on stdin runs `get_speech_timestamps` once and
prints `{"total_s": ..., "segments": [[start, end], ...]}`. The benchmark alternates these runs
with its own, so both sides see the same load on a shared machine.

Usage: python bench_silero.py AUDIO
"""

import json
import sys
import time

import numpy as np


def main() -> int:
    samples = np.fromfile(sys.argv[1], dtype="<f4")
    t0 = time.perf_counter()
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad(onnx=True)
    audio = torch.from_numpy(samples)
    get_speech_timestamps(audio[:16000], model, sampling_rate=16000)
    print(json.dumps({"load_s": time.perf_counter() - t0, "torch_threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            continue
        t0 = time.perf_counter()
        segments = get_speech_timestamps(audio, model, sampling_rate=16000)
        total_s = time.perf_counter() - t0
        print(json.dumps({"total_s": total_s, "segments": [[s["start"], s["end"]] for s in segments]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
