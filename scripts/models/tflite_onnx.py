"""Convert a float TFLite model (MediaPipe's face mesh, iris and selfie segmentation) into ONNX.

General only as far as those graphs need: CONV_2D, DEPTHWISE_CONV_2D, the transposed
convolution MediaPipe registers as the custom op `Convolution2DTransposeBias` (becomes a
standard ConvTranspose with bias), PRELU, RELU, HARD_SWISH, LOGISTIC, ADD, MUL, MAX_POOL_2D,
AVERAGE_POOL_2D, PAD, RESHAPE, CONCATENATION, RESIZE_BILINEAR, and DEQUANTIZE of float16
weights (folded into float32 initializers). Activations run NCHW inside the graph; the
model's own interface stays as it is (NHWC input and outputs), with the batch dimension
dynamic. Deterministic: the same .tflite gives the same bytes.

Usage as a script: python3 tflite_onnx.py MODEL.tflite OUT.onnx
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
# NHWC axis -> NCHW axis.
TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}
ACTIVATIONS = {0: None, 1: "Relu", 3: "Relu6"}


def opcode_names(model) -> list[str]:
    by_value = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    names = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = by_value[code]
        names.append(f"CUSTOM:{oc.CustomCode().decode()}" if name == "CUSTOM" else name)
    return names


def options(op, cls):
    table = op.BuiltinOptions()
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return opts


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Converter:
    def __init__(self, buf: bytes):
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.g = self.model.Subgraphs(0)
        self.codes = opcode_names(self.model)
        self.consts: dict[int, np.ndarray] = {}
        self.shape: dict[int, list[int]] = {}
        # 4D activations are held NCHW in the ONNX graph.
        self.nchw: dict[int, bool] = {}
        self.nodes: list = []
        self.inits: list = []
        self.n = 0
        for i in range(self.g.TensorsLength()):
            t = self.g.Tensors(i)
            self.shape[i] = t.ShapeAsNumpy().tolist() if t.ShapeLength() else []
            data = self.model.Buffers(t.Buffer()).DataAsNumpy()
            if t.Buffer() and not isinstance(data, int) and data.size:
                arr = np.frombuffer(data.tobytes(), TYPES[t.Type()]).reshape(self.shape[i])
                self.consts[i] = arr

    def tname(self, i: int) -> str:
        return f"t{i}_" + self.g.Tensors(i).Name().decode().replace(";", "_").replace(":", "_")[:60]

    def fresh(self, hint: str) -> str:
        self.n += 1
        return f"{hint}__{self.n}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.require(value, requirements="C"), name))
        return name

    def emit(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        output = output or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def act(self, x: str, fused: int, out: str) -> str:
        kind = ACTIVATIONS.get(fused, "?")
        if kind == "?":
            raise SystemExit(f"fused activation {fused} is not supported")
        if kind is None:
            return self.emit("Identity", [x], out)
        if kind == "Relu6":
            return self.emit("Clip", [x, self.const(np.float32(0), "lo"), self.const(np.float32(6), "hi")], out)
        return self.emit(kind, [x], out)

    def operand(self, i: int, like: int | None = None) -> str:
        """Tensor `i` as an ONNX input; a constant operand of a 4D NCHW activation `like` is
        re-laid out to broadcast the same way."""
        if i not in self.consts:
            return self.tname(i)
        v = self.consts[i].astype(np.float32) if self.consts[i].dtype == np.float16 else self.consts[i]
        if like is not None and self.nchw.get(like):
            if v.ndim == 4:
                v = v.transpose(0, 3, 1, 2)
            elif v.ndim >= 1 and v.shape[-1] > 1:
                v = v.reshape(-1, 1, 1)
        return self.const(v, "c")

    def convert(self) -> onnx.ModelProto:
        inputs, outputs = [], []
        for k in range(self.g.InputsLength()):
            i = self.g.Inputs(k)
            shape = self.shape[i]
            inputs.append(helper.make_tensor_value_info(f"input_{k}" if k else "input", TensorProto.FLOAT, ["N"] + shape[1:]))
            src = inputs[-1].name
            if len(shape) == 4:
                self.emit("Transpose", [src], self.tname(i), perm=[0, 3, 1, 2])
                self.nchw[i] = True
            else:
                self.emit("Identity", [src], self.tname(i))
        for k in range(self.g.OperatorsLength()):
            self.lower(self.g.Operators(k))
        for k in range(self.g.OutputsLength()):
            i = self.g.Outputs(k)
            name = self.g.Tensors(i).Name().decode()
            if self.nchw.get(i):
                self.emit("Transpose", [self.tname(i)], name, perm=[0, 2, 3, 1])
            else:
                self.emit("Identity", [self.tname(i)], name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N"] + self.shape[i][1:]))
        graph = helper.make_graph(self.nodes, "tflite", inputs, outputs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fleet-tflite-onnx")
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    def lower(self, op) -> None:
        code = self.codes[op.OpcodeIndex()]
        ins = [op.Inputs(k) for k in range(op.InputsLength())]
        outs = [op.Outputs(k) for k in range(op.OutputsLength())]
        o = outs[0]
        out = self.tname(o)
        x = ins[0]
        if code == "DEQUANTIZE":
            if x not in self.consts:
                raise SystemExit("DEQUANTIZE of an activation is not supported")
            self.consts[o] = self.consts[x].astype(np.float32)
            return
        four = len(self.shape[o]) == 4
        if code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            depthwise = code == "DEPTHWISE_CONV_2D"
            opts = options(op, tflite.DepthwiseConv2DOptions if depthwise else tflite.Conv2DOptions)
            w = self.consts[ins[1]].astype(np.float32)
            _, h, wd, cin = self.shape[x]
            if depthwise:  # [1, kh, kw, cin * mult]
                kh, kw = w.shape[1:3]
                weight = w.transpose(3, 0, 1, 2)
                group = cin
            else:  # [cout, kh, kw, cin]
                kh, kw = w.shape[1:3]
                weight = w.transpose(0, 3, 1, 2)
                group = 1
            sh, sw = opts.StrideH(), opts.StrideW()
            dh, dw = opts.DilationHFactor() or 1, opts.DilationWFactor() or 1
            if opts.Padding() == tflite.Padding.SAME:
                ph, pw = same_pads(h, kh, sh, dh), same_pads(wd, kw, sw, dw)
                pads = [ph[0], pw[0], ph[1], pw[1]]
            else:
                pads = [0, 0, 0, 0]
            args = [self.tname(x), self.const(weight, "w")]
            if len(ins) > 2 and ins[2] >= 0:
                args.append(self.const(self.consts[ins[2]].astype(np.float32), "b"))
            y = self.emit("Conv", args, kernel_shape=[kh, kw], strides=[sh, sw], dilations=[dh, dw], pads=pads, group=group)
            self.act(y, opts.FusedActivationFunction(), out)
        elif code == "CUSTOM:Convolution2DTransposeBias":
            padding, stride_w, stride_h = struct.unpack("<iii", op.CustomOptionsAsNumpy().tobytes()[:12])
            w = self.consts[ins[1]].astype(np.float32)  # [cout, kh, kw, cin]
            cout, kh, kw, cin = w.shape
            _, h, wd, _ = self.shape[x]
            oh, ow = self.shape[o][1:3]
            # TfLitePadding: 1 = SAME, 2 = VALID. The crop that makes `out = in * stride` (SAME)
            # is the forward convolution's SAME padding, smaller half first.
            th = max((h - 1) * stride_h + kh - oh, 0)
            tw = max((wd - 1) * stride_w + kw - ow, 0)
            if padding == 2:
                th = tw = 0
            pads = [th // 2, tw // 2, th - th // 2, tw - tw // 2]
            args = [self.tname(x), self.const(w.transpose(3, 0, 1, 2), "w"), self.const(self.consts[ins[2]].astype(np.float32), "b")]
            self.emit("ConvTranspose", args, out, kernel_shape=[kh, kw], strides=[stride_h, stride_w], pads=pads)
        elif code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            opts = options(op, tflite.Pool2DOptions)
            _, h, wd, _ = self.shape[x]
            kh, kw, sh, sw = opts.FilterHeight(), opts.FilterWidth(), opts.StrideH(), opts.StrideW()
            if opts.Padding() == tflite.Padding.SAME:
                ph, pw = same_pads(h, kh, sh), same_pads(wd, kw, sw)
                pads = [ph[0], pw[0], ph[1], pw[1]]
            else:
                pads = [0, 0, 0, 0]
            kind = "MaxPool" if code == "MAX_POOL_2D" else "AveragePool"
            y = self.emit(kind, [self.tname(x)], kernel_shape=[kh, kw], strides=[sh, sw], pads=pads)
            self.act(y, opts.FusedActivationFunction(), out)
        elif code in ("ADD", "MUL"):
            cls = tflite.AddOptions if code == "ADD" else tflite.MulOptions
            opts = options(op, cls)
            a, b = ins
            like = a if a not in self.consts else b
            y = self.emit("Add" if code == "ADD" else "Mul", [self.operand(a, like), self.operand(b, like)])
            self.act(y, opts.FusedActivationFunction(), out)
        elif code == "PRELU":
            slope = self.consts[ins[1]].astype(np.float32).reshape(-1)
            slope = slope.reshape(-1, 1, 1) if self.nchw.get(x) else slope
            self.emit("PRelu", [self.tname(x), self.const(slope, "slope")], out)
        elif code == "RELU":
            self.emit("Relu", [self.tname(x)], out)
        elif code == "HARD_SWISH":
            self.emit("HardSwish", [self.tname(x)], out)
        elif code == "LOGISTIC":
            self.emit("Sigmoid", [self.tname(x)], out)
        elif code == "PAD":
            p = self.consts[ins[1]].astype(np.int64)
            if self.nchw.get(x):
                p = p[[0, 3, 1, 2]]
            self.emit("Pad", [self.tname(x), self.const(np.concatenate([p[:, 0], p[:, 1]]), "pads")], out, mode="constant")
        elif code == "RESIZE_BILINEAR":
            opts = options(op, tflite.ResizeBilinearOptions)
            if opts.AlignCorners():
                mode = "align_corners"
            elif opts.HalfPixelCenters():
                mode = "half_pixel"
            else:
                mode = "asymmetric"
            _, h, wd, _ = self.shape[x]
            oh, ow = self.shape[o][1:3]
            scales = self.const(np.array([1, 1, oh / h, ow / wd], np.float32), "scales")
            self.emit("Resize", [self.tname(x), "", scales], out, mode="linear", coordinate_transformation_mode=mode)
        elif code == "RESHAPE":
            src = self.tname(x)
            if self.nchw.get(x):
                src = self.emit("Transpose", [src], perm=[0, 2, 3, 1])
            target = [0] + [int(d) for d in self.shape[o][1:]]
            y = self.emit("Reshape", [src, self.const(np.array(target, np.int64), "shape")])
            if four:
                self.emit("Transpose", [y], out, perm=[0, 3, 1, 2])
            else:
                self.emit("Identity", [y], out)
        elif code == "CONCATENATION":
            opts = options(op, tflite.ConcatenationOptions)
            axis = opts.Axis() % len(self.shape[o])
            if self.nchw.get(x):
                axis = TO_NCHW_AXIS[axis]
            y = self.emit("Concat", [self.operand(i, x) for i in ins], axis=axis)
            self.act(y, opts.FusedActivationFunction(), out)
        else:
            raise SystemExit(f"TFLite op {code} is not supported by this converter")
        # Every 4D result is NCHW here (RESHAPE lays a 4D result out NCHW too).
        self.nchw[o] = four


def convert(src: Path, out: Path) -> None:
    model = Converter(src.read_bytes()).convert()
    tmp = out.with_suffix(".part")
    onnx.save(model, str(tmp))
    tmp.replace(out)


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
