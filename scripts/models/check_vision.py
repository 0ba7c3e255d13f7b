"""Compares the converted vision models with the runtimes their files were made for, on the
test photographs, and prints the largest absolute difference per output:

- NanoDet: ONNX vs TF.js (tfjs_reference.js, pure-JavaScript CPU backend);
- face mesh, iris: ONNX vs the TFLite interpreter (ai-edge-litert);
- selfie segmentation: ONNX vs MediaPipe's own graph (the mediapipe wheel; the TFLite
  interpreter cannot run the model's custom op).

Fails when a difference exceeds TOLERANCE. Run by `scripts/setup-models.sh --check`
(check_vision.sh prepares the tools).

Usage: python check_vision.py --root REPO_ROOT --node-modules DIR --mediapipe-python PY
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter

TOLERANCE = 1e-3
MEAN = np.array([103.53, 116.28, 123.675], np.float32)
STD = np.array([57.375, 57.12, 58.395], np.float32)


def photo(path: Path, w: int, h: int) -> np.ndarray:
    """RGB uint8 [h, w, 3], resized by ffmpeg."""
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        check=True, capture_output=True,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 3)


def report(name: str, ref: np.ndarray, got: np.ndarray, worst: list) -> None:
    diff = float(np.abs(ref.astype(np.float32) - got.reshape(ref.shape)).max())
    print(f"  {name:42} max |diff| {diff:.2e}  (values up to {float(np.abs(ref).max()):.3g})")
    worst.append((diff, name))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--node-modules", type=Path, required=True)
    parser.add_argument("--mediapipe-python", type=Path, required=True)
    args = parser.parse_args()
    root = args.root
    manifest = tomllib.loads((root / "config/models.toml").read_text())
    models = root / ".fleet/models"
    files = {m["id"]: models / m["file"] for m in manifest["model"] + manifest["converted"]}
    media = {m["id"]: root / ".fleet" / m["file"] for m in manifest["test_media"]}
    photos = [media["photo.astronaut"], media["photo.coffee"], media["photo.chelsea"]]
    worst: list = []
    tmp = Path(tempfile.mkdtemp(prefix="check-vision-"))

    print("NanoDet: ONNX vs TF.js")
    onnx_det = ort.InferenceSession(str(files["nanodet"]))
    env = dict(os.environ, NODE_PATH=str(args.node_modules))
    for p in photos:
        x = ((photo(p, 416, 416)[..., ::-1] - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)
        x.tofile(tmp / "in.f32")
        script = root / "scripts/models/tfjs_reference.js"
        subprocess.run(["node", str(script), str(files["nanodet.graph"]), str(tmp / "in.f32"), "1,3,416,416", str(tmp / "ref_")],
                       check=True, env=env, capture_output=True)
        outs = onnx_det.run(None, {"input_1": x})
        for o, meta in zip(outs, onnx_det.get_outputs()):
            report(f"{p.stem} {meta.name} {list(o.shape)}", np.fromfile(tmp / f"ref_{meta.name}.f32", np.float32).reshape(o.shape), o, worst)

    for tfl, conv, side in [("mediapipe.face_mesh.tflite", "mediapipe.face_mesh", 192), ("mediapipe.iris.tflite", "mediapipe.iris", 64)]:
        print(f"{conv}: ONNX vs the TFLite interpreter")
        interp = Interpreter(model_path=str(files[tfl]))
        interp.allocate_tensors()
        sess = ort.InferenceSession(str(files[conv]))
        for p in photos[:1]:
            # The face (mesh) and an eye (iris) of the astronaut, as the pipeline crops them.
            img = photo(p, 512, 512)
            crop = img[35:215, 134:314] if side == 192 else img[86:118, 187:219]
            x = (photo_resize(crop, side) / 255.0).astype(np.float32)[None]
            interp.set_tensor(interp.get_input_details()[0]["index"], x)
            interp.invoke()
            outs = sess.run(None, {"input": x})
            for d, o in zip(interp.get_output_details(), outs):
                report(f"{p.stem} {d['name']} {list(o.shape)}", interp.get_tensor(d["index"]), o, worst)

    print("mediapipe.selfie: ONNX vs MediaPipe's selfie-segmentation graph")
    imgs = np.stack([photo(p, 256, 256) for p in photos])
    np.save(tmp / "imgs.npy", imgs)
    subprocess.run([str(args.mediapipe_python), str(root / "scripts/models/mediapipe_reference.py"), str(tmp / "imgs.npy"), str(tmp / "masks.npy")],
                   check=True, capture_output=True)
    ref = np.load(tmp / "masks.npy")
    sess = ort.InferenceSession(str(files["mediapipe.selfie"]))
    for p, img, r in zip(photos, imgs, ref):
        o = sess.run(None, {"input": (img / 255.0).astype(np.float32)[None]})[0]
        report(f"{p.stem} person mask [256, 256]", r, o[0, ..., 0], worst)

    diff, name = max(worst)
    print(f"largest difference: {diff:.2e} ({name}); tolerance {TOLERANCE}")
    return 0 if diff <= TOLERANCE else 1


def photo_resize(img: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour resize (only to make a model-sized input; both runtimes get the same)."""
    h, w = img.shape[:2]
    ys = (np.arange(side) * h // side).clip(0, h - 1)
    xs = (np.arange(side) * w // side).clip(0, w - 1)
    return img[ys][:, xs].astype(np.float32)


if __name__ == "__main__":
    sys.exit(main())
