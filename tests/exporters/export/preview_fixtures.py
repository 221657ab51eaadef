"""A trained network in the layouts users bring: the session's exported cam-n (shipped weights) cut
back to its raw head tensors with ``onnx.utils.Extractor`` (no torch, no export: a second), plus
world scenes written as image files, for the import preview's tests.

The raw file (``camn_raw``) takes the normalised float32 NCHW image ``images`` and outputs

* ``det`` [B, A, 5 + 3]: yolo rows cx, cy, w, h (model-input pixels), objectness 1, the three class
  probabilities (cam-n's sigmoid(obj) x sigmoid(cls), before NMS);
* ``seg`` [B, 3, H, W]: the segmentation logits (background, drivable, lane), softmax/argmax;
* ``drivable`` and ``lane`` [B, 2, H, W]: the same logits as TwinLiteNet's two maps, background
  channel first (drivable: [max(bg, lane), drivable]; lane: [max(bg, drivable), lane]), so that
  lane-over-drivable composition gives exactly the 3-class argmax;
* ``depth_m`` [B, 1, H/s, W/s]: metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from serving.onnx_graph import GraphBuilder

# tensors of the exported cam-n graph (exporters/export/graph.py exported by torch.onnx dynamo):
# found by walking back from its outputs; the test fails loudly (KeyError) if an export renames them
_NORMALISED, _BOXES_XYXY, _SCORES_BCA, _SEG_LOGITS, _DEPTH_M = (
    "add_10",
    "cat_19",
    "transpose_1",
    "upsample_bilinear2d",
    "add_1723",
)
CAMN_CLASSES = ["car", "truck", "pedestrian"]


def camn_raw(exported: Path, out: Path) -> tuple[Path, dict]:
    """The raw cam-n file and its right head spec (a dict, as YAML would give it)."""
    import onnx
    from onnx import TensorProto, helper

    from serving.onnx_meta import read_spec

    spec = read_spec(exported)
    model = onnx.load(str(exported))
    tensors = [_BOXES_XYXY, _SCORES_BCA, _SEG_LOGITS, _DEPTH_M]
    cut = onnx.utils.Extractor(model).extract_model([_NORMALISED], tensors)
    graph = cut.graph
    g = GraphBuilder(graph, "raw")
    c = len(CAMN_CLASSES)

    def const(v) -> str:
        return g.const(np.asarray(v))

    b = _BOXES_XYXY
    xy1 = g.op("Slice", [b, const([0]), const([2]), const([2])])
    xy2 = g.op("Slice", [b, const([2]), const([4]), const([2])])
    centre = g.op("Mul", [g.op("Add", [xy1, xy2]), const(np.float32(0.5))])
    size = g.op("Sub", [xy2, xy1])
    cls = g.op("Transpose", [_SCORES_BCA], perm=[0, 2, 1])
    obj = g.op("Slice", [g.op("Mul", [cls, const(np.float32(0))]), const([0]), const([1]), const([2])])
    obj = g.op("Add", [obj, const(np.float32(1))])
    g.op("Concat", [centre, size, obj, cls], axis=2, out="det")
    g.op("Identity", [_SEG_LOGITS], out="seg")
    bg, drv, lane = (g.op("Slice", [_SEG_LOGITS, const([i]), const([i + 1]), const([1])]) for i in range(3))
    g.op("Concat", [g.op("Max", [bg, lane]), drv], axis=1, out="drivable")
    g.op("Concat", [g.op("Max", [bg, drv]), lane], axis=1, out="lane")
    g.op("Identity", [_DEPTH_M], out="depth_m")
    h, w = spec.input_hw
    s = spec.depth_stride
    a = int(sum((h // k) * (w // k) for k in (8, 16, 32)))
    del graph.output[:]
    for name, dims in (
        ("det", ["batch", a, 5 + c]),
        ("seg", ["batch", 3, h, w]),
        ("drivable", ["batch", 2, h, w]),
        ("lane", ["batch", 2, h, w]),
        ("depth_m", ["batch", 1, h // s, w // s]),
    ):
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    graph.input[0].name = "images"
    for node in graph.node:
        node.input[:] = ["images" if i == _NORMALISED else i for i in node.input]
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    del graph.value_info[:]
    del cut.metadata_props[:]
    onnx.checker.check_model(cut)
    onnx.save(cut, str(out))
    mean, std = spec.normalisation.mean, spec.normalisation.std
    heads = {
        "name": "camn-raw",
        "input": {
            "name": "images",
            "mean": list(mean),
            "std": list(std),
            "pad_value": spec.letterbox.pad_value,
        },
        "detection": {"output": "det", "format": "yolo", "layout": "cxcywh", "classes": CAMN_CLASSES},
        "segmentation": {
            "map": "seg",
            "classes": ["background", "drivable", "lane"],
            "activation": "softmax",
        },
        "depth": {"output": "depth_m", "kind": "metric", "scale": 1.0},
        "top_k": spec.top_k,
    }
    return out, heads


def world_images(folder: Path, seeds=(21, 22, 23, 24), hw=(240, 400)) -> Path:
    """World scenes (seeds the weights were not trained on... validation seeds) as PNG files."""
    import cv2

    from world import render_scene

    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        rgb = render_scene(seed, hw=hw, lidar=False).image
        cv2.imwrite(str(folder / f"scene{seed}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return folder
