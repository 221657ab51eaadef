"""Request tensors for a served model, built once per frame before the load starts.

The model's own config (from the server) says which inputs it takes: the raw network gets the
letterboxed uint8 NCHW image (and the LiDAR depth image for fusion), the ensemble gets the source
frame (raw or encoded) and, for fusion, the points and projection matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from clients.loadtest.frames import Frame
from serving.errors import SpecError
from serving.letterbox import Letterbox
from serving.lidar import project_to_depth_image
from serving.spec import (
    IMAGE,
    IMAGE_ENCODED,
    IMAGES,
    LIDAR_DEPTH,
    POINTS,
    PROJECTION,
    TRITON_DTYPES,
    LetterboxRule,
)

# Triton config dtype ("TYPE_UINT8") -> numpy dtype name, derived from the spec's one table
_NUMPY_OF_CONFIG = {v: k for k, v in TRITON_DTYPES.items()}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: str  # numpy dtype name ("bytes" for TYPE_STRING)
    dims: tuple[int, ...]  # without the batch axis when the model batches
    optional: bool


@dataclass(frozen=True)
class ModelInfo:
    name: str
    inputs: tuple[InputSpec, ...]
    batched: bool  # max_batch_size > 0: requests carry a leading batch axis
    ensemble_steps: tuple[str, ...]  # composing models of an ensemble, else empty
    max_batch_size: int

    @classmethod
    def from_config(cls, config) -> ModelInfo:
        """From a ``tritonclient.grpc.model_config_pb2.ModelConfig``."""
        from tritonclient.grpc import model_config_pb2

        inputs = []
        for inp in config.input:
            type_name = model_config_pb2.DataType.Name(inp.data_type)
            if type_name not in _NUMPY_OF_CONFIG:
                raise SpecError(f"model {config.name!r} input {inp.name!r}: unsupported dtype {type_name}")
            inputs.append(InputSpec(inp.name, _NUMPY_OF_CONFIG[type_name], tuple(inp.dims), inp.optional))
        steps = tuple(step.model_name for step in config.ensemble_scheduling.step)
        return cls(config.name, tuple(inputs), config.max_batch_size > 0, steps, config.max_batch_size)


def _model_hw(spec: InputSpec, batched: bool) -> tuple[int, int]:
    dims = spec.dims if batched else spec.dims[1:]  # [3,H,W] or [1,H,W]
    if len(dims) != 3 or dims[1] < 1 or dims[2] < 1:
        raise SpecError(f"input {spec.name!r} has dims {spec.dims}; need a fixed NCHW size")
    return int(dims[1]), int(dims[2])


def _fit(frame: Frame, hw: tuple[int, int], rule: LetterboxRule) -> Letterbox:
    return Letterbox.fit((frame.image.shape[0], frame.image.shape[1]), hw, rule.allow_upscale)


def _encode(image: np.ndarray, encoding: str) -> np.ndarray:
    ok, buf = cv2.imencode("." + encoding, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SpecError(f"OpenCV could not encode a frame as {encoding}")
    return np.frombuffer(buf.tobytes(), dtype=np.uint8)


def _tensor_for(spec: InputSpec, info: ModelInfo, frame: Frame, encoding: str) -> np.ndarray | None:
    """The array for one input, or None to leave an optional input out."""
    rule = LetterboxRule()
    if spec.name == IMAGES:
        hw = _model_hw(spec, info.batched)
        lb = _fit(frame, hw, rule)
        return np.ascontiguousarray(lb.apply(frame.image, hw, rule.pad_value).transpose(2, 0, 1))
    if spec.name == LIDAR_DEPTH:
        if frame.points is None or frame.projection is None:
            raise SpecError(f"model {info.name!r} needs LiDAR; use world frames (no --images/--video)")
        hw = _model_hw(spec, info.batched)
        lb = _fit(frame, hw, rule)
        return project_to_depth_image(frame.points, frame.projection, hw, lb)
    if spec.name == IMAGE:
        return frame.image if encoding == "raw" else None
    if spec.name == IMAGE_ENCODED:
        return _encode(frame.image, encoding) if encoding != "raw" else None
    if spec.name in (POINTS, PROJECTION):
        value = frame.points if spec.name == POINTS else frame.projection
        if value is None:
            if spec.optional:
                return None
            raise SpecError(f"model {info.name!r} needs LiDAR {spec.name}; use world frames")
        return np.ascontiguousarray(value, dtype=np.float32)
    if spec.optional:
        return None
    raise SpecError(f"model {info.name!r} requires input {spec.name!r}, which the load test cannot fill")


def build_payload(info: ModelInfo, frame: Frame, encoding: str = "raw") -> list[tuple[str, np.ndarray]]:
    """(name, array) pairs for one request of batch 1 carrying ``frame``."""
    names = {spec.name for spec in info.inputs}
    wanted_image = IMAGE if encoding == "raw" else IMAGE_ENCODED
    if IMAGES not in names and wanted_image not in names:
        raise SpecError(
            f"model {info.name!r} takes none of {IMAGES!r}/{wanted_image!r} (encoding {encoding})"
        )
    tensors = []
    for spec in info.inputs:
        array = _tensor_for(spec, info, frame, encoding)
        if array is None:
            continue
        if spec.dtype != "bytes":
            array = np.ascontiguousarray(array, dtype=spec.dtype)
        if info.batched:
            array = array[None]
        tensors.append((spec.name, array))
    return tensors
