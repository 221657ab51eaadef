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

from exporters.export.head_spec import (
    DRIVABLE_LANE_CLASSES,
    WORLD_DET_CLASSES,
    DetectionSpec,
    HeadSpec,
    Layout,
    is_symbolic,
    load_head_spec,
    model_spec,
    probe_output_shapes,
    validate,
    validate_input,
)
from exporters.export.nms import greedy_nms_mask, top_k_from_mask_numpy
from exporters.export.options import BatchProfile, VerifyOptions
from serving.errors import ExportError, SpecError
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, IMAGES, NUM_DETS, SEG_MASK, ModelSpec

log = logging.getLogger(__name__)

__all__ = ["ImportOptions", "import_onnx", "load_head_spec", "reference_runner", "run_import"]


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

    from exporters.export.onnx_export import file_sha256, save_checked, set_metadata

    try:
        proto = onnx.load(str(model))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"{model}: not a valid ONNX file ({type(exc).__name__}: {exc})") from exc
    probed = None
    if any(is_symbolic(o) for o in proto.graph.output):
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
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        save_checked(proto, path, spec)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"composing {model} failed: {type(exc).__name__}: {exc}") from exc
    return spec


def run_import(options: ImportOptions, progress: bool = False):
    """`percept import-onnx`: import, verify against the original, write model.onnx + report.json."""
    from exporters.export.onnx_export import read_provenance
    from exporters.export.run import FAILED_REPORT_NAME, ONNX_NAME, REPORT_NAME, ExportResult, fail_if
    from exporters.export.trt_compat import compat_stage
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
    compat_stage(final, "onnx")
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
