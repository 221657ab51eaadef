"""Score predictions in the spec's output format against world ground truth, torch-free.

A prediction is one image's outputs (no batch axis) keyed by the spec's tensor names:
``num_dets``, ``det_boxes`` [K,4] (model-input pixels), ``det_scores`` [K], ``det_classes`` [K],
``seg_mask`` [H,W] uint8, ``depth`` [H/s,W/s] metres. A ground truth is a world ``Scene`` (or any
object / mapping with ``boxes``, ``classes``, ``seg`` and ``depth``). The same code scores PyTorch,
ONNX Runtime and results served by Triton.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from exporters.evaluation.dense import DepthAccumulator, SegmentationAccumulator
from exporters.evaluation.detection import IOU_THRESHOLDS, DetectionAccumulator
from serving.errors import SpecError
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, SEG_MASK, ModelSpec


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj[name]
    return getattr(obj, name)


def _output(prediction: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in prediction:
        raise SpecError(f"prediction lacks the output {name!r} (has {sorted(prediction)})")
    return np.asarray(prediction[name])


class Evaluator:
    """Streaming evaluation: ``add`` one image at a time, ``result`` for the split's metrics."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.images = 0
        self.det = DetectionAccumulator(len(spec.det_classes))
        self.seg = SegmentationAccumulator(len(spec.seg_classes))
        self.depth = DepthAccumulator(max_depth=spec.max_depth_m)

    def add(self, prediction: Mapping[str, np.ndarray], ground_truth: Any) -> None:
        tasks = self.spec.tasks
        if "detection" in tasks:
            n = int(np.asarray(_output(prediction, NUM_DETS)).reshape(-1)[0])
            boxes = _output(prediction, DET_BOXES).reshape(-1, 4)[:n]
            scores = _output(prediction, DET_SCORES).reshape(-1)[:n]
            classes = _output(prediction, DET_CLASSES).reshape(-1)[:n]
            self.det.add(
                boxes, scores, classes, _field(ground_truth, "boxes"), _field(ground_truth, "classes")
            )
        if "segmentation" in tasks:
            self.seg.add(_output(prediction, SEG_MASK), _field(ground_truth, "seg"))
        if "depth" in tasks:
            self.depth.add(_output(prediction, DEPTH).astype(np.float32), _field(ground_truth, "depth"))
        self.images += 1

    def result(self) -> dict[str, float]:
        out: dict[str, float] = {"images": float(self.images)}
        tasks = self.spec.tasks
        if "detection" in tasks:
            ap = self.det.result()  # [C, T]
            i50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
            for c, name in enumerate(self.spec.det_classes):
                out[f"ap50_{name}"] = float(ap[c, i50])
                out[f"ap50_95_{name}"] = float(np.mean(ap[c]))
            have = ~np.isnan(ap[:, 0])
            out["map50"] = float(ap[have, i50].mean()) if have.any() else 0.0
            out["map50_95"] = float(ap[have].mean()) if have.any() else 0.0
        if "segmentation" in tasks:
            iou = self.seg.iou()
            for c, name in enumerate(self.spec.seg_classes):
                out[f"iou_{name}"] = float(iou[c])
            out["miou"] = float(np.nanmean(iou)) if not np.isnan(iou).all() else 0.0
        if "depth" in tasks:
            out.update(self.depth.result())
        return out


def evaluate(
    predictions: Iterable[Mapping[str, np.ndarray]], ground_truths: Iterable[Any], spec: ModelSpec
) -> dict[str, float]:
    """Metrics of a split: map50, map50_95, ap50_<cls>, ap50_95_<cls>, iou_<cls>, miou, abs_rel,
    rmse, delta1 (the keys of the spec's tasks), plus ``images``."""
    ev = Evaluator(spec)
    for pred, gt in zip(predictions, ground_truths, strict=True):
        ev.add(pred, gt)
    if ev.images == 0:
        raise SpecError("nothing to evaluate: no predictions")
    return ev.result()
