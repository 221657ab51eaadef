"""The YAML head spec of `percept import-onnx` and the validation of an ONNX file against it.

The schema (every key, with YOLOP's values) is documented in import_onnx.py. Validation raises
SpecError naming the first tensor that does not fit (name, dtype, rank, channels, size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving.errors import ExportError, SpecError
from serving.spec import LetterboxRule, ModelSpec, Normalisation

WORLD_DET_CLASSES = ("car", "truck", "pedestrian")
DRIVABLE_LANE_CLASSES = ("background", "drivable", "lane")
_FLOAT, _UINT8, _FLOAT16 = 1, 2, 10


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


def is_symbolic(vi) -> bool:
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
        if probed and name in probed and is_symbolic(outputs[name]):
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
