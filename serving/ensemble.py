"""The ensemble's tensors and what its preprocess accepts, derived from a ModelSpec (no OpenCV).

``perception`` / ``perception_fusion`` is preprocess -> network -> postprocess. The names come from
:mod:`serving.spec`; the per-request dtypes and dims of the pipeline tensors are written here once,
for the config builder (:mod:`serving.model_config`) and the runtime (:mod:`serving.processing`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from serving import spec as S
from serving.errors import SpecError
from serving.spec import ModelSpec, TensorSpec


@dataclass(frozen=True)
class FrameLimits:
    """What preprocess accepts; a request outside these gets its own INVALID_ARG error.

    Written into the pre- and postprocess configs as string parameters (:meth:`to_parameters`) and
    read back by the python-backend models (:meth:`from_parameters`). Defaults: an 8K frame (a raw
    7680x4320 RGB frame is 99.5 MB, hence 128 MiB per request); 2 M LiDAR points (32 MB; a 128-beam
    spinning sweep is ~260 k); dense maps resized to the source up to 4K UHD (25 MB of seg + depth
    per reply: resize_to_source of an 8K frame would answer a few-kB PNG with 100 MB).
    """

    max_pixels: int = 7680 * 4320  # 8K; checked on the header before an encoded image is decoded
    min_side: int = 16
    max_points: int = 2_000_000  # LiDAR returns per request
    max_request_bytes: int = 128 << 20  # all input tensors of one request together
    max_resize_pixels: int = 3840 * 2160  # resize_to_source above this is refused

    def __post_init__(self) -> None:
        for name, value in self.to_parameters().items():
            if int(value) < 1:
                raise SpecError(f"FrameLimits.{name} must be >= 1, got {value}")

    def to_parameters(self) -> dict[str, str]:
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> FrameLimits:
        """The limits a config carries; a key it lacks (an older repository) keeps its default."""
        return cls(**{f.name: int(params[f.name]) for f in fields(cls) if f.name in params})

    def check(self, h: int, w: int, what: str = "image") -> None:
        if h < self.min_side or w < self.min_side:
            raise SpecError(f"{what} of {h}x{w} pixels is too small (min side {self.min_side})")
        if h * w > self.max_pixels:
            raise SpecError(
                f"{what} of {h}x{w} = {h * w} pixels exceeds the limit of {self.max_pixels} pixels"
            )

    def check_request(self, nbytes: int, points: int) -> None:
        """Before any decoding: the request's total input bytes and LiDAR point count."""
        if nbytes > self.max_request_bytes:
            raise SpecError(
                f"request of {nbytes} bytes exceeds the limit of {self.max_request_bytes} bytes "
                "(max_request_bytes): send a smaller or encoded frame"
            )
        if points > self.max_points:
            raise SpecError(
                f"{S.POINTS} holds {points} LiDAR points, above the limit of {self.max_points} "
                "(max_points): downsample the sweep"
            )

    def check_resize(self, h: int, w: int) -> None:
        if h * w > self.max_resize_pixels:
            raise SpecError(
                f"{S.RESIZE_TO_SOURCE} of a {h}x{w} frame asks for {h * w}-pixel maps, above the limit "
                f"of {self.max_resize_pixels} (max_resize_pixels): ask for model-resolution maps"
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
