"""Build the vision models' ONNX graphs from the fetched files, offline and deterministic.

- `nanodet`: NanoDet-m 416 (COCO-80) from its TF.js graph (tfjs_onnx.py).
- `mediapipe.selfie`, `mediapipe.face_mesh`, `mediapipe.iris`: MediaPipe's selfie
  segmentation, 468-point face mesh and iris landmark models from their .tflite files
  (tflite_onnx.py; the selfie model's custom transposed convolution becomes ConvTranspose).
- `ppocr.rec.greedy`: the PP-OCR recognizer with its greedy CTC path computed in the graph
  (`head = "ctc_greedy"`, see ctc_greedy()).

Each output (and its FP16 variant, where config/models.toml has `fp16_file`) is checked
against the sha256 pinned in config/models.toml ([[converted]] with this script); a file
already in place with the right hash is left alone. The converters' own checks against the
reference runtimes (TF.js, the TFLite interpreter, MediaPipe's graph) are in
check_vision.py, run by `scripts/setup-models.sh --check`.

Usage: python convert_vision.py --root REPO_ROOT    (run by scripts/setup-models.sh)
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tomllib
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tfjs_onnx  # noqa: E402
import tflite_onnx  # noqa: E402

SCRIPT = "scripts/models/convert_vision.py"
CONVERTER = "fleet-vision-onnx 1"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(entry: dict, inputs: dict, models: Path) -> onnx.ModelProto:
    srcs = [inputs[i] for i in entry["from"]]
    for s in srcs:
        path = models / s["file"]
        if not path.exists() or sha256_of(path) != s["sha256"]:
            raise SystemExit(f"{path} does not match config/models.toml; run fetch_models.py first")
    first = models / srcs[0]["file"]
    if entry.get("head") == "ctc_greedy":
        model = ctc_greedy(onnx.load(str(first)))
    elif first.suffix == ".json":
        import json

        graph = json.loads(first.read_text())
        weights = tfjs_onnx.load_weights(first.parent, graph["weightsManifest"])
        model = tfjs_onnx.Converter(graph, weights).convert()
    else:
        model = tflite_onnx.Converter(first.read_bytes()).convert()
    meta = {
        "source": f"{srcs[0]['package']}@{srcs[0]['version']} {srcs[0]['member']}",
        "source_sha256": srcs[0]["sha256"],
        "converter": CONVERTER,
        "license": entry.get("license", ""),
    }
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    return model


def ctc_greedy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A CTC recognizer whose output is its greedy path, [batch, steps, 2] = (the best
    class's probability, its index as float), instead of every class's probability: for
    PP-OCRv6 that is 2 values a step instead of 18710 (192 MB for 32 lines at 640 px, which
    our path copied out and scanned on the CPU). ArgMax keeps the first of equal maxima, as
    the Rust decoder does. The model's metadata stays (the `character` dictionary) and
    `classes` records the class count the dictionary is checked against."""
    from onnx import TensorProto, helper

    g = model.graph
    probs = g.output[0]
    dims = probs.type.tensor_type.shape.dim
    classes = dims[2].dim_value
    g.node.extend(
        [
            helper.make_node("ReduceMax", [probs.name], ["greedy_prob"], axes=[-1], keepdims=1, name="greedy_max"),
            helper.make_node("ArgMax", [probs.name], ["greedy_index"], axis=-1, keepdims=1, name="greedy_argmax"),
            helper.make_node("Cast", ["greedy_index"], ["greedy_index_f"], to=TensorProto.FLOAT, name="greedy_cast"),
            helper.make_node("Concat", ["greedy_prob", "greedy_index_f"], ["greedy"], axis=-1, name="greedy_concat"),
        ]
    )
    shape = [d.dim_param or d.dim_value for d in dims[:2]] + [2]
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("greedy", TensorProto.FLOAT, shape))
    p = model.metadata_props.add()
    p.key, p.value = "classes", str(classes)
    onnx.checker.check_model(model)
    return model


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    import warnings

    from onnxconverter_common import float16

    # It warns for every weight below float16's range that it rounds (to +-1e-7): harmless.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    root: Path = args.root
    manifest = tomllib.loads((root / "config/models.toml").read_text())
    models = root / ".fleet" / "models"
    inputs = {m["id"]: m for m in manifest["model"]}
    failures = []
    for entry in (c for c in manifest.get("converted", []) if c["script"] == SCRIPT):
        outs = [(entry["file"], entry["sha256"], False)]
        if "fp16_file" in entry:
            outs.append((entry["fp16_file"], entry.get("fp16_sha256", ""), True))
        if all((models / f).exists() and sha256_of(models / f) == h for f, h, _ in outs):
            for f, _, _ in outs:
                print(f"ok    {entry['id']:18} .fleet/models/{f}")
            continue
        model = build(entry, inputs, models)
        for f, want, half in outs:
            dest = models / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_suffix(".onnx.part")
            onnx.save(to_fp16(model) if half else model, str(tmp))
            got = sha256_of(tmp)
            if got != want:
                failures.append(f".fleet/models/{f}: built sha256 {got}, config/models.toml expects {want}")
                tmp.unlink()
                continue
            tmp.replace(dest)
            print(f"built {entry['id']:18} .fleet/models/{f}")
    if failures:
        print("\nSHA256 MISMATCH - the conversion changed; refusing to use its output:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
