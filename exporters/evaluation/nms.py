"""Detection post-processing in numpy: score threshold, class-aware NMS, fixed top-K rows.

Mirrors what the exported graph does in-graph (spec.score_threshold, spec.iou_threshold,
spec.top_k), so that a PyTorch model can be scored in the spec's output format without ONNX.
"""

from __future__ import annotations

import numpy as np

from exporters.evaluation.detection import box_iou
from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, ModelSpec

MAX_CANDIDATES = 1000  # highest-scoring candidates considered per image before NMS


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, highest score first."""
    order = np.argsort(-scores, kind="mergesort")
    boxes = boxes[order]
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    iou = box_iou(boxes, boxes)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]


def postprocess_detections(boxes: np.ndarray, scores: np.ndarray, spec: ModelSpec) -> dict[str, np.ndarray]:
    """boxes [A,4] xyxy and per-class scores [A,C] of one image -> the spec's detection outputs."""
    k = spec.top_k
    cls = scores.argmax(1)
    best = scores[np.arange(len(scores)), cls]
    cand = np.flatnonzero(best >= spec.score_threshold)
    cand = cand[np.argsort(-best[cand], kind="mergesort")[:MAX_CANDIDATES]]
    b, s, c = boxes[cand].astype(np.float32), best[cand].astype(np.float32), cls[cand]
    # class-aware NMS in one pass: boxes of different classes are moved apart so they never overlap
    offset = (c.astype(np.float32) * (float(max(spec.input_hw)) * 4.0))[:, None]
    keep = nms(b + offset, s, spec.iou_threshold)[:k] if len(b) else np.zeros(0, np.int64)
    out_b = np.zeros((k, 4), np.float32)
    out_s = np.zeros(k, np.float32)
    out_c = np.zeros(k, np.int32)
    n = len(keep)
    out_b[:n], out_s[:n], out_c[:n] = b[keep], s[keep], c[keep]
    return {NUM_DETS: np.array(n, np.int32), DET_BOXES: out_b, DET_SCORES: out_s, DET_CLASSES: out_c}
