"""Tiny ONNX files in the layouts users bring to `percept import-onnx`, generated with onnx.helper
(no downloads, no torch), and their head specs. Each graph is a few seeded convolutions shaped like
the real network's outputs; what matters is the output layout, not what the numbers mean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from serving.onnx_graph import GraphBuilder

DET_HW = (64, 96)
DEPTH_HW = (224, 224)  # a multiple of 14 (ViT patches) and of 32
TWIN_HW = (360, 640)  # TwinLiteNet's BDD100K input size: not a multiple of 32
CLASSES = ["car", "truck", "pedestrian"]
SEG_CLASSES = ["background", "road", "lane"]
CELL = 8  # the detection fixtures' one feature stride
ANCHOR_SIZES = (12.0, 24.0, 40.0)  # HybridNets-style: anchors per cell
PLAIN_INPUT = {"name": "images", "layout": "NCHW", "dtype": "float32"}  # x / 255


class _Builder:
    """A graph with one float32 NCHW input named ``images``."""

    def __init__(self, hw, dynamic_hw: bool = False, seed: int = 0) -> None:
        from onnx import TensorProto, helper

        h, w = ("height", "width") if dynamic_hw else hw
        x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, h, w])
        self.g = GraphBuilder(helper.make_graph([], "fixture", [x], []))
        self.rng = np.random.default_rng(seed)

    def conv(self, x: str, out_channels: int, gain: float, kernel: int = 1, stride: int = 1) -> str:
        weight = self.rng.normal(0, gain, (out_channels, 3, kernel, kernel)).astype(np.float32)
        bias = self.rng.normal(0, gain / 4, out_channels).astype(np.float32)
        return self.g.op("Conv", [x, self.g.const(weight), self.g.const(bias)], strides=[stride, stride])

    def pooled(self, stride: int = CELL) -> str:
        return self.g.op("AveragePool", ["images"], kernel_shape=[stride, stride], strides=[stride, stride])

    def seg_logits(self, hw, ramps: list[str | None]) -> str:
        """Per-channel logits: a weak seeded conv plus a ramp along x or y (None: flat), so that
        every class wins somewhere in every frame."""
        h, w = hw
        u, v = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
        flat = np.zeros((h, w))
        ramp = np.stack([flat if r is None else 8 * ((u if r == "x" else v) - 0.5) for r in ramps])
        conv = self.conv("images", len(ramps), 0.5)
        return self.g.op("Add", [conv, self.c(ramp[None].astype(np.float32))])

    def c(self, value) -> str:
        return self.g.const(np.asarray(value))

    def output(self, x: str, name: str, dims: list) -> None:
        from onnx import TensorProto, helper

        self.g.op("Identity", [x], out=name)
        self.g.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))

    def save(self, path: Path) -> Path:
        import onnx
        from onnx import helper

        model = helper.make_model(self.g.graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(path))
        return path


def yolov8_onnx(path: Path, hw=DET_HW, classes: int = len(CLASSES)) -> Path:
    """ultralytics YOLOv8 export: output0 [B, 4 + C, N], cx, cy, w, h pixels, sigmoided class scores."""
    b = _Builder(hw)
    h, w = hw
    n = (h // CELL) * (w // CELL)
    p = b.g.op("Sigmoid", [b.conv(b.pooled(), 4 + classes, 4.0)])
    p = b.g.op("Reshape", [p, b.c(np.array([0, 4 + classes, -1], np.int64))])
    scale = np.array([w, h, w / 2, h / 2] + [1.0] * classes, np.float32).reshape(1, -1, 1)
    b.output(b.g.op("Mul", [p, b.c(scale)]), "output0", ["batch", 4 + classes, n])
    return b.save(path)


def yolov5_onnx(path: Path, hw=DET_HW, classes: int = len(CLASSES)) -> Path:
    """ultralytics YOLOv5 export: output0 [B, N, 5 + C] rows cx, cy, w, h pixels, objectness, classes."""
    b = _Builder(hw, seed=1)
    _yolo_rows(b, hw, classes, "output0")
    return b.save(path)


def _yolo_rows(b: _Builder, hw, classes: int, name: str) -> None:
    """A yolo-format output ``name``: [B, N, 5 + C] sigmoided rows scaled to cx, cy, w, h pixels."""
    h, w = hw
    n = (h // CELL) * (w // CELL)
    p = b.g.op("Sigmoid", [b.conv(b.pooled(), 5 + classes, 4.0)])
    p = b.g.op(
        "Transpose", [b.g.op("Reshape", [p, b.c(np.array([0, 5 + classes, -1], np.int64))])], perm=[0, 2, 1]
    )
    scale = np.array([w, h, w / 2, h / 2] + [1.0] * (1 + classes), np.float32)
    b.output(b.g.op("Mul", [p, b.c(scale)]), name, ["batch", n, 5 + classes])


def hybridnets_anchors(hw=DET_HW) -> np.ndarray:
    """[N, 4] y1, x1, y2, x2 pixels, cell-major then size: the order the regression rows come in."""
    h, w = hw
    rows = []
    for y in range(h // CELL):
        for x in range(w // CELL):
            cy, cx = (y + 0.5) * CELL, (x + 0.5) * CELL
            for s in ANCHOR_SIZES:
                rows.append((cy - s / 2, cx - s * 0.75, cy + s / 2, cx + s * 0.75))
    return np.array(rows, np.float32)


def hybridnets_onnx(path: Path, hw=DET_HW, anchors_output: bool = False, classes: int = len(CLASSES)) -> Path:
    """HybridNets: regression [B, N, 4] dy, dx, dh, dw; classification [B, N, C] sigmoided;
    segmentation [B, 3, H, W] logits (background, road, lane); anchors optionally an output."""
    b = _Builder(hw)
    a = len(ANCHOR_SIZES)
    n = (hw[0] // CELL) * (hw[1] // CELL) * a
    f = b.pooled()
    for name, channels, gain in (("regression", 4, 0.3), ("classification", classes, 4.0)):
        t = b.g.op("Transpose", [b.conv(f, a * channels, gain)], perm=[0, 2, 3, 1])
        t = b.g.op("Reshape", [t, b.c(np.array([0, -1, channels], np.int64))])
        if name == "classification":
            t = b.g.op("Sigmoid", [t])
        b.output(t, name, ["batch", n, channels])
    b.output(b.seg_logits(hw, [None, "x", "y"]), "segmentation", ["batch", len(SEG_CLASSES), *hw])
    if anchors_output:
        b.output(b.c(hybridnets_anchors(hw)[None]), "anchors", [1, n, 4])
    return b.save(path)


def sigmoid_map_onnx(path: Path, hw=DET_HW) -> Path:
    """One [B, 2, H, W] map of independent per-class logits, background implicit."""
    b = _Builder(hw)
    b.output(b.seg_logits(hw, ["x", "y"]), "seg", ["batch", 2, *hw])
    return b.save(path)


def two_map_onnx(path: Path, hw=TWIN_HW) -> Path:
    """TwinLiteNet-style: float RGB / 255 in, two [B, 2, H, W] logit maps (drivable, lane) out."""
    b = _Builder(hw)
    b.output(b.seg_logits(hw, [None, "y"]), "drive", ["batch", 2, *hw])
    b.output(b.seg_logits(hw, [None, "x"]), "lane", ["batch", 2, *hw])
    return b.save(path)


def yolop_onnx(path: Path, hw=DET_HW, classes: int = len(CLASSES)) -> Path:
    """YOLOP-style: one file with yolo-format detection det_out [B, N, 5 + C] (like YOLOv5) and two
    [B, 2, H, W] logit maps drive_area_seg / lane_line_seg (like TwinLiteNet)."""
    b = _Builder(hw, seed=2)
    _yolo_rows(b, hw, classes, "det_out")
    b.output(b.seg_logits(hw, [None, "y"]), "drive_area_seg", ["batch", 2, *hw])
    b.output(b.seg_logits(hw, [None, "x"]), "lane_line_seg", ["batch", 2, *hw])
    return b.save(path)


def depth_onnx(path: Path, hw=DEPTH_HW, dynamic_hw: bool = True, patch: int = 14) -> Path:
    """Depth-Anything-style: 14-pixel patches, output predicted_depth [B, H, W] (positive, inverse
    depth for a relative model); dynamic H/W like the Hugging Face export."""
    b = _Builder(hw, dynamic_hw=dynamic_hw)
    d = b.g.op("Relu", [b.conv("images", 1, 0.02, kernel=patch, stride=patch)])
    d = b.g.op("Add", [d, b.c(np.array(0.1, np.float32))])
    scales = b.c(np.array([1, 1, patch, patch], np.float32))
    d = b.g.op("Resize", [d, "", scales], mode="linear")
    d = b.g.op("Squeeze", [d, b.c(np.array([1], np.int64))])
    dims = ["batch", "height", "width"] if dynamic_hw else ["batch", *hw]
    b.output(d, "predicted_depth", dims)
    return b.save(path)


# --- head specs -------------------------------------------------------------------------------------
def _det(fmt: str, **kw) -> dict:
    return {"output": "output0", "format": fmt, "classes": CLASSES, **kw}


HEADS = {
    "yolov5": {"name": "yolov5-tiny", "input": PLAIN_INPUT, "detection": _det("yolo")},
    "yolov8": {"name": "yolov8-tiny", "input": PLAIN_INPUT, "detection": _det("yolov8")},
    "hybridnets-npy": {
        "name": "hybridnets-tiny",
        "input": PLAIN_INPUT,
        "detection": {
            "output": "regression",
            "format": "anchors",
            "scores": "classification",
            "anchors": "anchors.npy",
            "classes": CLASSES,
        },
        "segmentation": {"map": "segmentation", "classes": SEG_CLASSES, "activation": "softmax"},
    },
    "sigmoid-map": {
        "name": "sigmoid-map-tiny",
        "input": PLAIN_INPUT,
        "segmentation": {
            "map": "seg",
            "classes": ["background", "drivable", "lane"],
            "activation": "sigmoid",
            "threshold": 0.5,
        },
    },
    "two-map": {
        "name": "twinlite-tiny",
        "input": PLAIN_INPUT,
        "segmentation": {"drivable": "drive", "lane": "lane"},
    },
    "yolop": {
        "name": "yolop-tiny",
        "input": PLAIN_INPUT,
        "detection": {"output": "det_out", "format": "yolo", "classes": CLASSES},
        "segmentation": {"drivable": "drive_area_seg", "lane": "lane_line_seg"},
    },
    "depth-relative": {
        "name": "depth-anything-tiny",
        "input": {**PLAIN_INPUT, "size": list(DEPTH_HW), "stride": 14},
        "depth": {"output": "predicted_depth", "kind": "relative", "scale": 0.5, "shift": 0.02},
    },
    "depth-metric": {
        "name": "depth-metric-tiny",
        "input": {**PLAIN_INPUT, "size": list(DEPTH_HW), "stride": 14},
        "depth": {"output": "predicted_depth", "kind": "metric", "scale": 10.0},
    },
}
HEADS["hybridnets-output"] = {
    **HEADS["hybridnets-npy"],
    "detection": {**HEADS["hybridnets-npy"]["detection"], "anchors": "anchors"},
}


def write_layout(name: str, folder: Path) -> tuple[Path, dict]:
    """The fixture file of layout ``name`` in ``folder`` (with anchors.npy where it needs one)."""
    builders = {
        "yolov5": lambda p: yolov5_onnx(p),
        "yolov8": lambda p: yolov8_onnx(p),
        "hybridnets-npy": lambda p: hybridnets_onnx(p),
        "hybridnets-output": lambda p: hybridnets_onnx(p, anchors_output=True),
        "sigmoid-map": lambda p: sigmoid_map_onnx(p),
        "two-map": lambda p: two_map_onnx(p),
        "yolop": lambda p: yolop_onnx(p),
        "depth-relative": lambda p: depth_onnx(p),
        "depth-metric": lambda p: depth_onnx(p),
    }
    if name == "hybridnets-npy":
        np.save(folder / "anchors.npy", hybridnets_anchors())
    return builders[name](folder / f"{name}.onnx"), HEADS[name]


def write_heads(folder: Path, heads: dict, **changes) -> Path:
    """``heads`` as heads.yaml in ``folder``; ``changes`` set dotted keys (``a__b=value``)."""
    heads = yaml.safe_load(yaml.safe_dump(heads))
    for dotted, value in changes.items():
        node = heads
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = folder / "heads.yaml"
    path.write_text(yaml.safe_dump(heads))
    return path
