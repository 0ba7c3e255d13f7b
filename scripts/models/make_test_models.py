"""Build the tiny ONNX models that the `models` crate's tests run through ONNX Runtime.

They have the input/output signatures of the real exports (YOLOv8, SegFormer, a wav2vec2-style
audio classifier) but compute simple functions of their input, so a test can work out the exact
output a correct pre-processing must produce, and the exact result a correct post-processing
must make of it. Written to .fleet/test-models/ by scripts/setup-models.sh; deterministic.

Usage: python scripts/models/make_test_models.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18


def const(name: str, value) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def save(graph: onnx.GraphProto, path: Path, metadata: dict[str, str] | None = None) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "fleet-make-test-models"
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, path)
    print(f"wrote {path}")


def yolo(path: Path) -> None:
    """YOLOv8 detect head: images [B,3,32,32] -> output0 [B, 4+2, 3].

    Boxes (cx, cy, w, h in model-input pixels) are constant. The score of class c for candidate n
    is mean(channel c of the input) * k[n], so the scores prove RGB order, the /255 scaling and
    the letterbox (size and 114-grey padding). Candidates 0 and 1 overlap (IoU 0.8), so NMS must
    keep only candidate 0; candidate 2 stands alone.
    """
    boxes = np.array(
        [[[16.0, 16.0, 10.0], [16.0, 16.0, 20.0], [10.0, 10.0, 6.0], [10.0, 8.0, 4.0]]],
        dtype=np.float32,
    )  # [1, 4, 3]: rows cx, cy, w, h; columns candidates
    k = np.array([[[1.0, 0.9, 0.5]]], dtype=np.float32)  # [1, 1, 3]
    nodes = [
        const("axes23", np.array([2, 3], dtype=np.int64)),
        helper.make_node("ReduceMean", ["images", "axes23"], ["means"], keepdims=0),  # [B,3]
        const("starts", np.array([0], dtype=np.int64)),
        const("ends", np.array([2], dtype=np.int64)),
        const("axis1", np.array([1], dtype=np.int64)),
        helper.make_node("Slice", ["means", "starts", "ends", "axis1"], ["rg"]),  # [B,2]
        const("axis2", np.array([2], dtype=np.int64)),
        helper.make_node("Unsqueeze", ["rg", "axis2"], ["rg3"]),  # [B,2,1]
        const("k", k),
        helper.make_node("Mul", ["rg3", "k"], ["scores"]),  # [B,2,3]
        # Broadcast the constant boxes over the batch: boxes + 0 * scores[:, :1, :].
        const("zero", np.array(0.0, dtype=np.float32)),
        const("s1", np.array([1], dtype=np.int64)),
        helper.make_node("Slice", ["scores", "starts", "s1", "axis1"], ["first"]),  # [B,1,3]
        helper.make_node("Mul", ["first", "zero"], ["zeros"]),
        const("boxes", boxes),
        helper.make_node("Add", ["zeros", "boxes"], ["bboxes"]),  # [B,4,3]
        helper.make_node("Concat", ["bboxes", "scores"], ["output0"], axis=1),  # [B,6,3]
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_yolov8",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 6, 3])],
    )
    # Ultralytics writes the class names as a Python dict literal.
    save(graph, path, {"names": "{0: 'red_thing', 1: 'green_thing'}", "imgsz": "[32, 32]"})


def segformer(path: Path) -> None:
    """SegFormer: pixel_values [B,3,64,64] (ImageNet-normalized) -> logits [B,3,16,16].

    logits[k] = 4x4 average of normalized channel k, so the argmax class of a region is the
    channel that dominates it after normalization: red -> 0, green -> 1, blue -> 2.
    """
    nodes = [
        helper.make_node(
            "AveragePool", ["pixel_values"], ["logits"], kernel_shape=[4, 4], strides=[4, 4]
        )
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_segformer",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    )
    save(graph, path)


def emotion(path: Path) -> None:
    """Audio classifier: input_values [B,T] (zero-mean unit-variance waveform) -> logits [B,3].

    logits = [max(x), -max(x), mean(|x|)]. After the wav2vec2 normalization a sine of any
    amplitude has max sqrt(2) and mean |x| 2*sqrt(2)/pi, so the probabilities are known exactly.
    """
    nodes = [
        const("axes1", np.array([1], dtype=np.int64)),
        helper.make_node("ReduceMax", ["input_values", "axes1"], ["mx"], keepdims=1),
        helper.make_node("Neg", ["mx"], ["nmx"]),
        helper.make_node("Abs", ["input_values"], ["ab"]),
        helper.make_node("ReduceMean", ["ab", "axes1"], ["mab"], keepdims=1),
        helper.make_node("Concat", ["mx", "nmx", "mab"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_audio_classifier",
        [helper.make_tensor_value_info("input_values", TensorProto.FLOAT, ["batch", "samples"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    save(graph, path)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".fleet/test-models")
    out.mkdir(parents=True, exist_ok=True)
    yolo(out / "tiny_yolov8.onnx")
    segformer(out / "tiny_segformer.onnx")
    emotion(out / "tiny_emotion.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
