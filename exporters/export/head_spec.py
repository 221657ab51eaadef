"""The YAML head spec of `percept import-onnx`: its schema, loaded into frozen dataclasses.

The schema (every key) is documented in docs/byom.md and generated from these dataclasses into
docs/reference/head-spec.md; one
worked head spec per real layout, each citing where its facts come from, is a file under
docs/examples/head_specs/ (tested against a file of exactly that layout); validation of an ONNX
file against a head spec is import_validate.py's; whether the spec means what the network means,
on the user's own images, is import_preview.py's (``import-onnx --images``).

Layouts, and the facts each rests on (checked against the exporters' source as we know it):

* detection ``format: yolo`` -- YOLOP and YOLOv5 (``Detect`` in export mode): one output
  [B, N, 5 + C], rows cx, cy, w, h in model-input pixels, objectness, C class probabilities (both
  already sigmoided); score = objectness x class probability.
* detection ``format: yolov8`` -- ultralytics YOLOv8/v11 ONNX ``output0``: [B, 4 + C, N],
  channel-first, cx, cy, w, h in input pixels then C class scores already sigmoided, no objectness
  (ultralytics ``Detect._inference``: ``torch.cat((dbox, cls.sigmoid()), 1)``).
* detection ``format: anchors`` -- HybridNets / EfficientDet: ``regression`` [B, N, 4] deltas in
  dy, dx, dh, dw order, ``classification`` [B, N, C] scores (the EfficientDet ``Classifier`` ends in
  a sigmoid), anchors [N, 4] or [1, N, 4] as y1, x1, y2, x2 input pixels, given as an output of the
  file or as a ``.npy`` beside the head spec. Decoded as EfficientDet's ``BBoxTransform``
  (zylo117/Yet-Another-EfficientDet-Pytorch, which HybridNets reuses; read again in its source:
  "anchors: [batchsize, boxes, (y1, x1, y2, x2)], regression: [batchsize, boxes, (dy, dx, dh, dw)]",
  adapted from google/automl efficientdet): y_c = dy * h_a + y_ca, x_c = dx * w_a + x_ca,
  h = exp(dh) * h_a, w = exp(dw) * w_a, then ``ClipBoxes`` to the image. No delta std scaling:
  RetinaNet-style heads (dx, dy first, std 0.1/0.2) are a different layout. The common HybridNets
  ONNX exports (e.g. PINTO_model_zoo 276_HybridNets) ship ``anchors_{H}x{W}.npy`` of shape [1, N, 4].
* segmentation: two 2-channel maps, channel 0 background (YOLOP drive_area_seg + lane_line_seg,
  TwinLiteNet da + ll: argmax each), or one [B, C, H, W] map:
  ``activation: softmax`` (C = len(classes), id = argmax; softmax is monotonic so the logits' argmax)
  or ``activation: sigmoid`` (C = len(classes) - 1 independent per-class maps, class 0 background
  implicit: id = 0 where every probability is below ``threshold``, else 1 + argmax).
* depth ``kind: metric`` -- metres = ``scale`` x output. ``kind: relative`` -- MiDaS / Depth-Anything
  relative models output affine-invariant inverse depth (disparity up to an unknown scale and
  shift): it cannot become metres without them, so the head spec must give ``scale`` and ``shift``
  (fitted by the user, e.g. least squares of 1/metres on a few frames with known depth) and the
  served depth is metres = 1 / max(scale x d + shift, 1 / max_depth_m). The contract's depth stays
  metres; serving the relative value itself would need a depth-kind field in ModelSpec.
* ``input.stride``: a file with dynamic H/W declares the multiple its sizes must be (14 for
  ViT-based depth networks with 14-pixel patches, 32 for YOLO backbones); ``input.size`` must be a
  multiple of it. A file with fixed H/W serves its own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from serving.errors import SpecError

WORLD_DET_CLASSES = ("car", "truck", "pedestrian")
DRIVABLE_LANE_CLASSES = ("background", "drivable", "lane")
DET_FORMATS = ("yolo", "yolov8", "anchors")
SEG_ACTIVATIONS = ("softmax", "sigmoid")
DEPTH_KINDS = ("metric", "relative")


# --- the head spec ------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str = "NCHW"
    dtype: str = "float32"
    size: tuple[int, int] | None = None
    stride: int | None = None
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
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise SpecError(f"heads: input.stride must be a positive integer, got {self.stride!r}")


@dataclass(frozen=True)
class DetectionSpec:
    output: str  # yolo/yolov8: the one detection output; anchors: the regression output
    classes: tuple[str, ...]
    format: str = "yolo"
    layout: str = "cxcywh"  # box columns of format yolo
    activation: str = "none"
    scores: str | None = None  # format anchors: the classification output
    anchors: str | None = None  # format anchors: an output name, or a .npy path (beside the spec)

    def __post_init__(self) -> None:
        if self.format not in DET_FORMATS:
            raise SpecError(
                f"heads: detection.format must be one of {', '.join(DET_FORMATS)}, got {self.format!r}"
            )
        if self.layout not in ("cxcywh", "xyxy"):
            raise SpecError(f"heads: detection.layout must be cxcywh or xyxy, got {self.layout!r}")
        if self.activation not in ("none", "sigmoid"):
            raise SpecError(f"heads: detection.activation must be none or sigmoid, got {self.activation!r}")
        if not self.classes:
            raise SpecError("heads: detection.classes must name at least one class")
        if self.format == "anchors" and (self.scores is None or self.anchors is None):
            raise SpecError("heads: detection.format anchors needs `scores` (classification) and `anchors`")
        if self.format != "anchors" and (self.scores is not None or self.anchors is not None):
            raise SpecError("heads: detection.scores/anchors belong to format anchors only")

    @property
    def anchors_file(self) -> Path | None:
        return Path(self.anchors) if self.anchors and self.anchors.endswith(".npy") else None


@dataclass(frozen=True)
class SegmentationSpec:
    drivable: str | None = None
    lane: str | None = None
    map: str | None = None
    classes: tuple[str, ...] = DRIVABLE_LANE_CLASSES
    activation: str = "softmax"  # one map: softmax (argmax) | sigmoid (threshold, background implicit)
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if (self.map is None) == (self.drivable is None and self.lane is None):
            raise SpecError("heads: segmentation needs either `map` or `drivable`/`lane`, not both")
        if self.map is None and (self.drivable is None or self.lane is None):
            raise SpecError("heads: segmentation needs both `drivable` and `lane` (or one `map`)")
        if self.map is None and tuple(self.classes) != DRIVABLE_LANE_CLASSES:
            raise SpecError(f"heads: drivable/lane maps give the classes {list(DRIVABLE_LANE_CLASSES)}")
        if self.activation not in SEG_ACTIVATIONS:
            raise SpecError(
                f"heads: segmentation.activation must be softmax or sigmoid, got {self.activation!r}"
            )
        if not 0.0 < self.threshold < 1.0:
            raise SpecError(f"heads: segmentation.threshold must be in (0, 1), got {self.threshold}")

    @property
    def map_channels(self) -> int:
        """Channels of the one map: sigmoid maps have no background channel."""
        return len(self.classes) - (1 if self.activation == "sigmoid" else 0)


@dataclass(frozen=True)
class DepthSpec:
    output: str
    kind: str = "metric"
    scale: float = 1.0
    shift: float | None = None  # kind relative: metres = 1 / (scale * d + shift)

    def __post_init__(self) -> None:
        if self.kind not in DEPTH_KINDS:
            raise SpecError(f"heads: depth.kind must be metric or relative, got {self.kind!r}")
        if self.kind == "relative" and self.shift is None:
            raise SpecError(
                f"heads: depth output {self.output!r} is relative inverse depth (known only up to scale "
                "and shift): give depth.scale and depth.shift, metres = 1 / (scale * d + shift)"
            )
        if self.kind == "metric" and self.shift is not None:
            raise SpecError("heads: depth.shift belongs to kind relative (metres = 1 / (scale * d + shift))")


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
    det = data.get("detection")
    if isinstance(det, dict) and str(det.get("anchors", "")).endswith(".npy"):
        # a .npy beside the spec: relative to the heads file, not to the working directory
        det = dict(det, anchors=str((Path(path).parent / det["anchors"]).resolve()))
        if not Path(det["anchors"]).is_file():
            raise SpecError(f"heads file {path}: detection.anchors file {det['anchors']} does not exist")
        data = dict(data, detection=det)
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
