"""The frame model: a network's ONNX graph with the letterbox in front and the postprocess behind it.

For any network that follows the contract (registered or imported through a head spec), so that a
raw frame is served by one model and the engine (TensorRT, ONNX Runtime) runs what used to be two
python-backend steps:

* in front: ``image`` uint8 [B,H,W,3] -> float -> bilinear resize (half-pixel centres) to the
  letterboxed content size -> NCHW -> pad with the spec's pad value -> rounded back to the network's
  uint8 ``images``;
* behind: boxes from model-input to source pixels (``source_hw``: the frame the image shows) and
  clipped; segmentation and depth cut out of the letterbox at model resolution; the ``letterbox``
  geometry row per frame.

Every size is integer arithmetic on the image's shape (serving.letterbox's rule: round half up), so
the resize sizes, pads and slices are shape tensors TensorRT computes at enqueue time, and nothing
depends on a tensor's values. Dense maps stay at model resolution: resizing them to the source is
the client's (serving.letterbox.Letterbox.to_source_size), where the bytes are wanted; a per-request
flag cannot change one request's output shape inside a dynamically batched engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving import spec as S
from serving.ensemble import frame_outputs
from serving.errors import ServingError
from serving.onnx_graph import GraphBuilder, rename_everywhere
from serving.spec import ModelSpec

_NETWORK = "network/"  # prefix of the network's own outputs and input inside the frame graph


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        from serving.errors import MissingDependencyError

        raise MissingDependencyError("onnx", "server") from exc
    return onnx


def frame_model(network, spec: ModelSpec):
    """The frame model's ModelProto built around ``network`` (a copy; the argument is unchanged)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper

    proto = onnx.ModelProto()
    proto.CopyFrom(network)
    graph = proto.graph
    names = {vi.name for vi in graph.input} | {vi.name for vi in graph.output}
    missing = {t.name for t in (*spec.network_inputs, *spec.network_outputs)} - names
    if missing:
        raise ServingError(f"network {spec.name} lacks the contract's tensors {sorted(missing)}")
    for t in (spec.network_inputs[0], *spec.network_outputs):
        rename_everywhere(graph, t.name, _NETWORK + t.name)
    images_vi = next(vi for vi in graph.input if vi.name == _NETWORK + S.IMAGES)
    graph.input.remove(images_vi)
    nodes = list(graph.node)
    del graph.node[:]
    g = GraphBuilder(graph, "percept_frame")
    geom = _letterbox(g, spec)
    graph.node.extend(nodes)  # after the front: ONNX graphs are topologically sorted
    del graph.output[:]
    _postprocess(g, spec, geom)

    inputs = [helper.make_tensor_value_info(S.IMAGE, TensorProto.UINT8, ["batch", "height", "width", 3])]
    inputs.append(helper.make_tensor_value_info(S.SOURCE_HW, TensorProto.INT32, ["batch", 2]))
    rest = list(graph.input)  # lidar_depth of a fusion network stays an input
    del graph.input[:]
    graph.input.extend(inputs + rest)
    dtypes = {"int32": TensorProto.INT32, "float32": TensorProto.FLOAT}
    dtypes |= {"uint8": TensorProto.UINT8, "float16": TensorProto.FLOAT16}
    for t in frame_outputs(spec):
        graph.output.append(helper.make_tensor_value_info(t.name, dtypes[t.dtype], list(t.dims)))
    del graph.value_info[:]  # stale after the renames; shape inference rebuilds it
    graph.name = f"{spec.name}_frame"
    return proto


@dataclass(frozen=True)
class _Geometry:
    """Tensor names of the letterbox geometry computed in the graph (int64 [1] unless noted)."""

    h: str  # image height
    w: str
    hf: str  # float32 [1]: the same as floats
    wf: str
    new_h: str  # letterboxed content size
    new_w: str
    pad_y: str
    pad_x: str
    scale: str  # float32 [1]: model pixels per image pixel


def _letterbox(g: GraphBuilder, spec: ModelSpec) -> _Geometry:
    from onnx import TensorProto

    hm, wm = spec.input_hw
    # a UINT8 network input may only feed a Cast in TensorRT (trt_compat rule TRT003): the shape
    # is read from the float copy
    x = g.op("Cast", [S.IMAGE], to=TensorProto.FLOAT)
    shape = g.op("Shape", [x])
    h = g.op("Slice", [shape, g.ints(1), g.ints(2)])
    w = g.op("Slice", [shape, g.ints(2), g.ints(3)])
    two, one = g.ints(2), g.ints(1)
    hm_c, wm_c = g.ints(hm), g.ints(wm)

    def div_round(a: str, b: str) -> str:  # serving.letterbox.div_round
        return g.op("Div", [g.op("Add", [g.op("Mul", [two, a]), b]), g.op("Mul", [two, b])])

    height_binds = g.op("LessOrEqual", [g.op("Mul", [hm_c, w]), g.op("Mul", [wm_c, h])])
    new_h = g.op("Where", [height_binds, hm_c, div_round(g.op("Mul", [h, wm_c]), w)])
    new_w = g.op("Where", [height_binds, div_round(g.op("Mul", [w, hm_c]), h), wm_c])
    hf, wf = (g.op("Cast", [x], to=TensorProto.FLOAT) for x in (h, w))
    scale = g.op(
        "Min",
        [
            g.op("Div", [g.const(np.array([hm], np.float32)), hf]),
            g.op("Div", [g.const(np.array([wm], np.float32)), wf]),
        ],
    )
    if not spec.letterbox.allow_upscale:
        new_h, new_w = g.op("Min", [new_h, h]), g.op("Min", [new_w, w])
        scale = g.op("Min", [scale, g.const(np.array([1.0], np.float32))])
    new_h, new_w = g.op("Max", [new_h, one]), g.op("Max", [new_w, one])
    pad_y = g.op("Div", [g.op("Sub", [hm_c, new_h]), two])
    pad_x = g.op("Div", [g.op("Sub", [wm_c, new_w]), two])

    # float NHWC resized (the channel axis kept), then NCHW and padded
    batch = g.op("Slice", [shape, g.ints(0), g.ints(1)])
    sizes = g.op("Concat", [batch, new_h, new_w, g.ints(3)], axis=0)
    x = g.op(
        "Resize",
        [x, "", "", sizes],
        mode="linear",
        coordinate_transformation_mode="half_pixel",
    )
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    zeros = g.ints(0, 0)
    pad_bottom = g.op("Sub", [g.op("Sub", [hm_c, new_h]), pad_y])
    pad_right = g.op("Sub", [g.op("Sub", [wm_c, new_w]), pad_x])
    pads = g.op("Concat", [zeros, pad_y, pad_x, zeros, pad_bottom, pad_right], axis=0)
    fill = g.const(np.array(spec.letterbox.pad_value, np.float32), "pad_value")
    x = g.op("Pad", [x, pads, fill], mode="constant")
    # the network takes uint8: the bilinear values (within 0..255) rounded, as OpenCV's are
    g.op("Cast", [g.op("Round", [x])], out=_NETWORK + S.IMAGES, to=TensorProto.UINT8)
    return _Geometry(h, w, hf, wf, new_h, new_w, pad_y, pad_x, scale)


def _postprocess(g: GraphBuilder, spec: ModelSpec, geo: _Geometry) -> None:
    from onnx import TensorProto

    f32 = TensorProto.FLOAT
    src = g.op("Cast", [S.SOURCE_HW], to=f32)  # [B, 2]: h, w
    src_h = g.op("Slice", [src, g.ints(0), g.ints(1), g.ints(1)])  # [B, 1]
    src_w = g.op("Slice", [src, g.ints(1), g.ints(2), g.ints(1)])
    hf, wf = geo.hf, geo.wf
    per_y = g.op("Div", [src_h, hf])  # source pixels per image pixel, [B, 1]
    per_x = g.op("Div", [src_w, wf])
    if "detection" in spec.tasks:
        pad_xy = g.op("Cast", [g.op("Concat", [geo.pad_x, geo.pad_y, geo.pad_x, geo.pad_y], axis=0)], to=f32)
        limit = g.op("Concat", [wf, hf, wf, hf], axis=0)
        boxes = g.op("Div", [g.op("Sub", [_NETWORK + S.DET_BOXES, pad_xy]), geo.scale])
        boxes = g.op("Min", [g.op("Max", [boxes, g.const(np.array(0.0, np.float32))]), limit])
        per = g.op("Concat", [per_x, per_y, per_x, per_y], axis=1)  # [B, 4]
        per = g.op("Unsqueeze", [per, g.ints(1)])  # [B, 1, 4]
        g.op("Mul", [boxes, per], out=S.DET_BOXES)
        for name in (S.NUM_DETS, S.DET_SCORES, S.DET_CLASSES):
            g.op("Identity", [_NETWORK + name], out=name)
    maps = [(S.SEG_MASK, 1)] if "segmentation" in spec.tasks else []
    maps += [(S.DEPTH, spec.depth_stride)] if "depth" in spec.tasks else []
    for name, stride in maps:
        y0, x0, h, w = _crop(g, geo, stride)
        ends = g.op("Concat", [g.op("Add", [y0, h]), g.op("Add", [x0, w])], axis=0)
        starts = g.op("Concat", [y0, x0], axis=0)
        if name == S.SEG_MASK:  # TensorRT has UINT8 for network I/O only: sliced as INT32
            wide = g.op("Cast", [_NETWORK + name], to=TensorProto.INT32)
            cut = g.op("Slice", [wide, starts, ends, g.ints(1, 2)])
            g.op("Cast", [cut], out=name, to=TensorProto.UINT8)
        else:
            g.op("Slice", [_NETWORK + name, starts, ends, g.ints(1, 2)], out=name)
    # the letterbox row in source terms (serving.letterbox.Letterbox.to_tensor's layout)
    batch = g.op("Slice", [g.op("Shape", [S.SOURCE_HW]), g.ints(0), g.ints(1)])
    scale = g.op("Div", [g.op("Unsqueeze", [geo.scale, g.ints(0)]), per_x])  # [B, 1]
    column = g.op("Concat", [batch, g.ints(1)], axis=0)

    def col(x: str) -> str:
        return g.op("Expand", [g.op("Unsqueeze", [g.op("Cast", [x], to=f32), g.ints(0)]), column])

    ones = col(g.ints(1))
    row = [scale, col(geo.pad_x), col(geo.pad_y), src_h, src_w, ones]
    g.op("Concat", row, out=S.LETTERBOX, axis=1)


def _crop(g: GraphBuilder, geo: _Geometry, stride: int) -> tuple[str, str, str, str]:
    """Letterbox.dense_crop in the graph."""
    if stride == 1:
        return geo.pad_y, geo.pad_x, geo.new_h, geo.new_w
    s, two, one = g.ints(stride), g.ints(2), g.ints(1)

    def div_round(a: str) -> str:
        return g.op("Max", [g.op("Div", [g.op("Add", [g.op("Mul", [two, a]), s]), g.ints(2 * stride)]), one])

    y0, x0 = g.op("Div", [geo.pad_y, s]), g.op("Div", [geo.pad_x, s])
    return y0, x0, div_round(geo.new_h), div_round(geo.new_w)


def write_frame_onnx(network_path: str | Path, out_path: str | Path, spec: ModelSpec) -> Path:
    """Load an exported network, build its frame model, check it and write it to ``out_path``."""
    onnx = _import_onnx()
    try:
        network = onnx.load(str(network_path))
    except Exception as exc:
        raise ServingError(f"{network_path} is not a readable ONNX file: {exc}") from exc
    proto = frame_model(network, spec)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # a contract this builder does not understand: say where
        raise ServingError(f"frame model of {spec.name} is not valid ONNX: {exc}") from exc
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out
