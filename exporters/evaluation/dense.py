"""Segmentation IoU and depth error, accumulated over a split (not averaged per image)."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

DELTA1 = 1.25


@dataclass
class SegmentationAccumulator:
    """Confusion matrix over every pixel of the split; IoU per class = TP / (TP + FP + FN)."""

    num_classes: int
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        gt = np.asarray(gt).reshape(-1).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"segmentation shapes differ: {pred.shape} vs {gt.shape}")
        k = self.num_classes
        valid = (gt >= 0) & (gt < k) & (pred >= 0) & (pred < k)
        self.confusion += np.bincount(gt[valid] * k + pred[valid], minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """IoU per class; NaN for a class absent from both prediction and ground truth."""
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


@dataclass
class DepthAccumulator:
    """AbsRel, RMSE and delta<1.25 over every valid pixel of the split.

    A pixel is valid where 0 < gt <= max_depth. The prediction (at 1/depth_stride resolution) is
    upsampled to the ground truth's size with nearest neighbour, so every valid ground-truth pixel
    counts and no depth is invented by blending across object edges. Predictions are clipped to
    [min_depth, max_depth] as is usual for these metrics.
    """

    max_depth: float = 120.0
    min_depth: float = 1e-3
    _abs_rel: float = 0.0
    _sq: float = 0.0
    _delta1: int = 0
    _count: int = 0

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        gt = np.asarray(gt, dtype=np.float32)
        pred = np.asarray(pred, dtype=np.float32)
        if pred.ndim != 2 or gt.ndim != 2:
            raise ValueError(f"depth maps must be 2-D, got {pred.shape} and {gt.shape}")
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_NEAREST)
        valid = (gt > 0) & (gt <= self.max_depth)
        g = gt[valid].astype(np.float64)
        p = np.clip(pred[valid].astype(np.float64), self.min_depth, self.max_depth)
        p = np.where(np.isfinite(p), p, self.max_depth)
        self._abs_rel += float((np.abs(p - g) / g).sum())
        self._sq += float(((p - g) ** 2).sum())
        self._delta1 += int((np.maximum(p / g, g / p) < DELTA1).sum())
        self._count += int(valid.sum())

    def result(self) -> dict[str, float]:
        if self._count == 0:
            return {"abs_rel": float("nan"), "rmse": float("nan"), "delta1": float("nan")}
        return {
            "abs_rel": self._abs_rel / self._count,
            "rmse": float(np.sqrt(self._sq / self._count)),
            "delta1": self._delta1 / self._count,
        }
