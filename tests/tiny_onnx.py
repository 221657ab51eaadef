"""A tiny ONNX network that follows any ModelSpec's tensor contract, built with onnx.helper (no torch).

Its outputs are simple, deterministic functions of the image, so that different frames give
different results: seg = (green > 128) + (red > 200), depth = 1 + blue/16 pooled to 1/depth_stride,
and two detections whose boxes and scores move with the mean brightness. Fusion variant: depth adds
the mean of the LiDAR depth image, so the LiDAR path matters. The spec JSON travels in the metadata
under :data:`serving.spec.SPEC_KEY`, as an exported network's does. Used wherever a test needs a
servable network without exporting one: the builder's and the clients' tests, and the Triton tests
where the exporters are not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from serving import spec as S
from serving.spec import ModelSpec


def tiny_spec(fusion: bool = False) -> ModelSpec:
    return ModelSpec(name="tiny-fusion" if fusion else "tiny", input_hw=(64, 96), top_k=4, fusion=fusion)


def byom_specs() -> tuple[ModelSpec, ModelSpec]:
    """Two "bring your own model" shapes: segmentation only at 360x640 (not multiples of 32), and
    detection + segmentation without depth at 72x120."""
    return (
        ModelSpec(name="seg360", input_hw=(360, 640), tasks=("segmentation",)),
        ModelSpec(name="detseg", input_hw=(72, 120), top_k=4, tasks=("detection", "segmentation")),
    )


def make_tiny_onnx(spec: ModelSpec, path: str | Path, provenance: dict | None = None) -> Path:
    """Write the tiny network for ``spec`` (two detections: needs top_k >= 2, three classes) to ``path``.

    Any input size and any subset of heads: the graph computes every head and outputs those of
    ``spec.tasks`` (``spec.network_outputs``). ``provenance`` (e.g. ``{"precision": "fp16"}``, a
    ``batch_profile``) is stored as an export stores its own."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k, s = spec.top_k, spec.depth_stride
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    x = node("Cast", [S.IMAGES], "x", to=TensorProto.FLOAT)
    r = node("Slice", [x, const("c0", [0]), const("c1", [1]), const("ax1", [1])], "r")
    g = node("Slice", [x, const("c1b", [1]), const("c2", [2]), const("ax1b", [1])], "g")
    b = node("Slice", [x, const("c2b", [2]), const("c3", [3]), const("ax1c", [1])], "b")
    seg1 = node(
        "Cast", [node("Greater", [g, const("t128", np.float32(128))], "g128")], "seg1", to=TensorProto.UINT8
    )
    seg2 = node(
        "Cast", [node("Greater", [r, const("t200", np.float32(200))], "r200")], "seg2", to=TensorProto.UINT8
    )
    seg = node("Add", [seg1, seg2], "seg")
    node("Squeeze", [seg, const("sq1", [1])], S.SEG_MASK)
    bpool = node("AveragePool", [b], "bpool", kernel_shape=[s, s], strides=[s, s])
    depth = node(
        "Add", [node("Div", [bpool, const("d16", np.float32(16))], "bd"), const("one", np.float32(1))], "dm"
    )
    if spec.fusion:
        lmean = node("ReduceMean", [S.LIDAR_DEPTH, const("axes_all", [1, 2, 3])], "lmean", keepdims=1)
        depth = node("Add", [depth, lmean], "dfused")
    node("Cast", [node("Squeeze", [depth, const("sq1b", [1])], "dsq")], S.DEPTH, to=TensorProto.FLOAT16)
    # detections: 2 boxes placed by mean brightness m in [0,1]
    m = node(
        "Div",
        [
            node("ReduceMean", [x, const("axes_m", [1, 2, 3])], "mean", keepdims=0),
            const("d255", np.float32(255)),
        ],
        "m",
    )
    m1 = node("Unsqueeze", [m, const("us1", [1])], "m1")  # [B,1]
    base = np.zeros((1, k, 4), np.float32)
    base[0, 0] = [10, 10, 40, 30]
    base[0, 1] = [50, 20, 90, 60]
    slope = np.zeros((1, k, 4), np.float32)
    slope[0, :2] = [[20, 10, 20, 10], [-30, -5, 0, 0]]
    m3 = node("Unsqueeze", [m1, const("us2", [2])], "m3")  # [B,1,1]
    node("Add", [const("base", base), node("Mul", [m3, const("slope", slope)], "shift")], S.DET_BOXES)
    sbase = np.zeros((1, k), np.float32)
    sbase[0, :2] = [0.5, 0.3]
    sslope = np.zeros((1, k), np.float32)
    sslope[0, :2] = [0.4, 0.5]
    node("Add", [const("sbase", sbase), node("Mul", [m1, const("sslope", sslope)], "sm")], S.DET_SCORES)
    zeros_k = node("Mul", [m1, const("zk", np.zeros((1, k), np.float32))], "zerosk")  # [B,K] zeros
    cls = np.zeros((1, k), np.float32)
    cls[0, :2] = [0, 2]
    node("Cast", [node("Add", [zeros_k, const("cls", cls)], "clsf")], S.DET_CLASSES, to=TensorProto.INT32)
    two = node(
        "ReduceSum",
        [
            node("Add", [zeros_k, const("ones2", (np.arange(k) < 2)[None].astype(np.float32))], "o2"),
            const("axk", [1]),
        ],
        "twof",
        keepdims=0,
    )
    node("Cast", [two], S.NUM_DETS, to=TensorProto.INT32)

    dtype = {
        "uint8": TensorProto.UINT8,
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "int32": TensorProto.INT32,
    }

    def vi(t):
        dims = ["batch" if not isinstance(d, int) else d for d in t.dims]
        return helper.make_tensor_value_info(t.name, dtype[t.dtype], dims)

    graph = helper.make_graph(
        nodes, spec.name, [vi(t) for t in spec.network_inputs], [vi(t) for t in spec.network_outputs], inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    props = {S.SPEC_KEY: spec.to_json()}
    if provenance is not None:
        props[S.PROVENANCE_KEY] = json.dumps(provenance, sort_keys=True)
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def gradient_rgb(hw: tuple[int, int], blue: int = 90) -> np.ndarray:
    """Red rising downwards, green to the right: every class of the tiny segmentations shows up."""
    h, w = hw
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, h)[:, None].astype(np.uint8)
    rgb[..., 1] = np.linspace(0, 255, w)[None].astype(np.uint8)
    rgb[..., 2] = blue
    return rgb
