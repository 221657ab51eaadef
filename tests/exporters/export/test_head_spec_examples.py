"""The documented head-spec examples (docs/examples/head_specs/*.yaml) against the real layouts they
name: each parses as a head spec, composes onto a tiny generated ONNX file with exactly that layout
(tensor names, shapes, channels: the facts each file's header cites), and the composed model's
outputs come out as the layout means them (a background channel -> class 0, the one strong
candidate -> one box where the layout puts it, depth in metres).

The tiny file's outputs are fixed patterns built from the layout, never from the head spec under
test, so that a spec that misreads its layout (issue 25: TwinLiteNet's two background-first maps read
as one sigmoid map) gives the wrong classes here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from exporters.export.options import BatchProfile
from serving import spec as S
from serving.onnx_graph import GraphBuilder

ort = pytest.importorskip("onnxruntime")

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples" / "head_specs"
BOX = (80.0, 65.0, 120.0, 95.0)  # x1, y1, x2, y2 of the one strong candidate, input pixels
PROB = 0.9

# file -> input (name, [C, H, W] or None for dynamic H/W), outputs (name, shape without batch, role)
LAYOUTS = {
    "yolop.yaml": (
        ("images", (3, 640, 640)),
        [
            ("det_out", (25200, 6), "yolo"),
            ("drive_area_seg", (2, 640, 640), "bg-first:drivable"),
            ("lane_line_seg", (2, 640, 640), "bg-first:lane"),
        ],
    ),
    "twinlitenet.yaml": (
        ("images", (3, 360, 640)),
        [("da", (2, 360, 640), "bg-first:drivable"), ("ll", (2, 360, 640), "bg-first:lane")],
    ),
    "hybridnets.yaml": (
        ("input", (3, 384, 640)),
        [
            ("regression", (46035, 4), "deltas"),
            ("classification", (46035, 1), "anchor-scores"),
            ("segmentation", (3, 384, 640), "softmax:background,drivable,lane"),
        ],
    ),
    "sigmoid_map.yaml": (("images", (3, 384, 640)), [("seg", (2, 384, 640), "sigmoid:drivable,lane")]),
    "yolov5.yaml": (("images", (3, 640, 640)), [("output0", (25200, 85), "yolo")]),
    "yolov8.yaml": (("images", (3, 640, 640)), [("output0", (84, 8400), "yolov8")]),
    "depth_anything_v2_metric.yaml": (("pixel_values", None), [("predicted_depth", (448, 896), "depth")]),
    "depth_anything_v2_relative.yaml": (("pixel_values", None), [("predicted_depth", (448, 896), "depth")]),
}


def test_every_example_file_has_its_layout_here():
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(LAYOUTS)


def _classes_of(hw) -> np.ndarray:
    """What every segmentation pattern means: background above the middle, drivable below it, a
    lane band in the middle columns below it."""
    h, w = hw
    ids = np.zeros((h, w), np.int64)
    ids[h // 2 :] = 1
    ids[h // 2 :, w // 2 - 8 : w // 2 + 8] = 2
    return ids


def _pattern(role: str, shape: tuple[int, ...]) -> np.ndarray:
    """The layout's own encoding of the scene _classes_of draws and of one detection at BOX."""
    x1, y1, x2, y2 = BOX
    if role.startswith("bg-first:"):  # [2, H, W] logits: channel 0 background, channel 1 the class
        ids = _classes_of(shape[1:])
        fg = ids >= 1 if role.endswith("drivable") else ids == 2
        return np.stack([np.where(fg, -2.0, 2.0), np.where(fg, 2.0, -2.0)]).astype(np.float32)
    if role.startswith("softmax:"):  # [C, H, W] logits, one channel per class, background first
        ids = _classes_of(shape[1:])
        return np.stack([np.where(ids == k, 2.0, -2.0) for k in range(shape[0])]).astype(np.float32)
    if role.startswith("sigmoid:"):  # [C - 1, H, W] independent logits, no background channel
        ids = _classes_of(shape[1:])
        return np.stack([np.where(ids >= 1, 3.0, -3.0), np.where(ids == 2, 5.0, -3.0)]).astype(np.float32)
    out = np.zeros(shape, np.float32)
    box = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
    if role == "yolo":  # [N, 5 + C] rows cx, cy, w, h, objectness, class probabilities
        out[0, :4], out[0, 4], out[0, 5] = box, 1.0, PROB
    elif role == "yolov8":  # [4 + C, N] channel-first, no objectness
        out[:4, 0], out[4, 0] = box, PROB
    elif role == "anchor-scores":  # [N, C]
        out[0, 0] = PROB
    elif role == "depth":  # [H, W]: 2 m at the bottom .. 50 m at the top
        out[:] = np.linspace(50.0, 2.0, shape[0], dtype=np.float32)[:, None]
    return out  # deltas: all zero, every box is its anchor


def _anchors(n: int) -> np.ndarray:
    """[1, N, 4] y1, x1, y2, x2: anchor 0 is BOX, the others small boxes in the corner."""
    a = np.tile(np.array([[0.0, 0.0, 4.0, 4.0]], np.float32), (n, 1))
    x1, y1, x2, y2 = BOX
    a[0] = (y1, x1, y2, x2)
    return a[None]


def _layout_onnx(name: str, path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    (input_name, chw), outputs = LAYOUTS[name]
    dims = ["batch", 3, "height", "width"] if chw is None else ["batch", *chw]
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)
    g = GraphBuilder(helper.make_graph([], name, [x], []), "layout")
    zero4 = g.op(
        "Mul", [g.op("ReduceMean", [input_name], axes=[1, 2, 3], keepdims=1), g.const(np.float32(0))]
    )  # [B,1,1,1]
    zero3 = g.op("Squeeze", [zero4, g.const(np.array([3], np.int64))])
    for out_name, shape, role in outputs:
        pattern = g.const(_pattern(role, shape)[None])
        g.op("Add", [pattern, zero4 if len(shape) == 3 else zero3], out=out_name)
        g.graph.output.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", *shape]))
    model = helper.make_model(g.graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_example_composes_onto_its_layout_and_reads_it_as_the_layout_means(name, tmp_path):
    from exporters.export.head_spec import load_head_spec
    from exporters.export.import_onnx import import_onnx
    from exporters.export.verify import ort_runner

    spec_file = shutil.copy(EXAMPLES / name, tmp_path / name)
    outputs = {o[0]: o for o in LAYOUTS[name][1]}
    if "deltas" in {o[2] for o in outputs.values()}:
        np.save(tmp_path / "anchors_384x640.npy", _anchors(outputs["regression"][1][0]))
    heads = load_head_spec(spec_file)
    model = _layout_onnx(name, tmp_path / "layout.onnx")
    spec = import_onnx(model, heads, tmp_path / "model.onnx", BatchProfile(1, 1, 2))
    h, w = spec.input_hw
    got = ort_runner(tmp_path / "model.onnx")({S.IMAGES: np.zeros((2, 3, h, w), np.uint8)})
    if heads.segmentation:
        assert spec.seg_classes[0] == "background"
        for mask in got[S.SEG_MASK]:
            np.testing.assert_array_equal(mask, _classes_of((h, w)))
    if heads.detection:
        assert list(got[S.NUM_DETS]) == [1, 1]
        np.testing.assert_allclose(got[S.DET_BOXES][:, 0], [BOX, BOX], atol=1e-3)
        assert list(got[S.DET_CLASSES][:, 0]) == [0, 0]
        np.testing.assert_allclose(got[S.DET_SCORES][:, 0], PROB, atol=1e-6)
    if heads.depth:
        d = heads.depth
        raw = _pattern("depth", (h, w))
        metres = (
            d.scale * raw
            if d.kind == "metric"
            else 1 / np.maximum(d.scale * raw + d.shift, 1 / spec.max_depth_m)
        )
        np.testing.assert_allclose(got[S.DEPTH].astype(np.float32), np.stack([metres] * 2), rtol=2e-3)
