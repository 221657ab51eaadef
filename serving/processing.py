"""Pure functions of the python-backend models (numpy + OpenCV, no Triton), and the CPU reference
of the frame model's graph.

The pipeline ``perception`` is decode -> frame model. The decode step (:func:`decode_step`) turns a
JPEG/PNG into the frame the graph letterboxes, decoded once at the scale that is needed, and
projects a fusion network's LiDAR points. :func:`preprocess` and :func:`postprocess` do on the CPU
what serving.frame_graph puts in the graph: the clients' raw mode, the local backend and the tests
use them, with the same geometry (serving.letterbox). Each python-backend model is a thin adapter:
it reads the request's tensors, calls a function here, and turns a
:class:`~serving.errors.SpecError` into that request's own error response. Everything here works
on one request (batch axis of that request included) so it is testable without a server.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

import cv2
import numpy as np

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.letterbox import Letterbox, network_image
from serving.lidar import check_points, project_to_depth_image
from serving.spec import ModelSpec

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carrying the image size (not DHT C4, JPG C8, DAC CC)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


# --- decoding ---------------------------------------------------------------------------------
def encoded_size(data: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG or PNG header, without decoding; SpecError for anything else."""
    if data.startswith(_PNG_MAGIC):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise SpecError(f"PNG of {len(data)} bytes has no IHDR header: truncated or corrupt")
        w, h = struct.unpack(">II", data[16:24])
        return int(h), int(w)
    if data.startswith(_JPEG_MAGIC):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                raise SpecError(f"JPEG of {len(data)} bytes is corrupt (bad marker at byte {pos})")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            seg_len = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
            if marker in _SOF_MARKERS:
                if pos + 9 > len(data):
                    break
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return int(h), int(w)
            pos += 2 + seg_len
        raise SpecError(f"JPEG of {len(data)} bytes has no frame header: truncated or corrupt")
    head = data[:8].hex()
    raise SpecError(f"image_encoded is not a JPEG or PNG file ({len(data)} bytes starting {head})")


def _check_complete(data: bytes) -> None:
    # OpenCV decodes a truncated JPEG into a grey-filled image with only a warning; refuse it.
    if data.startswith(_JPEG_MAGIC) and not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        raise SpecError(f"JPEG of {len(data)} bytes is truncated (no end-of-image marker)")
    if data.startswith(_PNG_MAGIC) and b"IEND" not in data[-16:]:
        raise SpecError(f"PNG of {len(data)} bytes is truncated (no IEND chunk)")


# libjpeg's DCT scaling: decoding at 1/2, 1/4 or 1/8 of the size costs a fraction of a full decode
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_factor(src_hw: tuple[int, int], model_hw: tuple[int, int]) -> int:
    """The largest DCT reduction (1, 2, 4 or 8) that still leaves the frame at least as large as its
    letterboxed content: what is decoded beyond that the letterbox would throw away."""
    scale = min(model_hw[0] / src_hw[0], model_hw[1] / src_hw[1])
    return next((f for f, _ in _REDUCED if f * scale <= 1.0), 1)


def decode_encoded(data: bytes, limits: FrameLimits, model_hw: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG/PNG bytes -> HxWx3 uint8 RGB, size checked on the header before decoding. With
    ``model_hw``, a JPEG at least twice the letterboxed size is decoded at a reduced DCT scale
    (PNG has none: decoded in full)."""
    if len(data) == 0:
        raise SpecError("image_encoded is empty (0 bytes)")
    h, w = encoded_size(data)
    limits.check(h, w, "encoded image")
    _check_complete(data)
    flag = cv2.IMREAD_COLOR
    if model_hw is not None and data.startswith(_JPEG_MAGIC):
        factor = decode_factor((h, w), model_hw)
        flag = dict(_REDUCED).get(factor, cv2.IMREAD_COLOR)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if bgr is None:
        raise SpecError(f"cannot decode the {h}x{w} image ({len(data)} bytes): corrupt data")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_frame(frame: np.ndarray, limits: FrameLimits) -> np.ndarray:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise SpecError(f"image must be HxWx3 uint8 RGB, got {frame.dtype} {tuple(frame.shape)}")
    if frame.size == 0:
        raise SpecError(f"image is empty (shape {tuple(frame.shape)})")
    limits.check(frame.shape[0], frame.shape[1])
    return frame


def request_frames(
    image: np.ndarray | None,
    image_encoded: np.ndarray | None,
    limits: FrameLimits,
    model_hw: tuple[int, int] | None = None,
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """The RGB frames of one request, each with its source (height, width): ``image`` [n,H,W,3] or
    ``image_encoded`` [n,L] (one file per row; a JPEG decoded at a reduced scale with ``model_hw``)."""
    if (image is None) == (image_encoded is None):
        raise SpecError(
            f"send exactly one of {S.IMAGE!r} (raw frame) or {S.IMAGE_ENCODED!r} (JPEG/PNG bytes)"
        )
    if image is not None:
        if image.ndim != 4:
            raise SpecError(f"{S.IMAGE} must be [batch,H,W,3], got shape {tuple(image.shape)}")
        if image.shape[0] == 0:
            raise SpecError(f"{S.IMAGE} holds no frame (shape {tuple(image.shape)})")
        return [(check_frame(f, limits), (int(f.shape[0]), int(f.shape[1]))) for f in image]
    assert image_encoded is not None
    if image_encoded.dtype != np.uint8 or image_encoded.ndim != 2:
        raise SpecError(
            f"{S.IMAGE_ENCODED} must be uint8 [batch,bytes], got {image_encoded.dtype} "
            f"{tuple(image_encoded.shape)}"
        )
    if image_encoded.shape[0] == 0:
        raise SpecError(f"{S.IMAGE_ENCODED} holds no file (shape {tuple(image_encoded.shape)})")
    frames = []
    for row in image_encoded:
        data = row.tobytes()
        frames.append((decode_encoded(data, limits, model_hw), encoded_size(data)))
    return frames


def check_request(arrays: Mapping[str, np.ndarray | None], limits: FrameLimits) -> None:
    """The request's total input bytes and LiDAR point count (``points`` [batch,N,4]) against
    ``limits``, before anything is decoded or projected."""
    nbytes = sum(a.nbytes for a in arrays.values() if a is not None)
    points = arrays.get(S.POINTS)
    count = 0 if points is None or points.ndim < 2 else int(np.prod(points.shape[:-1]))
    limits.check_request(nbytes, count)


# --- the decode step --------------------------------------------------------------------------
def decode_step(
    spec: ModelSpec,
    frames: list[tuple[np.ndarray, tuple[int, int]]],
    points: np.ndarray | None = None,
    projection: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Decoded frames of one request (+ LiDAR for fusion) -> the frame model's inputs: the frame as
    decoded, its source size, and a fusion network's projected LiDAR depth image."""
    sizes = {f.shape for f, _ in frames}
    if len(sizes) > 1:
        raise SpecError(f"frames of one request must share one size, got {sorted(s[:2] for s in sizes)}")
    out = {
        S.IMAGE: frames[0][0][None] if len(frames) == 1 else np.stack([f for f, _ in frames]),
        S.SOURCE_HW: np.array([src for _, src in frames], np.int32),
    }
    if spec.fusion:
        _check_lidar_batch(spec, len(frames), points, projection)
        assert points is not None and projection is not None
        depths = []
        for i, (frame, src) in enumerate(frames):
            pts, proj = np.asarray(points[i], np.float32), np.asarray(projection[i], np.float32)
            check_points(pts, proj)
            depths.append(
                project_to_depth_image(pts, proj, spec.input_hw, source_letterbox(spec, frame, src))
            )
        out[S.LIDAR_DEPTH] = np.ascontiguousarray(np.stack(depths))
    return out


def source_letterbox(spec: ModelSpec, frame: np.ndarray, src_hw: tuple[int, int]) -> Letterbox:
    """The letterbox the frame graph applies to ``frame``, in the terms of the source it was decoded
    from (same pads; the scale per source pixel)."""
    lb = Letterbox.fit((frame.shape[0], frame.shape[1]), spec.input_hw, spec.letterbox.allow_upscale)
    return Letterbox(lb.scale * frame.shape[1] / src_hw[1], lb.pad_x, lb.pad_y, *src_hw)


def _check_lidar_batch(
    spec: ModelSpec, n: int, points: np.ndarray | None, projection: np.ndarray | None
) -> None:
    if points is None or projection is None:
        raise SpecError(f"model {spec.name} fuses LiDAR: {S.POINTS} and {S.PROJECTION} are required")
    if points.ndim != 3 or projection.ndim != 3 or not len(points) == n == len(projection):
        raise SpecError(
            f"{S.POINTS} [batch,N,4] and {S.PROJECTION} [batch,3,4] must have one entry per frame, got "
            f"{tuple(points.shape)} and {tuple(projection.shape)} for {n} frame(s)"
        )


# --- the CPU reference of the frame graph -----------------------------------------------------
def preprocess(
    spec: ModelSpec,
    frames: list[np.ndarray],
    points: np.ndarray | None = None,
    projection: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Frames (+ LiDAR for fusion) of one request -> the network inputs and the letterbox tensor."""
    if spec.fusion:
        _check_lidar_batch(spec, len(frames), points, projection)
    images, geoms = letterbox_frames(spec, frames)
    out = {S.IMAGES: images, S.LETTERBOX: np.stack([lb.to_tensor() for lb in geoms])}
    if spec.fusion:
        assert points is not None and projection is not None
        depths = []
        for i, lb in enumerate(geoms):
            pts = np.asarray(points[i], np.float32)
            proj = np.asarray(projection[i], np.float32)
            check_points(pts, proj)
            depths.append(project_to_depth_image(pts, proj, spec.input_hw, lb))
        out[S.LIDAR_DEPTH] = np.ascontiguousarray(np.stack(depths))
    return out


def letterbox_frames(spec: ModelSpec, frames) -> tuple[np.ndarray, list[Letterbox]]:
    """Frames -> the network's ``images`` [n,3,H,W] (contiguous) and each frame's letterbox."""
    fitted = [network_image(frame, spec.input_hw, spec.letterbox) for frame in frames]
    return np.ascontiguousarray(np.stack([image for image, _ in fitted])), [lb for _, lb in fitted]


def postprocess(
    spec: ModelSpec,
    outputs: dict[str, np.ndarray],
    letterbox: np.ndarray,
    resize_to_source: bool = False,
    source_hw: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Network outputs of one request [n,...] -> boxes in source pixels, dense maps cropped out of
    the letterbox (and resized to the source size when asked): the frame graph's postprocess.
    ``letterbox``: the rows of the frames as the network saw them; ``source_hw`` [n,2]: the frames
    they were decoded from, when larger (boxes and the returned rows are in its pixels)."""
    letterbox = Letterbox.rows(letterbox)
    n = len(letterbox)
    geoms = [Letterbox.from_tensor(row) for row in letterbox]
    out: dict[str, np.ndarray] = {S.LETTERBOX: letterbox}
    per = np.ones((n, 1, 4), np.float32)
    if source_hw is not None:
        src = np.asarray(source_hw, np.float32).reshape(n, 2)
        img = np.array([[lb.src_h, lb.src_w] for lb in geoms], np.float32)
        ratio = src / img  # source pixels per decoded pixel, (y, x)
        per = ratio[:, [1, 0, 1, 0]].reshape(n, 1, 4)
        rows = letterbox.copy()
        rows[:, 0] /= ratio[:, 1]
        rows[:, 3:5] = src
        out[S.LETTERBOX] = rows
    if S.NUM_DETS in outputs:
        num = np.asarray(outputs[S.NUM_DETS], np.int32).reshape(n)
        boxes = np.asarray(outputs[S.DET_BOXES], np.float32).reshape(n, spec.top_k, 4).copy()
        classes = np.asarray(outputs[S.DET_CLASSES], np.int32).reshape(n, spec.top_k)
        for i, lb in enumerate(geoms):
            k = int(np.clip(num[i], 0, spec.top_k))
            boxes[i, :k] = lb.boxes_to_source(boxes[i, :k])
            boxes[i, k:] = 0
        boxes *= per
        out.update(
            {
                S.NUM_DETS: num,
                S.DET_BOXES: boxes,
                S.DET_SCORES: np.asarray(outputs[S.DET_SCORES], np.float32).reshape(n, spec.top_k),
                S.DET_CLASSES: classes,
            }
        )
    for name, stride in ((S.SEG_MASK, 1), (S.DEPTH, spec.depth_stride)):
        if name in outputs:
            maps = [
                lb.crop_dense(m, stride, resize_to_source) for lb, m in zip(geoms, outputs[name], strict=True)
            ]
            if len({m.shape for m in maps}) > 1:
                raise SpecError(
                    "frames of different sizes in one request give dense maps of different sizes: "
                    "send one frame per request"
                )
            out[name] = np.ascontiguousarray(np.stack(maps))
    return out


# --- the network model's batching -------------------------------------------------------------
def check_network_inputs(inputs: Mapping[str, np.ndarray]) -> None:
    """A raw-network request's float inputs must be finite: ``lidar_depth`` from a client's own
    projection with a NaN would otherwise come back as a plausible-looking answer."""
    for name, arr in inputs.items():
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise SpecError(f"{name} holds NaN or Inf")


def concat_batches(per_request: list[dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Requests' inputs -> one batch (concatenated on axis 0) and each request's batch size."""
    sizes = [len(next(iter(r.values()))) for r in per_request]
    if len(per_request) == 1:  # a lone request (every one at concurrency 1): its arrays, not a copy
        return dict(per_request[0]), sizes
    names = per_request[0].keys()
    batch = {name: np.concatenate([r[name] for r in per_request], axis=0) for name in names}
    return batch, sizes


def split_batches(outputs: dict[str, np.ndarray], sizes: list[int]) -> list[dict[str, np.ndarray]]:
    """The inverse of :func:`concat_batches` on the network outputs."""
    if len(sizes) == 1:  # one request: the outputs are its own (contiguous, as Triton needs them)
        return [{name: np.ascontiguousarray(arr) for name, arr in outputs.items()}]
    bounds = np.cumsum([0, *sizes])
    return [
        {name: np.ascontiguousarray(arr[bounds[i] : bounds[i + 1]]) for name, arr in outputs.items()}
        for i in range(len(sizes))
    ]
