"""The tensor contract: one frozen, torch-free description of a served perception network.

Everything else is derived from a :class:`ModelSpec`: the ONNX input/output names of the exported
network, TensorRT optimisation profiles, every config.pbtxt, the python-backend code and the client
decoders. A tensor name is written here once and nowhere else.

The models of one network in a repository (serving.model_config names them)
-------------------------------------------------------------------------------
* ``<net>``, the **network**: ``images`` uint8 NCHW **RGB**, already letterboxed to ``input_hw``;
  the float normalisation ``(x - mean) / std`` happens inside the graph. Detection is a fixed top-K
  after in-graph NMS, boxes ``x1,y1,x2,y2`` in model-input pixels, rows past ``num_dets`` zero;
  segmentation a uint8 class-id map; depth float16 metres at ``1/depth_stride`` resolution.
* ``<net>_frame``, the **frame model**: the network with its pre- and postprocessing inside the same
  graph (serving.frame_graph): ``image`` uint8 [B,H,W,3] RGB of any size (a batch holds frames of
  one size: Triton batches equal shapes only) and ``source_hw`` int32 [B,2], the frame the image
  shows (the image's own size for a raw frame; larger when an encoded frame was decoded at a
  reduced scale). Out: boxes in source pixels (clipped), dense maps cut out of the letterbox at
  model resolution, the ``letterbox`` geometry. A raw frame is served by this one model.
* the **pipeline** (ensemble): ``<net>_decode`` (python: JPEG/PNG decoded once, at a reduced DCT
  scale where the letterbox shrinks it anyway; for fusion networks the LiDAR projection, which
  TensorRT cannot run) -> ``<net>_frame``.
* Fusion networks take ``lidar_depth``: float32 [B,1,H,W], metres along the camera's optical axis
  of the LiDAR return that projects onto that pixel (the nearest one when several do), 0 = no return.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from serving.errors import SpecError

Dim = int | str  # an int is fixed; a str names a dynamic axis ("batch", "height", ...)

# numpy dtype name -> Triton config dtype; the only dtypes the contract uses
TRITON_DTYPES = {
    "uint8": "TYPE_UINT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "bool": "TYPE_BOOL",
    "bytes": "TYPE_STRING",
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name, or "bytes" for Triton TYPE_STRING
    dims: tuple[Dim, ...]  # including the batch axis where the tensor has one
    doc: str = ""
    optional: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in TRITON_DTYPES:
            raise SpecError(f"tensor {self.name!r}: unsupported dtype {self.dtype!r}")

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]

    def triton_dims(self, batched: bool) -> list[int]:
        """Dims as config.pbtxt writes them: batch axis dropped when Triton batches, -1 for dynamic."""
        dims = self.dims[1:] if batched else self.dims
        return [d if isinstance(d, int) else -1 for d in dims]


@dataclass(frozen=True)
class Normalisation:
    """Applied inside the network to RGB uint8 input: (x - mean) / std, per channel, 0..255 scale."""

    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class LetterboxRule:
    """Resize keeping aspect ratio so the image fits ``input_hw``, centre it, pad the rest."""

    pad_value: int = 114
    allow_upscale: bool = True


# Tensor names, written once. Network (raw model) tensors:
IMAGES = "images"
LIDAR_DEPTH = "lidar_depth"
NUM_DETS = "num_dets"
DET_BOXES = "det_boxes"
DET_SCORES = "det_scores"
DET_CLASSES = "det_classes"
SEG_MASK = "seg_mask"
DEPTH = "depth"

# Frame model and pipeline (ensemble) tensors, per request (batch axis implicit):
IMAGE = "image"  # uint8 HxWx3 RGB raw frame, any size
SOURCE_HW = "source_hw"  # int32 [2]: height, width of the frame ``image`` shows (boxes come back in it)
IMAGE_ENCODED = "image_encoded"  # uint8 [N] bytes of a JPEG/PNG file
POINTS = "points"  # float32 [N,4] x,y,z,intensity in the LiDAR frame (ragged N)
PROJECTION = "projection"  # float32 [3,4] LiDAR -> source-image pixels
LETTERBOX = "letterbox"  # float32 [len(LETTERBOX_FIELDS)], one row per frame
# the letterbox tensor's layout (serving.letterbox.Letterbox.to_tensor); valid is 1 for a real frame
LETTERBOX_FIELDS = ("scale", "pad_x", "pad_y", "src_h", "src_w", "valid")

TASKS = ("detection", "segmentation", "depth")

# the ensembles of the first camera and the first fusion network with every head in a repository
# (the default demo's); every other network's ensemble is named after it (serving.model_config)
ENSEMBLE_CAMERA = "perception"
ENSEMBLE_FUSION = "perception_fusion"

# Keys under which a served model carries its description: the config.pbtxt parameter and the ONNX
# metadata_props key holding ModelSpec.to_json(), and the ONNX metadata key of the export provenance.
SPEC_KEY = "perception_spec"
PROVENANCE_KEY = "provenance"

DEFAULT_INPUT_HW = (384, 640)  # the registered networks' default input size (H, W)


@dataclass(frozen=True)
class ModelSpec:
    """A served multi-task network: its inputs, heads and the tensors they produce."""

    name: str
    input_hw: tuple[int, int] = DEFAULT_INPUT_HW
    det_classes: tuple[str, ...] = ("car", "truck", "pedestrian")
    seg_classes: tuple[str, ...] = ("background", "drivable", "lane")
    depth_stride: int = 2
    max_depth_m: float = 120.0
    top_k: int = 100
    score_threshold: float = 0.25
    iou_threshold: float = 0.6
    fusion: bool = False
    tasks: tuple[str, ...] = TASKS  # a subset names a single-task network (benchmarks)
    normalisation: Normalisation = field(default_factory=Normalisation)
    letterbox: LetterboxRule = field(default_factory=LetterboxRule)

    def __post_init__(self) -> None:
        h, w = self.input_hw
        # any positive size: a stride rule belongs to a network family (exporters.networks), not here
        if h <= 0 or w <= 0:
            raise SpecError(f"input size {h}x{w} must be positive")
        if self.depth_stride not in (1, 2, 4):
            raise SpecError(f"depth_stride must be 1, 2 or 4, got {self.depth_stride}")
        if not self.det_classes or len(self.seg_classes) < 2:
            raise SpecError("need at least one detection class and two segmentation classes")
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise SpecError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if self.top_k < 1:
            raise SpecError(f"top_k must be >= 1, got {self.top_k}")

    @property
    def depth_hw(self) -> tuple[int, int]:
        return self.input_hw[0] // self.depth_stride, self.input_hw[1] // self.depth_stride

    @property
    def network_inputs(self) -> tuple[TensorSpec, ...]:
        h, w = self.input_hw
        images = TensorSpec(IMAGES, "uint8", ("batch", 3, h, w), "RGB, letterboxed, NCHW")
        if not self.fusion:
            return (images,)
        lidar = TensorSpec(LIDAR_DEPTH, "float32", ("batch", 1, h, w), "sparse depth (m), 0 = none")
        return images, lidar

    @property
    def network_outputs(self) -> tuple[TensorSpec, ...]:
        h, w = self.input_hw
        dh, dw = self.depth_hw
        k = self.top_k
        outputs: list[TensorSpec] = []
        if "detection" in self.tasks:
            outputs += [
                TensorSpec(NUM_DETS, "int32", ("batch",), "valid rows in the top-K outputs"),
                TensorSpec(DET_BOXES, "float32", ("batch", k, 4), "x1,y1,x2,y2 model-input pixels"),
                TensorSpec(DET_SCORES, "float32", ("batch", k)),
                TensorSpec(DET_CLASSES, "int32", ("batch", k), "index into det_classes"),
            ]
        if "segmentation" in self.tasks:
            outputs.append(TensorSpec(SEG_MASK, "uint8", ("batch", h, w), "index into seg_classes"))
        if "depth" in self.tasks:
            outputs.append(TensorSpec(DEPTH, "float16", ("batch", dh, dw), "metres"))
        return tuple(outputs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        data = dict(data)
        for key in ("input_hw", "det_classes", "seg_classes", "tasks"):
            if key in data:
                data[key] = tuple(data[key])
        if isinstance(data.get("normalisation"), dict):
            norm = data["normalisation"]
            data["normalisation"] = Normalisation(tuple(norm["mean"]), tuple(norm["std"]))
        if isinstance(data.get("letterbox"), dict):
            data["letterbox"] = LetterboxRule(**data["letterbox"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"bad model spec: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def spec_hash(self) -> str:
        """Short stable hash; engines and repositories record it to catch a mismatched artifact."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]
