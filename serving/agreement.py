"""How two outputs of one contract agree, head by head, without ground truth: the verification
stage's matcher and measures (exporters.export.verify checks an export against PyTorch with them,
clients.compare a candidate engine against the one in service). Torch-free.

Detection: the two top-K lists matched one to one (same class, IoU >= ``det_iou``, |score diff| <=
``det_score_diff``); an unmatched detection is *borderline* (not counted against the candidate) when
its score lies within ``det_score_diff`` of the score threshold (or of the K-th score of a full
list), it overlaps a same-class detection with an IoU within ``BORDER_IOU`` of the NMS threshold, or
it swapped places with a near-tie same-class box (flat regions give exact ties; which box NMS keeps
then depends on the last bits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, ModelSpec
from serving.tolerances import Tolerances

BORDER_IOU = 1e-3
SAME_BOX_PX = 1e-2


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes [N,4] x [M,4]."""
    a = a.astype(np.float64)[:, None]
    b = b.astype(np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class DetectionStats:
    reference: int = 0
    candidate: int = 0
    matched: int = 0
    borderline: int = 0
    unmatched: int = 0
    min_iou: float = 1.0
    max_score_diff: float = 0.0
    missing: int = 0  # unmatched reference detections (not borderline)
    extra: int = 0  # unmatched candidate detections (not borderline)
    # per event, when ``events`` is on (percept compare): class ids of matched / missing / extra /
    # borderline detections, and the IoU and score difference of each matched pair
    events: bool = False
    matched_classes: list[int] = field(default_factory=list)
    missing_classes: list[int] = field(default_factory=list)
    extra_classes: list[int] = field(default_factory=list)
    borderline_classes: list[int] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    score_diffs: list[float] = field(default_factory=list)


def _dets(out: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(out[NUM_DETS][i])
    return out[DET_BOXES][i, :n], out[DET_SCORES][i, :n], out[DET_CLASSES][i, :n]


def _borderline(boxes, scores, classes, j: int, spec: ModelSpec, tol: Tolerances) -> bool:
    s = float(scores[j])
    if abs(s - spec.score_threshold) <= tol.det_score_diff:
        return True
    if len(scores) == spec.top_k and abs(s - float(scores.min())) <= tol.det_score_diff:
        return True
    same = np.flatnonzero((classes == classes[j]) & (np.arange(len(classes)) != j))
    if len(same):
        iou = box_iou(boxes[j : j + 1], boxes[same])[0]
        if (np.abs(iou - spec.iou_threshold) <= BORDER_IOU).any():
            return True
    return False


def compare_detections(
    ref: dict, cand: dict, i: int, spec: ModelSpec, tol: Tolerances, stats: DetectionStats
) -> None:
    rb, rs, rc = _dets(ref, i)
    cb, cs, cc = _dets(cand, i)
    stats.reference += len(rs)
    stats.candidate += len(cs)
    iou = box_iou(rb, cb) if len(rb) and len(cb) else np.zeros((len(rb), len(cb)))
    if len(rb) and len(cb):
        # degenerate (zero-area) boxes have no IoU with anything, not even themselves: such a pair
        # matches when the corners agree to within SAME_BOX_PX
        same = np.abs(rb[:, None, :] - cb[None, :, :]).max(axis=2) <= SAME_BOX_PX
        iou = np.where(same, np.maximum(iou, 1.0), iou)
    used = np.zeros(len(cb), dtype=bool)
    matched_ref = np.zeros(len(rb), dtype=bool)
    for r in np.argsort(-rs, kind="stable"):
        ok = (~used) & (cc == rc[r]) & (iou[r] >= tol.det_iou) & (np.abs(cs - rs[r]) <= tol.det_score_diff)
        if not ok.any():
            continue
        c = int(np.argmax(np.where(ok, iou[r], -1)))
        used[c] = matched_ref[r] = True
        stats.matched += 1
        stats.min_iou = min(stats.min_iou, float(iou[r, c]))
        stats.max_score_diff = max(stats.max_score_diff, float(abs(cs[c] - rs[r])))
        if stats.events:
            stats.matched_classes.append(int(rc[r]))
            stats.ious.append(float(iou[r, c]))
            stats.score_diffs.append(float(cs[c] - rs[r]))
    # near-tie swaps: two boxes that suppress each other with scores within the tolerance; which
    # one NMS keeps is decided by the last bits of the scores (or the sort order of exact ties)
    for r in np.flatnonzero(~matched_ref):
        swap = (
            (~used)
            & (cc == rc[r])
            & (iou[r] > spec.iou_threshold)
            & (np.abs(cs - rs[r]) <= tol.det_score_diff)
        )
        if swap.any():
            used[int(np.argmax(swap))] = matched_ref[r] = True
            stats.borderline += 2
            if stats.events:
                stats.borderline_classes += [int(rc[r])] * 2
    for missing, (boxes, scores, classes, hit) in (
        (True, (rb, rs, rc, matched_ref)),
        (False, (cb, cs, cc, used)),
    ):
        for j in np.flatnonzero(~hit):
            border = _borderline(boxes, scores, classes, int(j), spec, tol)
            stats.borderline += border
            stats.unmatched += not border
            stats.missing += missing and not border
            stats.extra += not missing and not border
            if stats.events:
                which = (
                    stats.borderline_classes
                    if border
                    else stats.missing_classes
                    if missing
                    else stats.extra_classes
                )
                which.append(int(classes[j]))


def seg_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    return float((ref == cand).mean())


def depth_rel_error(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    r = ref.astype(np.float32)
    c = cand.astype(np.float32)
    return (np.abs(c - r) / np.maximum(np.abs(r), 1e-3)).reshape(-1)
