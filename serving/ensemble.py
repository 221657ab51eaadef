"""The ensemble's tensors and what its preprocess accepts, derived from a ModelSpec (no OpenCV).

``perception`` / ``perception_fusion`` is preprocess -> network -> postprocess. The names come from
:mod:`serving.spec`; the per-request dtypes and dims of the pipeline tensors are written here once,
for the config builder (:mod:`serving.model_config`) and the runtime (:mod:`serving.processing`).
"""

from __future__ import annotations

from dataclasses import dataclass

from serving import spec as S
from serving.errors import SpecError
from serving.spec import ModelSpec, TensorSpec


@dataclass(frozen=True)
class FrameLimits:
    """What preprocess accepts; a request outside these gets its own INVALID_ARG error."""

    max_pixels: int = 7680 * 4320  # 8K; checked on the header before an encoded image is decoded
    min_side: int = 16

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.min_side < 1:
            raise SpecError("max_pixels and min_side must be >= 1")

    def check(self, h: int, w: int, what: str = "image") -> None:
        if h < self.min_side or w < self.min_side:
            raise SpecError(f"{what} of {h}x{w} pixels is too small (min side {self.min_side})")
        if h * w > self.max_pixels:
            raise SpecError(
                f"{what} of {h}x{w} = {h * w} pixels exceeds the limit of {self.max_pixels} pixels"
            )


def letterbox_tensor() -> TensorSpec:
    """The per-frame letterbox geometry (:meth:`serving.letterbox.Letterbox.to_tensor`)."""
    return TensorSpec(
        S.LETTERBOX, "float32", ("batch", len(S.LETTERBOX_FIELDS)), ",".join(S.LETTERBOX_FIELDS)
    )


def resize_to_source_tensor() -> TensorSpec:
    return TensorSpec(S.RESIZE_TO_SOURCE, "bool", ("batch", 1), "dense maps at source size", optional=True)


def pipeline_inputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """Ensemble inputs per request, batch axis included ("batch")."""
    inputs = [
        TensorSpec(S.IMAGE, "uint8", ("batch", "height", "width", 3), "raw RGB frame", optional=True),
        TensorSpec(S.IMAGE_ENCODED, "uint8", ("batch", "bytes"), "JPEG/PNG file bytes", optional=True),
        resize_to_source_tensor(),
    ]
    if spec.fusion:
        inputs += [
            TensorSpec(S.POINTS, "float32", ("batch", "points", 4), "x,y,z,intensity, LiDAR frame"),
            TensorSpec(S.PROJECTION, "float32", ("batch", 3, 4), "LiDAR -> source pixels"),
        ]
    return tuple(inputs)


def pipeline_outputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """Ensemble outputs per request: network outputs in source terms, plus letterbox and class names."""
    k = spec.top_k
    outputs: list[TensorSpec] = []
    for t in spec.network_outputs:
        if t.name == S.DET_BOXES:
            outputs.append(TensorSpec(t.name, t.dtype, ("batch", k, 4), "x1,y1,x2,y2 source pixels"))
        elif t.name in (S.SEG_MASK, S.DEPTH):
            outputs.append(TensorSpec(t.name, t.dtype, ("batch", "height", "width"), t.doc))
        else:
            outputs.append(t)
    if "detection" in spec.tasks:
        outputs.append(TensorSpec(S.CLASS_NAMES, "bytes", ("batch", k), "class name per detection row"))
    outputs.append(letterbox_tensor())
    return tuple(outputs)


def preprocess_inputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """The pipeline inputs preprocess reads (``resize_to_source`` goes to postprocess)."""
    return tuple(t for t in pipeline_inputs(spec) if t.name != S.RESIZE_TO_SOURCE)


def preprocess_outputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """What preprocess hands the network (its inputs) plus the letterbox geometry for postprocess."""
    return (*spec.network_inputs, letterbox_tensor())


def postprocess_inputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """The network's outputs, the letterbox geometry from preprocess and the client's resize flag."""
    return (*spec.network_outputs, letterbox_tensor(), resize_to_source_tensor())
