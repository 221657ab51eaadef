"""The reference an imported ONNX is verified against: the original file in ONNX Runtime with numpy
pre- and post-processing of the same algorithm as the composed graph (import_compose.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporters.export.head_spec import DetectionSpec, HeadSpec, SegmentationSpec
from exporters.export.import_validate import load_anchors
from exporters.export.nms import greedy_nms_mask, top_k_from_mask_numpy
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, IMAGES, NUM_DETS, SEG_MASK, ModelSpec

__all__ = ["boxes_scores_numpy", "decode_anchor_deltas", "postprocess_numpy", "reference_runner"]


def reference_runner(path: Path, heads: HeadSpec, spec: ModelSpec):
    """Original file in ONNX Runtime + numpy pre/post-processing of the same algorithm."""
    from exporters.export.verify import ort_runner

    run = ort_runner(path)

    def reference(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs[IMAGES]
        if heads.input.dtype == "float32":
            mean = np.asarray(heads.input.mean, np.float32).reshape(1, 3, 1, 1)
            std = np.asarray(heads.input.std, np.float32).reshape(1, 3, 1, 1)
            x = (x.astype(np.float32) - mean) / std
        if heads.input.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        raw = run({heads.input.name: np.ascontiguousarray(x)})
        return postprocess_numpy(raw, heads, spec)

    return reference


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def decode_anchor_deltas(reg: np.ndarray, anchors: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """EfficientDet/HybridNets BBoxTransform + ClipBoxes: deltas dy, dx, dh, dw [B, N, 4] on anchors
    y1, x1, y2, x2 [N, 4] -> x1, y1, x2, y2 [B, N, 4] clipped to the image."""
    y1a, x1a, y2a, x2a = (anchors[:, i : i + 1] for i in range(4))
    ha, wa = y2a - y1a, x2a - x1a
    yca, xca = (y1a + y2a) * np.float32(0.5), (x1a + x2a) * np.float32(0.5)
    dy, dx, dh, dw = (reg[..., i : i + 1] for i in range(4))
    yc, xc = dy * ha + yca, dx * wa + xca
    h2, w2 = np.exp(dh) * ha * np.float32(0.5), np.exp(dw) * wa * np.float32(0.5)
    boxes = np.concatenate([xc - w2, yc - h2, xc + w2, yc + h2], axis=2)
    h, w = hw
    return np.minimum(np.maximum(boxes, 0), np.array([w, h, w, h], np.float32)).astype(np.float32)


def boxes_scores_numpy(
    raw: dict[str, np.ndarray], d: DetectionSpec, hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """boxes [B, N, 4] x1, y1, x2, y2 and scores [B, C, N] of each detection format."""
    det = raw[d.output].astype(np.float32)
    if d.format == "anchors":
        assert d.scores is not None and d.anchors is not None
        anchors = load_anchors(d)
        if anchors is None:
            anchors = raw[d.anchors].astype(np.float32).reshape(-1, det.shape[1], 4)[0]
        cls = raw[d.scores].astype(np.float32)
        cls = _sigmoid(cls) if d.activation == "sigmoid" else cls
        return decode_anchor_deltas(det, anchors, hw), np.ascontiguousarray(cls.transpose(0, 2, 1))
    if d.format == "yolov8":
        det = np.ascontiguousarray(det.transpose(0, 2, 1))
    if d.layout == "cxcywh":
        half = det[..., 2:4] * np.float32(0.5)
        boxes = np.concatenate([det[..., 0:2] - half, det[..., 0:2] + half], axis=2)
    else:
        boxes = det[..., 0:4]
    if d.format == "yolov8":
        scores = det[..., 4:]
        scores = _sigmoid(scores) if d.activation == "sigmoid" else scores
    else:
        obj, cls = det[..., 4:5], det[..., 5:]
        if d.activation == "sigmoid":
            obj, cls = _sigmoid(obj), _sigmoid(cls)
        scores = obj * cls
    return boxes, np.ascontiguousarray(scores.transpose(0, 2, 1)).astype(np.float32)


def segmentation_numpy(raw: dict[str, np.ndarray], sg: SegmentationSpec) -> np.ndarray:
    if sg.map and sg.activation == "sigmoid":
        logits = raw[sg.map].astype(np.float32)
        idx = logits.argmax(axis=1)
        best = _sigmoid(np.take_along_axis(logits, idx[:, None], axis=1)[:, 0])
        return np.where(best >= np.float32(sg.threshold), idx + 1, 0)
    if sg.map:
        return raw[sg.map].argmax(axis=1)
    assert sg.drivable is not None and sg.lane is not None
    drv, lane = raw[sg.drivable].argmax(axis=1), raw[sg.lane].argmax(axis=1)
    return np.where(lane == 1, 2, np.where(drv == 1, 1, 0))


def postprocess_numpy(raw: dict[str, np.ndarray], heads: HeadSpec, spec: ModelSpec) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if heads.detection:
        boxes, scores = boxes_scores_numpy(raw, heads.detection, spec.input_hw)
        keep = greedy_nms_mask(boxes, scores, spec.top_k, spec.iou_threshold, spec.score_threshold)
        num, b, s, c = top_k_from_mask_numpy(boxes, scores, keep, spec.top_k)
        out.update({NUM_DETS: num, DET_BOXES: b, DET_SCORES: s, DET_CLASSES: c})
    if heads.segmentation:
        out[SEG_MASK] = segmentation_numpy(raw, heads.segmentation).astype(np.uint8)
    if heads.depth:
        dp = heads.depth
        dh, dw = spec.depth_hw
        depth = raw[dp.output].astype(np.float32).reshape(-1, dh, dw)
        if dp.scale != 1.0 or dp.kind == "relative":
            depth = depth * np.float32(dp.scale)
        if dp.kind == "relative":
            assert dp.shift is not None
            floor = np.float32(1.0 / spec.max_depth_m)
            depth = np.float32(1.0) / np.maximum(depth + np.float32(dp.shift), floor)
        out[DEPTH] = depth.astype(np.float16)
    return out
