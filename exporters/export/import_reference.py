"""The reference an imported ONNX is verified against: the original file in ONNX Runtime with numpy
pre- and post-processing of the same algorithm as the composed graph (import_compose.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exporters.export.head_spec import HeadSpec
from exporters.export.nms import greedy_nms_mask, top_k_from_mask_numpy
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, IMAGES, NUM_DETS, SEG_MASK, ModelSpec

__all__ = ["postprocess_numpy", "reference_runner"]


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


def postprocess_numpy(raw: dict[str, np.ndarray], heads: HeadSpec, spec: ModelSpec) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if heads.detection:
        d = heads.detection
        det = raw[d.output].astype(np.float32)
        if d.layout == "cxcywh":
            half = det[..., 2:4] * np.float32(0.5)
            boxes = np.concatenate([det[..., 0:2] - half, det[..., 0:2] + half], axis=2)
        else:
            boxes = det[..., 0:4]
        obj, cls = det[..., 4:5], det[..., 5:]
        if d.activation == "sigmoid":
            obj, cls = 1 / (1 + np.exp(-obj)), 1 / (1 + np.exp(-cls))
        scores = np.ascontiguousarray((obj * cls).transpose(0, 2, 1)).astype(np.float32)
        keep = greedy_nms_mask(boxes, scores, spec.top_k, spec.iou_threshold, spec.score_threshold)
        num, b, s, c = top_k_from_mask_numpy(boxes, scores, keep, spec.top_k)
        out.update({NUM_DETS: num, DET_BOXES: b, DET_SCORES: s, DET_CLASSES: c})
    if heads.segmentation:
        sg = heads.segmentation
        if sg.map:
            seg = raw[sg.map].argmax(axis=1)
        else:
            assert sg.drivable is not None and sg.lane is not None
            drv, lane = raw[sg.drivable].argmax(axis=1), raw[sg.lane].argmax(axis=1)
            seg = np.where(lane == 1, 2, np.where(drv == 1, 1, 0))
        out[SEG_MASK] = seg.astype(np.uint8)
    if heads.depth:
        dh, dw = spec.depth_hw
        depth = raw[heads.depth.output].astype(np.float32).reshape(-1, dh, dw)
        if heads.depth.scale != 1.0:
            depth = depth * np.float32(heads.depth.scale)
        out[DEPTH] = depth.astype(np.float16)
    return out
