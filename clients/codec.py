"""Pre- and postprocessing on the client side (numpy + OpenCV, no tritonclient).

Used by the raw mode (the client letterboxes and decodes against the raw network model), by the
local ONNX Runtime backend, and to read the ensemble's outputs. The geometry is serving.letterbox's,
the same code the server's preprocess/postprocess run, so the three paths agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import cv2
import numpy as np

from clients.results import Detection, PerceptionResult
from serving import spec as S
from serving.errors import SpecError
from serving.letterbox import Letterbox, network_image
from serving.lidar import check_points, project_to_depth_image
from serving.spec import SPEC_KEY, ModelSpec


def decode_image(data: bytes) -> np.ndarray:
    """Encoded JPEG/PNG bytes -> HxWx3 uint8 RGB. Raises SpecError for bytes OpenCV cannot decode."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise SpecError(f"cannot decode image ({len(data)} bytes): not a JPEG/PNG OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_rgb(image: bytes | None, frame: np.ndarray | None) -> np.ndarray:
    """Exactly one of encoded ``image`` bytes or an RGB ``frame`` -> a checked HxWx3 uint8 RGB array."""
    if (image is None) == (frame is None):
        raise SpecError("pass exactly one of image= (encoded bytes) or frame= (HxWx3 uint8 RGB array)")
    return decode_image(image) if image is not None else check_frame(frame)


def hw(array: np.ndarray) -> tuple[int, int]:
    return int(array.shape[0]), int(array.shape[1])


def check_frame(frame: np.ndarray | None) -> np.ndarray:
    """Frames are HxWx3 uint8 **RGB** (convert OpenCV's BGR with cv2.cvtColor first)."""
    if frame is None:
        raise SpecError("no frame given")
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise SpecError(f"frame must be an HxWx3 uint8 RGB array, got {frame.dtype} {tuple(frame.shape)}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise SpecError(f"frame of {frame.shape[0]}x{frame.shape[1]} pixels is too small")
    return np.ascontiguousarray(frame)


def check_lidar(spec: ModelSpec, points, projection) -> tuple[np.ndarray, np.ndarray] | None:
    if points is None and projection is None:
        if spec.fusion:
            raise SpecError(f"model {spec.name} fuses LiDAR: pass points and projection")
        return None
    if points is None or projection is None:
        raise SpecError("points and projection go together: pass both or neither")
    if not spec.fusion:
        raise SpecError(f"model {spec.name} is camera-only: it takes no LiDAR points")
    pts = np.ascontiguousarray(points, dtype=np.float32)
    proj = np.ascontiguousarray(projection, dtype=np.float32)
    check_points(pts, proj)
    return pts, proj


def network_inputs(
    spec: ModelSpec, frame: np.ndarray, lidar: tuple[np.ndarray, np.ndarray] | None
) -> tuple[dict[str, np.ndarray], Letterbox]:
    """Letterbox a frame (and project its LiDAR) into the raw network's batched inputs."""
    image, lb = network_image(frame, spec.input_hw, spec.letterbox)
    inputs = {S.IMAGES: image[None]}
    if spec.fusion:
        if lidar is None:
            raise SpecError(f"model {spec.name} fuses LiDAR: pass points and projection")
        inputs[S.LIDAR_DEPTH] = project_to_depth_image(lidar[0], lidar[1], spec.input_hw, lb)[None]
    return inputs, lb


def _detections(
    spec: ModelSpec, outputs: Mapping[str, np.ndarray], to_source: Letterbox | None
) -> tuple[Detection, ...] | None:
    if "detection" not in spec.tasks:
        return None
    if S.NUM_DETS not in outputs:
        return ()
    n = int(np.asarray(outputs[S.NUM_DETS]).reshape(-1)[0])
    boxes = np.asarray(outputs[S.DET_BOXES], dtype=np.float32).reshape(-1, 4)[:n]
    if to_source is not None:
        boxes = to_source.boxes_to_source(boxes)
    scores = np.asarray(outputs[S.DET_SCORES], dtype=np.float32).reshape(-1)[:n]
    classes = np.asarray(outputs[S.DET_CLASSES]).reshape(-1)[:n].astype(np.int64)
    names = spec.det_classes
    return tuple(
        Detection(
            box=tuple(float(v) for v in b),  # type: ignore[arg-type]
            score=float(s),
            class_id=int(c),
            class_name=names[c] if 0 <= c < len(names) else str(int(c)),
        )
        for b, s, c in zip(boxes, scores, classes, strict=True)
    )


def result_from_network(
    spec: ModelSpec, outputs: Mapping[str, np.ndarray], lb: Letterbox, resize_to_source: bool = False
) -> PerceptionResult:
    """Raw network outputs of one image (batch axis removed) -> a result in source coordinates."""
    seg = outputs.get(S.SEG_MASK)
    depth = outputs.get(S.DEPTH)
    return PerceptionResult(
        detections=_detections(spec, outputs, lb),
        seg=None if seg is None else lb.crop_dense(np.asarray(seg), 1, resize_to_source),
        depth=None
        if depth is None
        else lb.crop_dense(np.asarray(depth), spec.depth_stride, resize_to_source),
        letterbox=lb,
        seg_classes=spec.seg_classes,
    )


def result_from_pipeline(
    spec: ModelSpec,
    outputs: Mapping[str, np.ndarray],
    source_hw: tuple[int, int],
    resize_to_source: bool = False,
) -> PerceptionResult:
    """A pipeline's or frame model's outputs of one request (boxes in source pixels, dense maps cut
    out of the letterbox at model resolution; resized to the source here when asked: the bytes of a
    source-size map are the client's to make, not the wire's to carry)."""
    if S.LETTERBOX in outputs:
        lb = Letterbox.from_tensor(outputs[S.LETTERBOX])
    else:
        lb = Letterbox.fit(source_hw, spec.input_hw, spec.letterbox.allow_upscale)
    seg = outputs.get(S.SEG_MASK)
    depth = outputs.get(S.DEPTH)
    if resize_to_source:
        seg = None if seg is None else lb.to_source_size(np.asarray(seg))
        depth = None if depth is None else lb.to_source_size(np.asarray(depth))
    return PerceptionResult(
        detections=_detections(spec, outputs, None),
        seg=None if seg is None else np.ascontiguousarray(seg, dtype=np.uint8),
        depth=None if depth is None else np.ascontiguousarray(depth, dtype=np.float16),
        letterbox=lb,
        seg_classes=spec.seg_classes,
    )


def spec_from_parameters(parameters: Mapping[str, str]) -> ModelSpec | None:
    """The spec stored as a JSON string parameter (config.pbtxt or ONNX metadata_props), if any."""
    text = parameters.get(SPEC_KEY)
    if text is None:  # tolerate another key name holding the same JSON
        for value in parameters.values():
            if isinstance(value, str) and value.startswith("{") and '"input_hw"' in value:
                text = value
                break
    if text is None:
        return None
    try:
        return ModelSpec.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise SpecError(f"model carries an unreadable perception spec: {exc}") from exc
