"""The rapidocr package's own pipeline on raw frames, for `bench-models` (not a test).

Reads FRAMES (packed RGB24, N x H x W x 3) and prints JSON: per-frame lines, the load time and
the time to process every frame once (after one warm-up call, as our side is timed warm too).

Usage: python bench_rapidocr.py FRAMES WIDTH HEIGHT
"""

import json
import sys
import time

import numpy as np


def main() -> int:
    path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    data = np.fromfile(path, dtype=np.uint8)
    frames = data.reshape(-1, height, width, 3)[:, :, :, ::-1].copy()  # RGB -> BGR, as cv2 loads
    t0 = time.perf_counter()
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error"})
    engine(frames[0])  # warm-up: sessions are created lazily on the first call
    load_s = time.perf_counter() - t0
    per_frame = []
    t0 = time.perf_counter()
    for frame in frames:
        out = engine(frame)
        txts = list(out.txts) if getattr(out, "txts", None) is not None else []
        scores = list(out.scores) if getattr(out, "scores", None) is not None else []
        per_frame.append([{"text": t, "score": float(s)} for t, s in zip(txts, scores)])
    total_s = time.perf_counter() - t0
    print(json.dumps({"load_s": load_s, "total_s": total_s, "frames": per_frame}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
