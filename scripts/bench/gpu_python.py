"""The Python side of `bench-gpu` (a benchmark, not a test), run on the GPU machine.

1. Builds YOLOv8s/YOLOv8x (ultralytics, from the architecture's yaml: random weights) and
   SegFormer-B0/B2 (transformers, from a config: random weights) and exports each to ONNX,
   plus an FP16 variant (onnxconverter-common, float32 inputs and outputs kept): the files the
   Rust pipelines run (`bench-gpu run --models DIR`). Speed does not depend on the weights.
2. Times the Python way of running them on the same frames (written by `bench-gpu prepare`):
   ultralytics' predict (PyTorch eager, FP32 and FP16), transformers' SegFormer (eager,
   FP32 and FP16, with the library's image processor and with preprocessing on the GPU), and
   rapidocr with onnxruntime-gpu for OCR.

Usage: python3 gpu_python.py --frames DIR --out DIR [--device cuda|cpu] [--only yolo,seg,ocr]
Writes DIR/{yolov8s,yolov8x,segformer-b0,segformer-b2}[.fp16].onnx and DIR/python.json.

       python3 gpu_python.py --prepare VIDEO --frames DIR
decodes VIDEO with OpenCV into the frame sets `bench-gpu prepare` makes with ffmpeg (for a
machine with OpenCV but no ffmpeg): the same names, sizes and sampling.
"""

import argparse
import copy
import json
import os
import sys
import time

import numpy as np

SEED = 0
BATCH = 16


def log(msg):
    print(f"gpu_python: {msg}", file=sys.stderr, flush=True)


def load_set(frames_dir, name, limit=None):
    meta = json.load(open(os.path.join(frames_dir, "meta.json")))[name]
    w, h = meta["width"], meta["height"]
    data = np.fromfile(os.path.join(frames_dir, meta["file"]), dtype=np.uint8)
    frames = data.reshape(-1, h, w, 3)
    if limit:
        frames = frames[:limit]
    return frames


def to_fp16(src, dst):
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(src)
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, dst)


def sync(device):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def export_yolo(name, out, device):
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.modules import Detect

    torch.manual_seed(SEED)
    yolo = YOLO(f"{name}.yaml")
    model = yolo.model.eval()
    for m in model.modules():
        if isinstance(m, Detect):
            m.export = True
            m.format = "onnx"
            # Anchors from the input's own size: the export takes any height and width (the
            # Rust side feeds 384x640 for 9:16 frames, 640x640 for squarer ones).
            m.dynamic = True
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 2: "anchors"}}
    kwargs = dict(input_names=["images"], output_names=["output0"], dynamic_axes=axes, opset_version=17)

    def export(module, dummy, path):
        try:
            torch.onnx.export(module, dummy, path, dynamo=False, **kwargs)
        except TypeError:
            torch.onnx.export(module, dummy, path, **kwargs)
        import onnx

        m = onnx.load(path)
        meta = m.metadata_props.add()
        meta.key = "names"
        meta.value = str(yolo.model.names)
        onnx.save(m, path)

    path = os.path.join(out, f"{name}.onnx")
    export(model, torch.zeros(1, 3, 640, 640), path)

    class Half(torch.nn.Module):
        """FP16 weights and arithmetic, FP32 in and out: traced by PyTorch itself, so every
        Cast is typed as the graph runs it (onnxconverter-common's rewrite of the FP32 graph
        left a Cast typed float16 where float was declared, which ONNX Runtime refused)."""

        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            y = self.m(x.half())
            y = y[0] if isinstance(y, (list, tuple)) else y
            return y.float()

    half_path = os.path.join(out, f"{name}.fp16.onnx")
    if device == "cuda":
        half = Half(copy.deepcopy(model).half().cuda()).eval()
        export(half, torch.zeros(1, 3, 640, 640, device="cuda"), half_path)
        float_ranges(half_path)
        log(f"exported {path} (+ fp16, traced in half precision)")
    else:
        log(f"exported {path} (no fp16: half precision is traced on a GPU)")
    for mod in model.modules():
        if isinstance(mod, Detect):
            mod.export = False
            mod.dynamic = False
    return yolo


def float_ranges(path):
    """The anchors of a dynamic Detect head come from `arange` in the features' dtype: traced
    in half precision that is an ONNX Range on float16, which the operator does not take
    (ONNX Runtime refused the 2026-12-02 export on the H200). Each such Range runs in float32
    between two Casts."""
    import onnx
    from onnx import TensorProto, helper

    m = onnx.load(path)
    g = m.graph
    half = set()
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT16:
                    half.update(n.output)
        elif n.op_type == "Cast":
            if any(a.name == "to" and a.i == TensorProto.FLOAT16 for a in n.attribute):
                half.update(n.output)
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT16:
            half.add(init.name)
    nodes, fixed = [], 0
    for n in g.node:
        if n.op_type != "Range" or not any(i in half for i in n.input):
            nodes.append(n)
            continue
        fixed += 1
        ins = []
        for k, i in enumerate(n.input):
            name = f"{n.name or 'range'}_{fixed}_in{k}_f32"
            nodes.append(helper.make_node("Cast", [i], [name], to=TensorProto.FLOAT))
            ins.append(name)
        out = n.output[0]
        tmp = f"{out}_f32"
        nodes.append(helper.make_node("Range", ins, [tmp], name=n.name))
        nodes.append(helper.make_node("Cast", [tmp], [out], to=TensorProto.FLOAT16))
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, path)
    log(f"{os.path.basename(path)}: {fixed} float16 Range node(s) run in float32")


def letterbox(frame):
    import cv2

    h, w = frame.shape[:2]
    r = min(640 / w, 640 / h)
    nw, nh = round(w * r), round(h * r)
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((640, 640, 3), 114, np.uint8)
    top, left = round((640 - nh) / 2 - 0.1), round((640 - nw) / 2 - 0.1)
    canvas[top : top + nh, left : left + nw] = img
    return canvas


def calibrate(yolo, frame, device):
    """The score of the 100th best anchor of frame 0, so that NMS sees about 100 candidates a
    frame, as with a trained model on a busy scene (the Rust side uses the same rule)."""
    import torch

    x = torch.from_numpy(letterbox(frame)).permute(2, 0, 1)[None].float() / 255
    model = yolo.model.to(device).float().eval()
    with torch.no_grad():
        out = model(x.to(device))
    out = out[0] if isinstance(out, (list, tuple)) else out
    scores = np.sort(out[0, 4:, :].max(dim=0).values.float().cpu().numpy())[::-1]
    if scores[100] >= scores[0] * 0.999:
        # Untrained heads can score every anchor alike (the class bias alone): then no
        # threshold leaves ~100, and both sides run above the top score (NMS sees nothing).
        return float(scores[0] * 1.01)
    return float(scores[100])


def bench_yolo(yolo, frames, device, conf, half):
    bgr = [f[:, :, ::-1] for f in frames]
    dev = 0 if device == "cuda" else "cpu"
    kw = dict(imgsz=640, conf=conf, half=half, device=dev, verbose=False, max_det=300)
    yolo.predict(bgr[:BATCH], **kw)  # warm-up: model to device, cuDNN autotune
    sync(device)
    t0 = time.perf_counter()
    boxes = 0
    for i in range(0, len(bgr), BATCH):
        for r in yolo.predict(bgr[i : i + BATCH], **kw):
            boxes += len(r.boxes)
    sync(device)
    total = time.perf_counter() - t0
    return {"frames": len(bgr), "total_s": total, "ms_per_frame": total * 1e3 / len(bgr), "boxes": boxes}


SEGFORMER = {
    # depths / hidden sizes / decoder width of the MiT-B0 and B2 encoders.
    "segformer-b0": dict(depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 160, 256], decoder_hidden_size=256),
    "segformer-b2": dict(depths=[3, 4, 6, 3], hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=768),
}


def export_segformer(name, out):
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(SEED)
    cfg = SegformerConfig(num_labels=150, **SEGFORMER[name])
    model = SegformerForSemanticSegmentation(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).logits

    path = os.path.join(out, f"{name}.onnx")
    kwargs = dict(
        input_names=["pixel_values"],
        output_names=["logits"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    dummy = torch.zeros(1, 3, 512, 512)
    try:
        torch.onnx.export(Logits(model), dummy, path, dynamo=False, **kwargs)
    except TypeError:
        torch.onnx.export(Logits(model), dummy, path, **kwargs)
    to_fp16(path, os.path.join(out, f"{name}.fp16.onnx"))
    log(f"exported {path} (+ fp16)")
    return model


def bench_segformer(model, frames, device, half, processor):
    import torch

    dtype = torch.float16 if half else torch.float32
    m = model.to(device).to(dtype).eval()
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    proc = None
    if processor:
        from transformers import SegformerImageProcessor

        proc = SegformerImageProcessor(size={"height": 512, "width": 512})

    def batch(chunk):
        if proc is not None:
            x = proc(images=list(chunk), return_tensors="pt")["pixel_values"].to(device)
        else:
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(device).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False)
            x = (x - mean) / std
        with torch.no_grad():
            logits = m(pixel_values=x.to(dtype)).logits
        return logits.argmax(dim=1).cpu()

    batch(frames[:BATCH])
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, len(frames), BATCH):
        batch(frames[i : i + BATCH])
    sync(device)
    total = time.perf_counter() - t0
    return {"frames": len(frames), "total_s": total, "ms_per_frame": total * 1e3 / len(frames)}


def bench_rapidocr(frames, device, max_s=150.0):
    from rapidocr import RapidOCR

    params = {"Global.log_level": "error"}
    if device == "cuda":
        params["EngineConfig.onnxruntime.use_cuda"] = True
    engine = RapidOCR(params=params)
    bgr = [f[:, :, ::-1].copy() for f in frames]
    engine(bgr[0])
    t0 = time.perf_counter()
    texts = []
    for f in bgr:
        out = engine(f)
        texts.append(sorted(out.txts) if getattr(out, "txts", None) is not None else [])
        if time.perf_counter() - t0 > max_s:
            break  # every new crop shape costs this engine a cuDNN search: cap the wait
    total = time.perf_counter() - t0
    bgr = bgr[: len(texts)]
    import onnxruntime

    return {
        "frames": len(bgr),
        "total_s": total,
        "ms_per_frame": total * 1e3 / len(bgr),
        "providers": onnxruntime.get_available_providers(),
        "texts": texts,
    }


# (name, take every n-th frame (0 = all), longest side): as `bench-gpu prepare`.
SETS = [("ocr", 15, 960), ("faces", 15, 640), ("dense", 1, 640)]


def prepare(video, out):
    import cv2

    os.makedirs(out, exist_ok=True)
    cap = cv2.VideoCapture(video)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    files, meta = {}, {}
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = bgr[:, :, ::-1]
        h, w = rgb.shape[:2]
        for name, every, side in SETS:
            if i % every:
                continue
            scale = min(side / max(w, h), 1.0)
            sw, sh = max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)
            small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
            if name not in files:
                files[name] = open(os.path.join(out, f"{name}.rgb"), "wb")
                meta[name] = {"width": sw, "height": sh, "frames": 0,
                              "fps": fps / every, "file": f"{name}.rgb"}
            files[name].write(np.ascontiguousarray(small).tobytes())
            meta[name]["frames"] += 1
        i += 1
    for f in files.values():
        f.close()
    json.dump(meta, open(os.path.join(out, "meta.json"), "w"), indent=1)
    for name, m in meta.items():
        log(f"{name}: {m['frames']} frames of {m['width']}x{m['height']}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", help="decode this video into --frames and exit")
    ap.add_argument("--frames", required=True)
    ap.add_argument("--out")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--only", default="yolo,seg,ocr")
    ap.add_argument("--limit", type=int, default=None, help="frames per set (quick checks)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new work after this")
    args = ap.parse_args()
    if args.prepare:
        prepare(args.prepare, args.frames)
        return
    if not args.out:
        ap.error("--out is required")
    os.makedirs(args.out, exist_ok=True)
    only = args.only.split(",")
    result_path = os.path.join(args.out, "python.json")
    results = {}

    def save():
        json.dump(results, open(result_path, "w"), indent=1)

    import torch

    started = time.perf_counter()

    def over_budget():
        late = time.perf_counter() - started > args.budget_s
        if late:
            log(f"over the {args.budget_s:.0f} s budget: skipping the rest")
            results["skipped_over_budget"] = True
        return late

    results["versions"] = {"torch": torch.__version__}
    if "yolo" in only:
        import ultralytics

        results["versions"]["ultralytics"] = ultralytics.__version__
        dense = load_set(args.frames, "dense", args.limit)
        for name in ["yolov8s", "yolov8x"]:
            if over_budget():
                break
            yolo = export_yolo(name, args.out, args.device)
            conf = calibrate(yolo, dense[0], args.device)
            runs = {}
            for half in [False, True] if args.device == "cuda" else [False]:
                label = f"ultralytics predict, {'FP16' if half else 'FP32'}, batch {BATCH}"
                log(f"{name}: {label}")
                runs[label] = bench_yolo(yolo, dense, args.device, conf, half)
                save()
            results[name] = {"conf": conf, "runs": runs}
            save()
    if "seg" in only:
        import transformers

        results["versions"]["transformers"] = transformers.__version__
        dense = load_set(args.frames, "dense", args.limit)
        for name in SEGFORMER:
            if over_budget():
                break
            model = export_segformer(name, args.out)
            runs = {}
            # FP16 with the GPU doing the preprocessing (the Python side at its best), and
            # FP32 with the library's image processor (the usual way); both where time allows.
            combos = [(True, False), (False, True)] if args.device == "cuda" else [(False, True)]
            for half, processor in combos:
                if over_budget():
                    break
                label = (
                    f"transformers eager, {'FP16' if half else 'FP32'}, "
                    f"{'SegformerImageProcessor' if processor else 'preprocessing on the GPU'}"
                )
                frames = dense[: min(len(dense), 240)] if processor else dense
                log(f"{name}: {label}")
                runs[label] = bench_segformer(model, frames, args.device, half, processor)
                save()
            results[name] = {"runs": runs}
            save()
    if "ocr" in only and not over_budget():
        import rapidocr

        results["versions"]["rapidocr"] = getattr(rapidocr, "__version__", "3.10.0")
        ocr = load_set(args.frames, "ocr", args.limit)
        log("rapidocr")
        r = bench_rapidocr(ocr, args.device)
        label = f"rapidocr 3.10, onnxruntime {'CUDA' if args.device == 'cuda' else 'CPU'} EP"
        results["rapidocr"] = {label: r}
        save()
    log(f"results in {result_path}")


if __name__ == "__main__":
    main()
