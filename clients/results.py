"""Typed inference results, in source-image coordinates (numpy only, no tritonclient)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serving.letterbox import Letterbox


def class_counts(seg: np.ndarray, minlength: int) -> np.ndarray:
    """``np.bincount(seg.reshape(-1), minlength=minlength)`` of a uint8 class map, by OpenCV's
    histogram (a tenth of the CPU at 384x640; its float32 counts are exact below 2**24 pixels)."""
    if seg.size >= 1 << 24:
        return np.bincount(seg.reshape(-1), minlength=minlength)
    hist = cv2.calcHist([np.ascontiguousarray(seg)], [0], None, [256], [0, 256]).reshape(-1)
    present = np.flatnonzero(hist)
    n = max(minlength, int(present[-1]) + 1 if present.size else 0)
    return hist[:n].astype(np.int64)


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in source-image pixels
    score: float
    class_id: int
    class_name: str

    def to_dict(self, decimals: int = 3) -> dict:
        return {
            "box": [round(float(v), decimals) for v in self.box],
            "score": round(float(self.score), decimals + 2),
            "class_id": int(self.class_id),
            "class_name": self.class_name,
        }


@dataclass(frozen=True, eq=False)
class PerceptionResult:
    """One image's outputs; a head the model lacks is ``None`` (``detections`` too: ``()`` is a
    detector that found nothing).

    ``seg``: uint8 class ids, ``depth``: float16 metres. Both cover the letterboxed content only
    (the padding is cut away): at model resolution (seg) and 1/depth_stride of it (depth), or at the
    source size when the request asked for ``resize_to_source``. ``seg_at_source()`` /
    ``depth_at_source()`` give them at the source size either way.
    """

    detections: tuple[Detection, ...] | None
    seg: np.ndarray | None
    depth: np.ndarray | None
    letterbox: Letterbox
    seg_classes: tuple[str, ...] = ()

    @property
    def source_hw(self) -> tuple[int, int]:
        return self.letterbox.src_h, self.letterbox.src_w

    def _at_source(self, dense: np.ndarray | None) -> np.ndarray | None:
        if dense is None or dense.shape[:2] == self.source_hw:
            return dense
        h, w = self.source_hw
        interp = cv2.INTER_NEAREST if np.issubdtype(dense.dtype, np.integer) else cv2.INTER_LINEAR
        work = dense.astype(np.float32) if dense.dtype == np.float16 else dense
        return cv2.resize(work, (w, h), interpolation=interp).astype(dense.dtype, copy=False)

    def seg_at_source(self) -> np.ndarray | None:
        return self._at_source(self.seg)

    def depth_at_source(self) -> np.ndarray | None:
        return self._at_source(self.depth)

    def dense_summary(self) -> dict:
        """Small numbers describing the dense maps, for a JSONL line (the maps themselves go to .npz)."""
        out: dict = {}
        if self.seg is not None:
            counts = class_counts(self.seg, max(len(self.seg_classes), 1))
            total = max(int(self.seg.size), 1)
            names = self.seg_classes or tuple(str(i) for i in range(len(counts)))
            out["seg_fraction"] = {
                names[i] if i < len(names) else str(i): round(int(c) / total, 6) for i, c in enumerate(counts)
            }
        if self.depth is not None:
            d = self.depth.astype(np.float32)
            out["depth_m"] = {
                "min": round(float(d.min()), 3),
                "median": round(float(np.median(d)), 3),
                "max": round(float(d.max()), 3),
            }
        return out

    def to_dict(self) -> dict:
        """A JSONL line: only the heads the model has (no ``detections`` key without a detector)."""
        out: dict = {}
        if self.detections is not None:
            out["detections"] = [d.to_dict() for d in self.detections]
        return {**out, "source_hw": list(self.source_hw), **self.dense_summary()}
