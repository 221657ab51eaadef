"""Request tensors for a served model, built once per frame before the load starts.

They are the client library's own requests (``clients._core.prepare``, what
``PerceptionClient.infer`` sends): a raw network gets the frame letterboxed with the model's
letterbox rule (and its LiDAR projected), an ensemble the source frame, raw or encoded, and for
fusion the points and projection matrix. What the model takes is read from its served spec and
config (``clients._core.ModelInfo``).
"""

from __future__ import annotations

import cv2
import numpy as np

from clients import _core
from clients._core import ModelInfo, fetch_model_info
from clients.loadtest.frames import Frame
from clients.options import ClientOptions
from serving.errors import SpecError
from serving.spec import IMAGE, IMAGE_ENCODED, IMAGES

__all__ = ["ModelInfo", "Payload", "build_payload", "fetch_model_info"]

Payload = list[tuple[str, np.ndarray]]  # (input name, array) of one request of batch 1


def _encode(image: np.ndarray, encoding: str) -> bytes:
    ok, buf = cv2.imencode("." + encoding, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SpecError(f"OpenCV could not encode a frame as {encoding}")
    return buf.tobytes()


def build_payload(info: ModelInfo, frame: Frame, encoding: str = "raw") -> Payload:
    """(name, array) pairs for one request of batch 1 carrying ``frame``.

    ``encoding`` ("raw", "jpeg", "png") is how an ensemble receives the frame; a raw network always
    gets the frame itself, letterboxed.
    """
    wanted_image = IMAGE if encoding == "raw" else IMAGE_ENCODED
    if not info.raw and wanted_image not in info.inputs:
        raise SpecError(
            f"model {info.name!r} takes none of {IMAGES!r}/{wanted_image!r} (encoding {encoding})"
        )
    if info.spec.fusion and (frame.points is None or frame.projection is None):
        raise SpecError(f"model {info.name!r} needs LiDAR; use world frames (no --images/--video)")
    options = ClientOptions(model=info.name, raw=info.raw)
    image = None if info.raw or encoding == "raw" else _encode(frame.image, encoding)
    points, projection = (frame.points, frame.projection) if info.spec.fusion else (None, None)
    prepared = _core.prepare(
        info, options, image, frame.image if image is None else None, points, projection, route=False
    )
    return list(prepared.arrays.items())
