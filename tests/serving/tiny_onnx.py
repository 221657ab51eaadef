"""A tiny ONNX network that follows a ModelSpec's tensor contract, built with onnx.helper.

Its outputs depend on the input pixels (not canned): seg class = mean intensity bucket, depth =
pooled intensity (+ pooled LiDAR for fusion), num_dets = mean intensity / 64, fixed boxes. Used by
the builder's unit tests; the Triton tests serve the real exported networks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from serving import spec as S
from serving.processing import SPEC_PARAMETER
from serving.spec import ModelSpec

_ONNX_TYPES = {
    "uint8": TensorProto.UINT8,
    "int32": TensorProto.INT32,
    "float16": TensorProto.FLOAT16,
    "float32": TensorProto.FLOAT,
}


def _value_info(t):
    dims = [d if isinstance(d, int) else d for d in t.dims]
    return helper.make_tensor_value_info(t.name, _ONNX_TYPES[t.dtype], dims)


def make_tiny_onnx(spec: ModelSpec, path: str | Path) -> Path:
    k, s = spec.top_k, spec.depth_stride

    def c(name, arr):
        return helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(
                name,
                TensorProto.FLOAT if arr.dtype == np.float32 else TensorProto.INT64,
                arr.shape,
                arr.reshape(-1),
            ),
        )

    nodes = [
        helper.make_node("Cast", [S.IMAGES], ["xf"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["xf"], ["mean"], axes=[1], keepdims=1),  # [B,1,H,W]
        c("div86", np.array(86.0, np.float32)),
        helper.make_node("Div", ["mean", "div86"], ["bucket"]),
        helper.make_node("Floor", ["bucket"], ["bucket_f"]),
        helper.make_node("Cast", ["bucket_f"], ["seg4"], to=TensorProto.UINT8),
        c("axes1", np.array([1], np.int64)),
        helper.make_node("Squeeze", ["seg4", "axes1"], [S.SEG_MASK]),
        helper.make_node("AveragePool", ["mean"], ["pooled"], kernel_shape=[s, s], strides=[s, s]),
    ]
    if spec.fusion:
        nodes += [
            helper.make_node("AveragePool", [S.LIDAR_DEPTH], ["lpool"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("Add", ["pooled", "lpool"], ["pooled2"]),
        ]
    nodes += [
        c("scale", np.array(0.1, np.float32)),
        helper.make_node("Mul", ["pooled2" if spec.fusion else "pooled", "scale"], ["d1"]),
        c("one", np.array(1.0, np.float32)),
        helper.make_node("Add", ["d1", "one"], ["d2"]),
        helper.make_node("Cast", ["d2"], ["d3"], to=TensorProto.FLOAT16),
        helper.make_node("Squeeze", ["d3", "axes1"], [S.DEPTH]),
        # detections: num = mean/64 per image, fixed boxes/scores/classes tiled over the batch
        helper.make_node("ReduceMean", ["mean"], ["gmean"], axes=[1, 2, 3], keepdims=0),  # [B]
        c("div64", np.array(64.0, np.float32)),
        helper.make_node("Div", ["gmean", "div64"], ["nd"]),
        helper.make_node("Floor", ["nd"], ["ndf"]),
        helper.make_node("Cast", ["ndf"], [S.NUM_DETS], to=TensorProto.INT32),
        helper.make_node("Shape", [S.IMAGES], ["shape"], start=0, end=1),  # [B]
    ]
    boxes = np.zeros((1, k, 4), np.float32)
    boxes[0, :, :2] = np.arange(k)[:, None] * 2.0
    boxes[0, :, 2:] = boxes[0, :, :2] + 20.0
    scores = np.linspace(0.9, 0.3, k, dtype=np.float32)[None]
    classes = (np.arange(k) % len(spec.det_classes)).astype(np.int64)[None]
    nodes += [
        c("boxes1", boxes),
        c("scores1", scores),
        c("classes1", classes),
        c("one_k", np.array([k], np.int64)),
        c("one_4", np.array([4], np.int64)),
        helper.make_node("Concat", ["shape", "one_k", "one_4"], ["bshape3"], axis=0),
        helper.make_node("Concat", ["shape", "one_k"], ["bshape2"], axis=0),
        helper.make_node("Expand", ["boxes1", "bshape3"], [S.DET_BOXES]),
        helper.make_node("Expand", ["scores1", "bshape2"], [S.DET_SCORES]),
        helper.make_node("Expand", ["classes1", "bshape2"], ["cls64"]),
        helper.make_node("Cast", ["cls64"], [S.DET_CLASSES], to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes,
        spec.name,
        [_value_info(t) for t in spec.network_inputs],
        [_value_info(t) for t in spec.network_outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {SPEC_PARAMETER: spec.to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
