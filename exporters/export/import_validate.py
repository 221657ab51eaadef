"""Validation of an ONNX file against its head spec (head_spec.py): the first tensor that does not
fit raises SpecError naming it (name, dtype, rank, channels, size); what fits becomes a Layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exporters.export.head_spec import DRIVABLE_LANE_CLASSES, WORLD_DET_CLASSES, DetectionSpec, HeadSpec
from serving.errors import ExportError, SpecError
from serving.spec import LetterboxRule, ModelSpec, Normalisation

__all__ = [
    "Layout",
    "is_symbolic",
    "load_anchors",
    "model_spec",
    "probe_output_shapes",
    "validate",
    "validate_input",
]

_FLOAT, _UINT8, _FLOAT16 = 1, 2, 10


@dataclass(frozen=True)
class Layout:
    """What validation learned about the file: sizes the surgery needs."""

    hw: tuple[int, int]
    batch_fixed: int | None  # the file's static batch size, None when dynamic
    anchors: int = 0  # N, the detection candidates
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


def is_symbolic(vi) -> bool:
    return any(not d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim[1:])


def load_anchors(d: DetectionSpec) -> np.ndarray | None:
    """The anchors of format anchors given as a .npy, as float32 [N, 4] y1, x1, y2, x2."""
    if d.anchors_file is None:
        return None
    try:
        a = np.load(d.anchors_file)
    except (OSError, ValueError) as exc:
        raise SpecError(f"detection anchors {str(d.anchors_file)!r}: {exc}") from exc
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2 or a.shape[1] != 4:
        raise SpecError(
            f"detection anchors {str(d.anchors_file)!r} have shape {list(a.shape)}, expected [N, 4]"
        )
    return a.astype(np.float32)


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
        # fixed H/W: the file serves its own size, whatever stride its backbone has
        if hs.size is not None and tuple(hs.size) != (h, w):
            raise SpecError(f"input {hs.name!r} is {h}x{w}, heads say size {hs.size[0]}x{hs.size[1]}")
        hw = (h, w)
    elif hs.size is None or hs.stride is None:
        raise SpecError(
            f"input {hs.name!r} has dynamic height/width {shape}: give input.size and input.stride "
            "(the multiple the network's sizes must be, e.g. 32 for YOLO, 14 for ViT depth networks)"
        )
    else:
        hw = (int(hs.size[0]), int(hs.size[1]))
        if hw[0] % hs.stride or hw[1] % hs.stride:
            raise SpecError(
                f"input {hs.name!r}: size {hw[0]}x{hw[1]} is not a multiple of input.stride {hs.stride}"
            )
    batch_fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return hw, batch_fixed


class _Outputs:
    """The file's outputs by name, shapes made concrete from the probe where they are symbolic."""

    def __init__(self, proto, probed: dict[str, list[int]] | None) -> None:
        self.outputs = {o.name: o for o in proto.graph.output}
        self.probed = probed or {}

    def shape(self, name: str, what: str) -> list[int | str]:
        outputs = self.outputs
        if name not in outputs:
            raise SpecError(f"{what} output {name!r} is not in the file (outputs: {list(outputs)})")
        if outputs[name].type.tensor_type.elem_type not in (_FLOAT, _FLOAT16):
            raise SpecError(
                f"{what} output {name!r} must be float, "
                f"got elem_type {outputs[name].type.tensor_type.elem_type}"
            )
        shape: list[int | str] = _shape(outputs[name])
        if name in self.probed and is_symbolic(outputs[name]):
            shape = [shape[0], *self.probed[name][1:]] if shape else list(self.probed[name])
        return shape


def _static_n(name: str, n: int | str) -> int:
    if not isinstance(n, int) or n < 1:
        raise SpecError(f"detection output {name!r} needs a static number of candidates, got {n!r}")
    return n


def _validate_detection(d: DetectionSpec, outs: _Outputs) -> int:
    """N, the number of candidates."""
    c = len(d.classes)
    s = outs.shape(d.output, "detection")
    if d.format == "yolo":
        if len(s) != 3:
            raise SpecError(f"detection output {d.output!r} has shape {s}, expected [B, N, 5 + C]")
        if s[2] != 5 + c:
            raise SpecError(
                f"detection output {d.output!r} has {s[2]} columns, expected 5 + {c} classes = {5 + c}"
            )
        return _static_n(d.output, s[1])
    if d.format == "yolov8":
        if len(s) != 3:
            raise SpecError(f"detection output {d.output!r} has shape {s}, expected [B, 4 + C, N] (yolov8)")
        if s[1] != 4 + c:
            raise SpecError(
                f"detection output {d.output!r} has {s[1]} channels, expected 4 + {c} classes = {4 + c} "
                "([B, 4 + C, N], yolov8)"
            )
        return _static_n(d.output, s[2])
    assert d.scores is not None and d.anchors is not None  # DetectionSpec checks format anchors
    if len(s) != 3 or s[2] != 4:
        raise SpecError(f"detection output {d.output!r} has shape {s}, expected [B, N, 4] box deltas")
    n = _static_n(d.output, s[1])
    sc = outs.shape(d.scores, "detection")
    if len(sc) != 3 or sc[1] != n or sc[2] != c:
        raise SpecError(f"detection output {d.scores!r} has shape {sc}, expected [B, {n}, {c}] class scores")
    npy = load_anchors(d)
    if npy is not None:
        a: list[int | str] = list(npy.shape)
        where = f"detection anchors {str(d.anchors_file)!r}"
    else:
        a = outs.shape(d.anchors, "detection anchors")
        a = a[1:] if len(a) == 3 else a
        where = f"detection anchors output {d.anchors!r}"
    if a != [n, 4]:
        raise SpecError(f"{where} have shape {a}, expected [{n}, 4] (y1, x1, y2, x2)")
    return n


def validate(proto, heads: HeadSpec, probed: dict[str, list[int]] | None = None) -> Layout:
    """Check the file's tensors against the head spec; SpecError naming the first mismatch.
    ``probed``: concrete output shapes (batch axis excepted) where the file's are symbolic."""
    hw, batch_fixed = validate_input(proto, heads)
    outs = _Outputs(proto, probed)
    anchors, depth_stride = 0, 2
    if heads.detection:
        anchors = _validate_detection(heads.detection, outs)
    if heads.segmentation:
        sg = heads.segmentation
        maps = [(sg.map, sg.map_channels)] if sg.map else [(sg.drivable, 2), (sg.lane, 2)]
        for name, channels in maps:
            assert name is not None
            s = outs.shape(name, "segmentation")
            if len(s) != 4 or s[1] != channels or tuple(s[2:]) != hw:
                why = (
                    f" ({sg.activation}: background implicit)"
                    if sg.map and sg.activation == "sigmoid"
                    else ""
                )
                raise SpecError(
                    f"segmentation output {name!r} has shape {s}, "
                    f"expected [B, {channels}, {hw[0]}, {hw[1]}]{why}"
                )
    if heads.depth:
        s = outs.shape(heads.depth.output, "depth")
        spatial = s[2:] if len(s) == 4 else s[1:]
        if (
            len(s) not in (3, 4)
            or (len(s) == 4 and s[1] != 1)
            or not all(isinstance(v, int) and v > 0 for v in spatial)
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
