"""Stage 4 (bring your own ONNX): a YOLOP/HybridNets/TwinLiteNet-style file + a YAML head spec ->
an ONNX with the spec's network tensors, verified and ready for the same repository machinery.

The head spec (YAML) says what the file's tensors are::

    name: yolop                      # served model name
    input:
      name: images                   # the file's input tensor
      layout: NCHW                   # NCHW | NHWC
      dtype: float32                 # float32: normalised outside the file | uint8: raw pixels
      size: [384, 640]               # only needed when the file's H/W are dynamic
      mean: [123.675, 116.28, 103.53]  # (x - mean) / std on the 0..255 RGB scale; x/255 is
      std: [58.395, 57.12, 57.375]     # mean [0,0,0], std [255,255,255]
      pad_value: 114                 # letterbox padding the file was trained with
    detection:                       # optional
      output: det_out                # pre-NMS [B, N, 5 + C]
      layout: cxcywh                 # cxcywh | xyxy box columns, then objectness, then C classes
      activation: none               # none (already probabilities) | sigmoid (logits)
      classes: [car, truck, pedestrian]
    segmentation:                    # optional: two 2-channel maps, or one N-channel map
      drivable: drive_area_seg       # [B, 2, H, W], channel 1 = drivable
      lane: lane_line_seg            # [B, 2, H, W], channel 1 = lane marking (drawn over drivable)
      # map: seg_out                 # [B, N, H, W] with `classes: [...]` (N names)
    depth:                           # optional
      output: depth                  # [B, 1, H/s, W/s] or [B, H/s, W/s], s in 1, 2, 4
      scale: 1.0                     # metres per unit
    top_k: 100
    score_threshold: 0.25
    iou_threshold: 0.45

In front of the file: uint8 NCHW ``images`` -> float -> (x - mean) / std (-> NHWC). Behind it:
box decoding, objectness x class score, class-aware ``NonMaxSuppression`` and the fixed top-K
(the same algorithm as exported networks, see nms.py), argmax to a uint8 class map (lane over
drivable over background), depth squeezed and cast to FP16. Verification compares the result with
the original file run through ONNX Runtime plus numpy post-processing of the same algorithm.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.export.nms import greedy_nms_mask, top_k_from_mask_numpy
from exporters.export.options import BatchProfile, VerifyOptions
from serving.errors import ExportError, SpecError
from serving.spec import (
    DEPTH,
    DET_BOXES,
    DET_CLASSES,
    DET_SCORES,
    IMAGES,
    NUM_DETS,
    SEG_MASK,
    LetterboxRule,
    ModelSpec,
    Normalisation,
)

log = logging.getLogger(__name__)

WORLD_DET_CLASSES = ("car", "truck", "pedestrian")
DRIVABLE_LANE_CLASSES = ("background", "drivable", "lane")
_FLOAT, _UINT8, _INT32, _INT64, _BOOL, _FLOAT16 = 1, 2, 6, 7, 9, 10


# --- the head spec ------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str = "NCHW"
    dtype: str = "float32"
    size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    pad_value: int = 114

    def __post_init__(self) -> None:
        if self.layout not in ("NCHW", "NHWC"):
            raise SpecError(f"heads: input.layout must be NCHW or NHWC, got {self.layout!r}")
        if self.dtype not in ("float32", "uint8"):
            raise SpecError(f"heads: input.dtype must be float32 or uint8, got {self.dtype!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise SpecError("heads: input.mean and input.std need 3 values, std > 0")


@dataclass(frozen=True)
class DetectionSpec:
    output: str
    classes: tuple[str, ...]
    layout: str = "cxcywh"
    activation: str = "none"

    def __post_init__(self) -> None:
        if self.layout not in ("cxcywh", "xyxy"):
            raise SpecError(f"heads: detection.layout must be cxcywh or xyxy, got {self.layout!r}")
        if self.activation not in ("none", "sigmoid"):
            raise SpecError(f"heads: detection.activation must be none or sigmoid, got {self.activation!r}")
        if not self.classes:
            raise SpecError("heads: detection.classes must name at least one class")


@dataclass(frozen=True)
class SegmentationSpec:
    drivable: str | None = None
    lane: str | None = None
    map: str | None = None
    classes: tuple[str, ...] = DRIVABLE_LANE_CLASSES

    def __post_init__(self) -> None:
        if (self.map is None) == (self.drivable is None and self.lane is None):
            raise SpecError("heads: segmentation needs either `map` or `drivable`/`lane`, not both")
        if self.map is None and (self.drivable is None or self.lane is None):
            raise SpecError("heads: segmentation needs both `drivable` and `lane` (or one `map`)")
        if self.map is None and tuple(self.classes) != DRIVABLE_LANE_CLASSES:
            raise SpecError(f"heads: drivable/lane maps give the classes {list(DRIVABLE_LANE_CLASSES)}")


@dataclass(frozen=True)
class DepthSpec:
    output: str
    scale: float = 1.0


@dataclass(frozen=True)
class HeadSpec:
    name: str
    input: InputSpec
    detection: DetectionSpec | None = None
    segmentation: SegmentationSpec | None = None
    depth: DepthSpec | None = None
    top_k: int = 100
    score_threshold: float = 0.25
    iou_threshold: float = 0.45

    def __post_init__(self) -> None:
        if not (self.detection or self.segmentation or self.depth):
            raise SpecError("heads: describe at least one of detection, segmentation, depth")

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(
            t
            for t, h in (
                ("detection", self.detection),
                ("segmentation", self.segmentation),
                ("depth", self.depth),
            )
            if h
        )


def _section(data: dict, key: str, cls):
    raw = data.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(f"heads: {key} must be a mapping, got {type(raw).__name__}")
    fields = set(cls.__dataclass_fields__)
    unknown = set(raw) - fields
    if unknown:
        raise SpecError(
            f"heads: unknown key(s) in {key}: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(fields))})"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise SpecError(f"heads: {key}: {exc}") from exc


def load_head_spec(path: str | Path) -> HeadSpec:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"heads file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"heads file {path} must hold a mapping")
    known = {
        "name",
        "input",
        "detection",
        "segmentation",
        "depth",
        "top_k",
        "score_threshold",
        "iou_threshold",
    }
    unknown = set(data) - known
    if unknown:
        raise SpecError(f"heads file {path}: unknown key(s) {', '.join(sorted(unknown))}")
    if "input" not in data or "name" not in data:
        raise SpecError(f"heads file {path}: `name` and `input` are required")
    return HeadSpec(
        name=str(data["name"]),
        input=_section(data, "input", InputSpec),
        detection=_section(data, "detection", DetectionSpec),
        segmentation=_section(data, "segmentation", SegmentationSpec),
        depth=_section(data, "depth", DepthSpec),
        top_k=int(data.get("top_k", 100)),
        score_threshold=float(data.get("score_threshold", 0.25)),
        iou_threshold=float(data.get("iou_threshold", 0.45)),
    )


@dataclass(frozen=True)
class ImportOptions:
    model: Path
    heads: Path
    out_dir: Path
    profile: BatchProfile = field(default_factory=lambda: BatchProfile(1, 1, 8))
    verify: VerifyOptions = field(default_factory=lambda: VerifyOptions(scenes=20, batch=1))
    opset: int = 17

    def __post_init__(self) -> None:
        if not Path(self.model).is_file():
            raise SpecError(f"ONNX file {str(self.model)!r} does not exist")
        if not Path(self.heads).is_file():
            raise SpecError(f"heads file {str(self.heads)!r} does not exist")
        if self.opset < 17:
            raise SpecError(f"opset must be >= 17, got {self.opset}")


# --- validating the file against the head spec ------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """What validation learned about the file: sizes the surgery needs."""

    hw: tuple[int, int]
    batch_fixed: int | None  # the file's static batch size, None when dynamic
    anchors: int = 0  # N of the detection output
    depth_stride: int = 2


def _shape(vi) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
        for d in vi.type.tensor_type.shape.dim
    ]


def probe_output_shapes(model: Path, heads: HeadSpec, hw: tuple[int, int]) -> dict[str, list[int]]:
    """Concrete output shapes from one ONNX Runtime run at batch 1 (for files whose exporter left
    the output dims symbolic, e.g. torch's legacy exporter with dynamic_axes)."""
    from exporters.export.verify import ort_runner

    h, w = hw
    shape = (1, 3, h, w) if heads.input.layout == "NCHW" else (1, h, w, 3)
    dtype = np.float32 if heads.input.dtype == "float32" else np.uint8
    try:
        outs = ort_runner(model)({heads.input.name: np.zeros(shape, dtype)})
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{model}: a batch-1 probe run failed: {type(exc).__name__}: {exc}") from exc
    return {k: list(v.shape) for k, v in outs.items()}


def _symbolic(vi) -> bool:
    return any(not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim[1:])


def validate_input(proto, heads: HeadSpec) -> tuple[tuple[int, int], int | None]:
    """The input checks: (model input size, the file's fixed batch or None)."""
    inputs = {i.name: i for i in proto.graph.input}
    init_names = {i.name for i in proto.graph.initializer}
    real_inputs = [n for n in inputs if n not in init_names]
    hs = heads.input
    if hs.name not in inputs:
        raise SpecError(f"input {hs.name!r} is not in the file (inputs: {real_inputs})")
    if len(real_inputs) != 1:
        raise SpecError(
            f"the file has inputs {real_inputs}; only camera-only single-input files can be imported"
        )
    vi = inputs[hs.name]
    want = _FLOAT if hs.dtype == "float32" else _UINT8
    if vi.type.tensor_type.elem_type != want:
        raise SpecError(
            f"input {hs.name!r} has ONNX elem_type {vi.type.tensor_type.elem_type}, heads say {hs.dtype}"
        )
    shape = _shape(vi)
    if len(shape) != 4:
        raise SpecError(f"input {hs.name!r} has rank {len(shape)}, expected 4 ({hs.layout})")
    c, h, w = (shape[1], shape[2], shape[3]) if hs.layout == "NCHW" else (shape[3], shape[1], shape[2])
    if c != 3:
        raise SpecError(f"input {hs.name!r} {shape} has {c} channels in {hs.layout}, expected 3")
    if isinstance(h, int) and isinstance(w, int) and h and w:
        if hs.size is not None and tuple(hs.size) != (h, w):
            raise SpecError(f"input {hs.name!r} is {h}x{w}, heads say size {hs.size[0]}x{hs.size[1]}")
        hw = (h, w)
    elif hs.size is not None:
        hw = (int(hs.size[0]), int(hs.size[1]))
    else:
        raise SpecError(
            f"input {hs.name!r} has dynamic height/width {shape}: give input.size in the heads file"
        )
    if hw[0] % 32 or hw[1] % 32:
        raise SpecError(f"input size {hw[0]}x{hw[1]} must be multiples of 32")
    batch_fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return hw, batch_fixed


def validate(proto, heads: HeadSpec, probed: dict[str, list[int]] | None = None) -> Layout:
    """Check the file's tensors against the head spec; SpecError naming the first mismatch.
    ``probed``: concrete output shapes (batch axis excepted) where the file's are symbolic."""
    hw, batch_fixed = validate_input(proto, heads)
    outputs = {o.name: o for o in proto.graph.output}
    anchors, depth_stride = 0, 2

    def out(name: str, what: str) -> list[int | str]:
        if name not in outputs:
            raise SpecError(f"{what} output {name!r} is not in the file (outputs: {list(outputs)})")
        if outputs[name].type.tensor_type.elem_type not in (_FLOAT, _FLOAT16):
            raise SpecError(
                f"{what} output {name!r} must be float, "
                f"got elem_type {outputs[name].type.tensor_type.elem_type}"
            )
        shape: list[int | str] = _shape(outputs[name])
        if probed and name in probed and _symbolic(outputs[name]):
            shape = [shape[0], *probed[name][1:]] if shape else list(probed[name])
        return shape

    if heads.detection:
        d = heads.detection
        s = out(d.output, "detection")
        if len(s) != 3:
            raise SpecError(f"detection output {d.output!r} has shape {s}, expected [B, N, 5 + C]")
        if s[2] != 5 + len(d.classes):
            raise SpecError(
                f"detection output {d.output!r} has {s[2]} columns, expected 5 + {len(d.classes)} classes = "
                f"{5 + len(d.classes)}"
            )
        if not isinstance(s[1], int) or s[1] < 1:
            raise SpecError(
                f"detection output {d.output!r} needs a static number of candidates, got {s[1]!r}"
            )
        anchors = s[1]
    if heads.segmentation:
        sg = heads.segmentation
        maps = [(sg.map, len(sg.classes))] if sg.map else [(sg.drivable, 2), (sg.lane, 2)]
        for name, channels in maps:
            assert name is not None
            s = out(name, "segmentation")
            if len(s) != 4 or s[1] != channels or tuple(s[2:]) != hw:
                raise SpecError(
                    f"segmentation output {name!r} has shape {s}, expected [B, {channels}, {hw[0]}, {hw[1]}]"
                )
    if heads.depth:
        s = out(heads.depth.output, "depth")
        spatial = s[2:] if len(s) == 4 else s[1:]
        if (
            len(s) not in (3, 4)
            or (len(s) == 4 and s[1] != 1)
            or not all(isinstance(v, int) for v in spatial)
        ):
            raise SpecError(f"depth output {heads.depth.output!r} has shape {s}, expected [B, 1, H/s, W/s]")
        stride = hw[0] // int(spatial[0])
        if stride not in (1, 2, 4) or (hw[0] // stride, hw[1] // stride) != tuple(spatial):
            raise SpecError(
                f"depth output {heads.depth.output!r} {s} is not 1/1, 1/2 or 1/4 of {hw[0]}x{hw[1]}"
            )
        depth_stride = stride
    return Layout(hw, batch_fixed, anchors, depth_stride)


def model_spec(heads: HeadSpec, layout: Layout) -> ModelSpec:
    det_classes = heads.detection.classes if heads.detection else WORLD_DET_CLASSES
    m, sd = heads.input.mean, heads.input.std
    k = heads.top_k
    if heads.detection:
        k = min(k, layout.anchors * len(det_classes))
    return ModelSpec(
        name=heads.name,
        input_hw=layout.hw,
        det_classes=tuple(det_classes),
        seg_classes=tuple(heads.segmentation.classes) if heads.segmentation else DRIVABLE_LANE_CLASSES,
        depth_stride=layout.depth_stride,
        top_k=k,
        score_threshold=heads.score_threshold,
        iou_threshold=heads.iou_threshold,
        tasks=heads.tasks,
        normalisation=Normalisation(
            (float(m[0]), float(m[1]), float(m[2])), (float(sd[0]), float(sd[1]), float(sd[2]))
        ),
        letterbox=LetterboxRule(pad_value=heads.input.pad_value),
    )


# --- graph surgery ----------------------------------------------------------------------------------
class _Graph:
    """Appends nodes with fresh names to an ONNX graph."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.count = 0

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"percept_import/{hint}_{self.count}"

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = out or self.fresh(op_type.lower())
        self.graph.node.append(helper.make_node(op_type, inputs, [out], name=self.fresh(op_type), **attrs))
        return out


def _rename_everywhere(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for coll in (graph.input, graph.output, graph.value_info):
        for vi in coll:
            if vi.name == old:
                vi.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def compose(proto, heads: HeadSpec, spec: ModelSpec, layout: Layout):
    """Add the in-graph steps to ``proto`` (modified in place and returned)."""
    from onnx import TensorProto, helper

    graph = proto.graph
    g = _Graph(graph)
    spec_names = {t.name for t in spec.network_inputs + spec.network_outputs}
    renamed: dict[str, str] = {}
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {vi.name for vi in graph.input}
    for name in sorted(used & spec_names):
        renamed[name] = f"original/{name}"
        _rename_everywhere(graph, name, renamed[name])

    def orig(name: str) -> str:
        return renamed.get(name, name)

    # front: uint8 NCHW images -> what the file expects
    h, w = layout.hw
    src_in = orig(heads.input.name)
    for vi in list(graph.input):
        if vi.name == src_in:
            graph.input.remove(vi)
    first_new = len(graph.node)
    x = IMAGES
    if heads.input.dtype == "float32":
        x = g.op("Cast", [IMAGES], to=TensorProto.FLOAT)
        mean = np.asarray(heads.input.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(heads.input.std, np.float32).reshape(1, 3, 1, 1)
        x = g.op("Div", [g.op("Sub", [x, g.const(mean, "mean")]), g.const(std, "std")])
    if heads.input.layout == "NHWC":
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    g.op("Identity", [x], out=src_in)
    nodes = list(graph.node)  # the front nodes go first: ONNX graphs are topologically sorted
    del graph.node[:]
    graph.node.extend(nodes[first_new:] + nodes[:first_new])
    graph.input.insert(0, helper.make_tensor_value_info(IMAGES, TensorProto.UINT8, ["batch", 3, h, w]))

    outputs = []
    if heads.detection:
        _compose_detection(g, orig(heads.detection.output), heads.detection, spec, layout)
        outputs += [NUM_DETS, DET_BOXES, DET_SCORES, DET_CLASSES]
    if heads.segmentation:
        sg = heads.segmentation
        if sg.map:
            cls = g.op("ArgMax", [orig(sg.map)], axis=1, keepdims=0)
        else:
            assert sg.drivable is not None and sg.lane is not None
            drv = g.op("ArgMax", [orig(sg.drivable)], axis=1, keepdims=0)
            lane = g.op("ArgMax", [orig(sg.lane)], axis=1, keepdims=0)
            one, two, zero = (g.const(np.array(v, np.int64)) for v in (1, 2, 0))
            cls = g.op(
                "Where",
                [g.op("Equal", [lane, one]), two, g.op("Where", [g.op("Equal", [drv, one]), one, zero])],
            )
        g.op("Cast", [cls], out=SEG_MASK, to=TensorProto.UINT8)
        outputs.append(SEG_MASK)
    if heads.depth:
        d = orig(heads.depth.output)
        d = g.op("Cast", [d], to=TensorProto.FLOAT)
        dh, dw = spec.depth_hw
        d = g.op("Reshape", [d, g.const(np.array([-1, dh, dw], np.int64), "depth_shape")])
        if heads.depth.scale != 1.0:
            d = g.op("Mul", [d, g.const(np.array(heads.depth.scale, np.float32))])
        g.op("Cast", [d], out=DEPTH, to=TensorProto.FLOAT16)
        outputs.append(DEPTH)

    del graph.output[:]
    dtypes = {
        "int32": TensorProto.INT32,
        "float32": TensorProto.FLOAT,
        "uint8": TensorProto.UINT8,
        "float16": TensorProto.FLOAT16,
    }
    for t in spec.network_outputs:
        graph.output.append(helper.make_tensor_value_info(t.name, dtypes[t.dtype], list(t.dims)))
    del graph.value_info[:]  # stale after the renames; shape inference rebuilds it
    return proto


def _compose_detection(g: _Graph, det: str, d: DetectionSpec, spec: ModelSpec, layout: Layout) -> None:
    from onnx import TensorProto

    n, c, k = layout.anchors, len(d.classes), spec.top_k

    def cols(start: int, end: int) -> str:
        return g.op(
            "Slice",
            [
                det,
                g.const(np.array([start], np.int64)),
                g.const(np.array([end], np.int64)),
                g.const(np.array([2], np.int64)),
            ],
        )

    det = g.op("Cast", [det], to=TensorProto.FLOAT)
    if d.layout == "cxcywh":
        cxcy, wh = cols(0, 2), cols(2, 4)
        half = g.op("Mul", [wh, g.const(np.array(0.5, np.float32))])
        boxes = g.op("Concat", [g.op("Sub", [cxcy, half]), g.op("Add", [cxcy, half])], axis=2)
    else:
        boxes = cols(0, 4)
    obj, cls = cols(4, 5), cols(5, 5 + c)
    if d.activation == "sigmoid":
        obj, cls = g.op("Sigmoid", [obj]), g.op("Sigmoid", [cls])
    scores = g.op("Transpose", [g.op("Mul", [obj, cls])], perm=[0, 2, 1])  # [B, C, N]
    selected = g.op(
        "NonMaxSuppression",
        [
            boxes,
            scores,
            g.const(np.array([spec.top_k], np.int64)),
            g.const(np.array([spec.iou_threshold], np.float32)),
            g.const(np.array([spec.score_threshold], np.float32)),
        ],
    )
    zero = _tensor_attr(np.array([0.0], np.float32))  # float, not bool: see nms.nms_mask_onnx
    mask = g.op("ConstantOfShape", [g.op("Shape", [scores])], value=zero)
    count = g.op("Shape", [selected], start=0, end=1)
    ones = g.op("Expand", [g.const(np.array([1.0], np.float32)), count])
    keep = g.op("Greater", [g.op("ScatterND", [mask, selected, ones]), g.const(np.array(0.0, np.float32))])
    masked = g.op("Where", [keep, scores, g.const(np.array(-1.0, np.float32))])
    flat = g.op("Reshape", [masked, g.const(np.array([0, c * n], np.int64))])
    top = g.fresh("topk_values")
    order = g.fresh("topk_indices")
    from onnx import helper

    g.graph.node.append(
        helper.make_node(
            "TopK", [flat, g.const(np.array([k], np.int64))], [top, order], name=g.fresh("TopK"), axis=1
        )
    )
    valid = g.op("GreaterOrEqual", [top, g.const(np.array(0.0, np.float32))])
    num = g.op(
        "ReduceSum",
        [g.op("Cast", [valid], to=TensorProto.INT32), g.const(np.array([1], np.int64))],
        keepdims=0,
    )
    g.op("Identity", [num], out=NUM_DETS)
    zero64 = g.const(np.array(0, np.int64))
    cls_idx = g.op("Where", [valid, g.op("Div", [order, g.const(np.array(n, np.int64))]), zero64])
    g.op("Cast", [cls_idx], out=DET_CLASSES, to=TensorProto.INT32)
    box_idx = g.op("Mod", [order, g.const(np.array(n, np.int64))])
    idx3 = g.op("Unsqueeze", [box_idx, g.const(np.array([2], np.int64))])
    shape3 = g.op("Concat", [g.op("Shape", [box_idx]), g.const(np.array([4], np.int64))], axis=0)
    gathered = g.op("GatherElements", [boxes, g.op("Expand", [idx3, shape3])], axis=1)
    valid3 = g.op("Unsqueeze", [valid, g.const(np.array([2], np.int64))])
    g.op("Where", [valid3, gathered, g.const(np.array(0.0, np.float32))], out=DET_BOXES)
    g.op("Where", [valid, top, g.const(np.array(0.0, np.float32))], out=DET_SCORES)


def _tensor_attr(value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(value)


# --- the reference: original file + numpy -----------------------------------------------------------
def reference_runner(path: Path, heads: HeadSpec, spec: ModelSpec):
    """Original file in ONNX Runtime + numpy pre/post-processing of the same algorithm."""
    from exporters.export.verify import ort_runner

    run = ort_runner(path)

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs[IMAGES]
        if heads.input.dtype == "float32":
            mean = np.asarray(heads.input.mean, np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(heads.input.std, np.float32).reshape(1, 3, 1, 1)
            x = (x.astype(np.float32) - mean) / std
        if heads.input.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        raw = run({heads.input.name: np.ascontiguousarray(x)})
        return postprocess_numpy(raw, heads, spec)

    return reference


def postprocess_numpy(raw: dict[str, np.ndarray], heads: HeadSpec, spec: ModelSpec) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if heads.detection:
        d = heads.detection
        det = raw[d.output].astype(np.float32)
        if d.layout == "cxcywh":
            half = det[..., 2:4] * np.float32(0.5)
            boxes = np.concatenate([det[..., 0:2] - half, det[..., 0:2] + half], axis=2)
        else:
            boxes = det[..., 0:4]
        obj, cls = det[..., 4:5], det[..., 5:]
        if d.activation == "sigmoid":
            obj, cls = 1 / (1 + np.exp(-obj)), 1 / (1 + np.exp(-cls))
        scores = np.ascontiguousarray((obj * cls).transpose(0, 2, 1)).astype(np.float32)
        keep = greedy_nms_mask(boxes, scores, spec.top_k, spec.iou_threshold, spec.score_threshold)
        num, b, s, c = top_k_from_mask_numpy(boxes, scores, keep, spec.top_k)
        out.update({NUM_DETS: num, DET_BOXES: b, DET_SCORES: s, DET_CLASSES: c})
    if heads.segmentation:
        sg = heads.segmentation
        if sg.map:
            seg = raw[sg.map].argmax(axis=1)
        else:
            assert sg.drivable is not None and sg.lane is not None
            drv, lane = raw[sg.drivable].argmax(axis=1), raw[sg.lane].argmax(axis=1)
            seg = np.where(lane == 1, 2, np.where(drv == 1, 1, 0))
        out[SEG_MASK] = seg.astype(np.uint8)
    if heads.depth:
        dh, dw = spec.depth_hw
        depth = raw[heads.depth.output].astype(np.float32).reshape(-1, dh, dw)
        if heads.depth.scale != 1.0:
            depth = depth * np.float32(heads.depth.scale)
        out[DEPTH] = depth.astype(np.float16)
    return out


# --- the stage --------------------------------------------------------------------------------------
def import_onnx(
    model: Path, heads: HeadSpec, path: Path, profile: BatchProfile, opset: int = 17
) -> ModelSpec:
    """Validate ``model`` against ``heads``, compose the in-graph steps, write ``path``; the spec."""
    import onnx

    from exporters.export.onnx_export import check_onnx, file_sha256, set_metadata

    try:
        proto = onnx.load(str(model))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"{model}: not a valid ONNX file ({type(exc).__name__}: {exc})") from exc
    probed = None
    if any(_symbolic(o) for o in proto.graph.output):
        probed = probe_output_shapes(model, heads, validate_input(proto, heads)[0])
    layout = validate(proto, heads, probed)
    if layout.batch_fixed is not None and profile.max > layout.batch_fixed:
        raise SpecError(
            f"{model} has a fixed batch of {layout.batch_fixed}; use --max-batch {layout.batch_fixed} "
            "or re-export it with a dynamic batch axis"
        )
    spec = model_spec(heads, layout)
    default = [o for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    version = default[0].version if default else 1
    if version < opset:
        try:
            proto = onnx.version_converter.convert_version(proto, opset)
        except Exception as exc:
            raise ExportError(f"{model}: cannot convert opset {version} to {opset}: {exc}") from exc
    proto = compose(proto, heads, spec, layout)
    prov = {
        "network": spec.name,
        "imported_from": str(model),
        "source_sha256": file_sha256(Path(model)),
        "source_opset": version,
        "heads": json.loads(json.dumps(heads, default=lambda o: o.__dict__)),
        "input_hw": list(spec.input_hw),
        "det_classes": list(spec.det_classes),
        "onnx": onnx.__version__,
        "spec_hash": spec.spec_hash(),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    set_metadata(proto, spec, prov)
    tmp = path.with_name(path.name + ".partial")
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        onnx.save(proto, str(tmp))
        check_onnx(tmp, spec)
        os.replace(tmp, path)
    except ExportError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"composing {model} failed: {type(exc).__name__}: {exc}") from exc
    return spec


def run_import(options: ImportOptions, progress: bool = False):
    """`percept import-onnx`: import, verify against the original, write model.onnx + report.json."""
    from exporters.export.onnx_export import read_provenance
    from exporters.export.pipeline import FAILED_REPORT_NAME, ONNX_NAME, REPORT_NAME, ExportResult, fail_if
    from exporters.export.verify import ort_runner, verify

    heads = load_head_spec(options.heads)
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, report_path = out / ONNX_NAME, out / REPORT_NAME
    for stale in (final, report_path, out / FAILED_REPORT_NAME):
        stale.unlink(missing_ok=True)
    staging = out / (ONNX_NAME + ".unverified")
    spec = import_onnx(Path(options.model), heads, staging, options.profile, options.opset)
    world_gt = spec.det_classes == WORLD_DET_CLASSES and spec.seg_classes == DRIVABLE_LANE_CLASSES
    vopts = (
        options.verify
        if world_gt
        else VerifyOptions(options.verify.scenes, options.verify.batch, metrics=False)
    )
    if not world_gt:
        log.warning(
            "%s: classes differ from the world's; metric parity skipped, per-head comparison kept", spec.name
        )
    try:
        report = verify(
            ort_runner(staging),
            reference_runner(Path(options.model), heads, spec),
            spec,
            vopts,
            "imported vs original+numpy",
            progress=progress,
        )
        fail_if([report], out, spec)
        os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)
    document = {
        "network": spec.name,
        "spec": spec.to_dict(),
        "spec_hash": spec.spec_hash(),
        "provenance": read_provenance(final),
        "artifacts": {"onnx": final.name},
        "verification": [report.to_dict()],
        "passed": True,
    }
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, report_path)
    return ExportResult(final, report_path, [report])
