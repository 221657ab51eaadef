"""COCO-style detection average precision, torch-free.

Per class, predictions from all images are sorted by score (descending) and matched greedily: each
one takes the unmatched ground-truth box of its class and image with the highest IoU, if that IoU
reaches the threshold (a true positive), else it is a false positive. Precision is made monotone
(the envelope) and sampled at the 101 recall points 0, 0.01, ..., 1 as in pycocotools. A class
with no ground truth in the split has no AP and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)  # 0.50, 0.55, ..., 0.95
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of x1,y1,x2,y2 boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clip(0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def average_precision(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """101-point interpolated AP from per-prediction true-positive flags and their scores."""
    if num_gt == 0:
        return float("nan")
    if len(tp) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.asarray(tp, dtype=np.float64)[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


@dataclass
class DetectionAccumulator:
    """Collects per-image matches for every IoU threshold; ``result()`` gives AP per class."""

    num_classes: int
    thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    _scores: list[list[np.ndarray]] = field(init=False)
    _tps: list[list[np.ndarray]] = field(init=False)
    _num_gt: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._scores = [[] for _ in range(self.num_classes)]
        self._tps = [[] for _ in range(self.num_classes)]
        self._num_gt = np.zeros(self.num_classes, dtype=np.int64)

    def add(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
    ) -> None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes).reshape(-1).astype(np.int64)
        for c in range(self.num_classes):
            p = classes == c
            g = gt_classes == c
            self._num_gt[c] += int(g.sum())
            if not p.any():
                continue
            order = np.argsort(-scores[p], kind="mergesort")
            pb, ps = boxes[p][order], scores[p][order]
            tp = match_greedy(pb, gt_boxes[g], self.thresholds)
            self._scores[c].append(ps)
            self._tps[c].append(tp)

    def result(self) -> np.ndarray:
        """AP [num_classes, num_thresholds]; NaN for a class without ground truth."""
        ap = np.full((self.num_classes, len(self.thresholds)), np.nan)
        for c in range(self.num_classes):
            scores = np.concatenate(self._scores[c]) if self._scores[c] else np.zeros(0)
            tps = np.concatenate(self._tps[c]) if self._tps[c] else np.zeros((0, len(self.thresholds)))
            for t in range(len(self.thresholds)):
                ap[c, t] = average_precision(tps[:, t], scores, int(self._num_gt[c]))
        return ap


def match_greedy(boxes: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """True-positive flags [len(boxes), len(thresholds)] for score-sorted boxes of one class/image."""
    tp = np.zeros((len(boxes), len(thresholds)), dtype=bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return tp
    iou = box_iou(boxes, gt_boxes)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gt_boxes), dtype=bool)
        for i in range(len(boxes)):
            cand = np.where(taken, -1.0, iou[i])
            j = int(np.argmax(cand))
            if cand[j] >= thr:
                taken[j] = True
                tp[i, t] = True
    return tp
