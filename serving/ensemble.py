"""The ensemble's tensors and what its preprocess accepts, derived from a ModelSpec (no OpenCV).

``perception`` / ``perception_fusion`` is decode -> frame model (serving.spec says what each does).
The names come from :mod:`serving.spec`; the per-request dtypes and dims of the frame model's and
the pipeline's tensors are written here once, for the config builder (:mod:`serving.model_config`),
the graph builder (:mod:`serving.frame_graph`) and the runtime (:mod:`serving.processing`).
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
    spinning sweep is ~260 k).
    """

    max_pixels: int = 7680 * 4320  # 8K; checked on the header before an encoded image is decoded
    min_side: int = 16
    max_points: int = 2_000_000  # LiDAR returns per request
    max_request_bytes: int = 128 << 20  # all input tensors of one request together

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


def letterbox_tensor() -> TensorSpec:
    """The per-frame letterbox geometry (:meth:`serving.letterbox.Letterbox.to_tensor`)."""
    return TensorSpec(
        S.LETTERBOX, "float32", ("batch", len(S.LETTERBOX_FIELDS)), ",".join(S.LETTERBOX_FIELDS)
    )


def image_tensor(optional: bool = False) -> TensorSpec:
    return TensorSpec(S.IMAGE, "uint8", ("batch", "height", "width", 3), "raw RGB frame", optional=optional)


def frame_inputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """The frame model's inputs (serving.frame_graph): the frame, its source size, and the projected
    LiDAR of a fusion network (the network's own ``lidar_depth``)."""
    source = TensorSpec(S.SOURCE_HW, "int32", ("batch", 2), "height, width of the source frame")
    return (image_tensor(), source, *spec.network_inputs[1:])


def frame_outputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """The frame model's outputs, which are the pipeline's: network outputs in source terms."""
    outputs: list[TensorSpec] = []
    for t in spec.network_outputs:
        if t.name == S.DET_BOXES:
            outputs.append(TensorSpec(t.name, t.dtype, t.dims, "x1,y1,x2,y2 source pixels, clipped"))
        elif t.name in (S.SEG_MASK, S.DEPTH):
            doc = f"{t.doc}, cut out of the letterbox at model resolution"
            outputs.append(TensorSpec(t.name, t.dtype, ("batch", "height", "width"), doc))
        else:
            outputs.append(t)
    outputs.append(letterbox_tensor())
    return tuple(outputs)


def pipeline_inputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """Ensemble inputs per request, batch axis included ("batch"): what its decode step reads."""
    inputs = [
        image_tensor(optional=True),
        TensorSpec(S.IMAGE_ENCODED, "uint8", ("batch", "bytes"), "JPEG/PNG file bytes", optional=True),
    ]
    if spec.fusion:
        inputs += [
            TensorSpec(S.POINTS, "float32", ("batch", "points", 4), "x,y,z,intensity, LiDAR frame"),
            TensorSpec(S.PROJECTION, "float32", ("batch", 3, 4), "LiDAR -> source pixels"),
        ]
    return tuple(inputs)


def pipeline_outputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    return frame_outputs(spec)


def decode_outputs(spec: ModelSpec) -> tuple[TensorSpec, ...]:
    """What the decode step hands the frame model: its inputs."""
    return frame_inputs(spec)
