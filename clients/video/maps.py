"""`percept video --save-maps`: each frame's dense maps kept losslessly beside the JSONL, so two runs
made at different times compare (`percept compare`) without running either again.

``<input>/maps/<frame:06d>.seg.png``: the uint8 class-id map, as the model answered it (the
letterbox's content at model resolution). ``<input>/maps/<frame:06d>.depth.png``: the FP16 depth
in metres, its 16 bits stored as they are in a 16-bit PNG (read back with ``.view(np.float16)``).
Millimetres in 16 bits would not be lossless: they end at 65.5 m while depth goes to the spec's
``max_depth_m`` (120 m by default), and below 2 m FP16 resolves less than a millimetre.
``maps/spec.json`` is the model's spec (heads, classes, sizes), written once. Files are written
under a temporary name and renamed (render.write_png), so a map that exists is whole.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from clients.results import PerceptionResult
from clients.video.render import write_png
from serving.errors import SpecError
from serving.spec import ModelSpec

MAPS, SPEC = "maps", "spec.json"
SEG_SUFFIX, DEPTH_SUFFIX = ".seg.png", ".depth.png"
_PNG_PARAMS = (cv2.IMWRITE_PNG_COMPRESSION, 3)  # the sizes per frame in docs/compare.md are at level 3


class MapsError(SpecError):
    """A saved map that is missing or cannot be decoded."""


def write_spec(folder: Path, spec: ModelSpec) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SPEC).write_text(spec.to_json())


def read_spec(folder: Path) -> ModelSpec:
    try:
        import json

        return ModelSpec.from_dict(json.loads((folder / SPEC).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise MapsError(f"{folder / SPEC}: not a model spec ({exc})") from None


def write_maps(folder: Path, index: int, result: PerceptionResult, spec: ModelSpec) -> None:
    """The frame's maps under ``folder`` (and the spec of the model, once)."""
    if not (folder / SPEC).is_file():
        write_spec(folder, spec)
    if result.seg is not None:
        seg = np.ascontiguousarray(result.seg, np.uint8)
        write_png(folder / f"{index:06d}{SEG_SUFFIX}", seg, _PNG_PARAMS)
    if result.depth is not None:
        bits = np.ascontiguousarray(result.depth, np.float16).view(np.uint16)
        write_png(folder / f"{index:06d}{DEPTH_SUFFIX}", bits, _PNG_PARAMS)


def _read_png(path: Path, dtype: type) -> np.ndarray:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    if data is None:
        raise MapsError(f"{path}: missing or not a PNG")
    if data.dtype != dtype or data.ndim != 2:
        raise MapsError(
            f"{path}: expected a one-channel {np.dtype(dtype).name} PNG, got {data.dtype} {data.shape}"
        )
    return data


def read_maps(folder: Path, index: int, spec: ModelSpec) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(seg uint8, depth float16) of frame ``index``; None for a head the spec does not have."""
    seg = depth = None
    if "segmentation" in spec.tasks:
        seg = _read_png(folder / f"{index:06d}{SEG_SUFFIX}", np.uint8)
    if "depth" in spec.tasks:
        depth = _read_png(folder / f"{index:06d}{DEPTH_SUFFIX}", np.uint16).view(np.float16)
    return seg, depth
