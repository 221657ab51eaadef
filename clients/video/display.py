"""What the annotated picture shows, as opposed to what the model served (display only: the JSONL,
the dense arrays and every client keep the served outputs unchanged).

* Boxes: those scoring at least :data:`DISPLAY_MIN_SCORE`, then a class-agnostic greedy NMS at
  :data:`DISPLAY_IOU`: one box per object, labelled with its best class. The network's NMS is per
  class (as in YOLOP and the detection metrics), so one object can carry a car and a truck box; a
  viewer reads that as two objects.
* Depth validity: the depth head is trained on pixels with a surface (0 < depth <= max range; the
  world's ground truth has no depth for the sky), so what it predicts above the horizon is
  meaningless. The horizon is read from the map itself: the row where most columns reach their
  farthest depth. Above it, pixels outside the drawn boxes are left without a depth colour. A map
  without such a row (no clear horizon, e.g. a close-up or a flat test map) is shown in full.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clients.results import Detection
from serving.agreement import box_iou

DISPLAY_MIN_SCORE = 0.5
DISPLAY_IOU = 0.5
# a horizon is trusted when this share of the columns put their farthest depth within a sixteenth of
# the map's height of it, and that depth is at least HORIZON_MIN_M
HORIZON_AGREEMENT = 0.5
HORIZON_MIN_M = 20.0


def display_detections(
    detections: Iterable[Detection], min_score: float = DISPLAY_MIN_SCORE, iou: float = DISPLAY_IOU
) -> list[Detection]:
    """The boxes to draw, highest score first (see the module's docstring)."""
    kept: list[Detection] = []
    for det in sorted((d for d in detections if d.score >= min_score), key=lambda d: -d.score):
        if not kept or box_iou(np.array([det.box]), np.array([k.box for k in kept])).max() < iou:
            kept.append(det)
    return kept


def horizon_row(depth: np.ndarray) -> int | None:
    """The row of ``depth`` (HxW metres) where most columns are farthest, or None without one."""
    if depth.ndim != 2 or depth.shape[0] < 4:
        return None
    # every 4th column is plenty for a median and a quarter of the CPU; a NaN is no maximum
    d = np.fmax(depth[:, :: 4 if depth.shape[1] >= 64 else 1].astype(np.float32), 0.0)
    far = np.argmax(d, axis=0)
    row = int(np.median(far))
    near_row = np.abs(far - row) <= max(1, depth.shape[0] // 16)
    if row == 0 or near_row.mean() < HORIZON_AGREEMENT:
        return None
    if float(np.median(d[far[near_row], np.flatnonzero(near_row)])) < HORIZON_MIN_M:
        return None
    return row


def sky_region(
    depth: np.ndarray, source_hw: tuple[int, int], boxes: Iterable[Detection] = ()
) -> tuple[int, list[tuple[int, int, int, int]]] | None:
    """(horizon row, the boxes' rectangles above it as (y0, y1, x0, x1)) in ``depth``'s pixels, or
    None when the whole map is shown: rows above the horizon minus the rectangles have no depth."""
    row = horizon_row(depth)
    if row is None:
        return None
    h, w = depth.shape
    sy, sx = h / source_hw[0], w / source_hw[1]
    rects = []
    for det in boxes:
        x1, y1, x2, y2 = det.box
        y0, y1_ = max(int(y1 * sy), 0), min(int(np.ceil(y2 * sy)), row)
        x0, x1_ = max(int(x1 * sx), 0), min(int(np.ceil(x2 * sx)), w)
        if y0 < y1_ and x0 < x1_:
            rects.append((y0, y1_, x0, x1_))
    return row, rects


def no_depth_mask(
    depth: np.ndarray, source_hw: tuple[int, int], boxes: Iterable[Detection] = ()
) -> np.ndarray | None:
    """True where ``depth`` has no surface to show (above the horizon, outside ``boxes``, which are
    in source pixels of ``source_hw``); None when the whole map is shown."""
    region = sky_region(depth, source_hw, boxes)
    if region is None:
        return None
    row, rects = region
    mask = np.zeros(depth.shape, bool)
    mask[:row] = True
    for y0, y1, x0, x1 in rects:
        mask[y0:y1, x0:x1] = False
    return mask
