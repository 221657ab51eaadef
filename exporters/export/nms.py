"""Class-aware greedy NMS that exports to ONNX ``NonMaxSuppression`` (which TensorRT also parses).

One algorithm, three faces, so that verification compares like with like:

* :func:`greedy_nms_mask` - the numpy reference (PyTorch eager and the import-onnx reference use it);
* ``torch.ops.percept.nms_mask`` - a torch custom op whose eager kernel calls the numpy reference
  and whose ONNX translation (:func:`nms_mask_onnx`) is ``NonMaxSuppression`` + ``ScatterND``;
* :func:`top_k_from_mask` - the tensor ops that turn the keep mask into the spec's fixed top-K rows.

Semantics (those of ONNX ``NonMaxSuppression``, per image and class): candidates with
``score > score_threshold`` in descending score order; a candidate is suppressed when its IoU with an
already kept box is ``> iou_threshold``; at most ``max_per_class`` kept per class.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def greedy_nms_mask(
    boxes: np.ndarray, scores: np.ndarray, max_per_class: int, iou_threshold: float, score_threshold: float
) -> np.ndarray:
    """boxes float [B,N,4] (any two opposite corners), scores float [B,C,N] -> keep mask bool [B,C,N]."""
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    b_, c_, n_ = scores.shape
    keep = np.zeros((b_, c_, n_), dtype=bool)
    for b in range(b_):
        bx = boxes[b]
        x1 = np.minimum(bx[:, 0], bx[:, 2])
        x2 = np.maximum(bx[:, 0], bx[:, 2])
        y1 = np.minimum(bx[:, 1], bx[:, 3])
        y2 = np.maximum(bx[:, 1], bx[:, 3])
        area = (x2 - x1) * (y2 - y1)
        for c in range(c_):
            s = scores[b, c]
            cand = np.flatnonzero(s > score_threshold)
            cand = cand[np.argsort(-s[cand], kind="stable")]
            suppressed = np.zeros(len(cand), dtype=bool)
            kept = 0
            for i, idx in enumerate(cand):
                if suppressed[i]:
                    continue
                keep[b, c, idx] = True
                kept += 1
                if kept >= max_per_class:
                    break
                rest = cand[i + 1 :]
                iw = np.clip(np.minimum(x2[idx], x2[rest]) - np.maximum(x1[idx], x1[rest]), 0, None)
                ih = np.clip(np.minimum(y2[idx], y2[rest]) - np.maximum(y1[idx], y1[rest]), 0, None)
                inter = iw * ih
                union = area[idx] + area[rest] - inter
                iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
                suppressed[i + 1 :] |= iou > iou_threshold
    return keep


def top_k_from_mask_numpy(
    boxes: np.ndarray, scores: np.ndarray, keep: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numpy twin of :func:`top_k_from_mask` (import-onnx reference post-processing)."""
    b_, c_, n_ = scores.shape
    masked = np.where(keep, scores, -1.0).reshape(b_, c_ * n_).astype(np.float32)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(masked, order, axis=1)
    valid = top >= 0
    num = valid.sum(axis=1).astype(np.int32)
    cls = np.where(valid, order // n_, 0).astype(np.int32)
    box_idx = order % n_
    out_boxes = np.take_along_axis(boxes, box_idx[:, :, None].repeat(4, axis=2), axis=1)
    out_boxes = np.where(valid[:, :, None], out_boxes, 0).astype(np.float32)
    out_scores = np.where(valid, top, 0).astype(np.float32)
    return num, out_boxes, out_scores, cls


def _register_torch_op() -> None:
    import torch

    # explicit schema: this module uses postponed annotations, which infer_schema cannot read
    schema = (
        "(Tensor boxes, Tensor scores, int max_per_class, float iou_threshold, float score_threshold)"
        " -> Tensor"
    )

    @torch.library.custom_op("percept::nms_mask", mutates_args=(), schema=schema)
    def nms_mask(boxes, scores, max_per_class, iou_threshold, score_threshold):
        keep = greedy_nms_mask(
            boxes.detach().cpu().float().numpy(),
            scores.detach().cpu().float().numpy(),
            max_per_class,
            iou_threshold,
            score_threshold,
        )
        return torch.from_numpy(keep).to(scores.device)

    @nms_mask.register_fake
    def _(boxes, scores, max_per_class, iou_threshold, score_threshold):
        return scores.new_empty(scores.shape, dtype=torch.bool)


def nms_op():
    """``torch.ops.percept.nms_mask`` (registered on first use)."""
    import torch

    if not hasattr(torch.ops.percept, "nms_mask"):
        _register_torch_op()
    return torch.ops.percept.nms_mask


def top_k_from_mask(boxes, scores, keep, k: int):
    """Fixed top-K rows from a keep mask (torch; exports to Where/Reshape/TopK/Gather).

    boxes [B,N,4], scores/keep [B,C,N] -> num_dets int32 [B], boxes [B,K,4], scores [B,K],
    classes int32 [B,K], sorted by score, rows past num_dets zero. Kept scores are > the score
    threshold >= 0, so -1 marks a dropped candidate.
    """
    import torch

    b_, c_, n_ = scores.shape
    masked = torch.where(keep, scores, torch.full_like(scores, -1.0)).reshape(b_, c_ * n_)
    top, order = torch.topk(masked, k, dim=1)
    valid = top >= 0
    num = valid.sum(dim=1).to(torch.int32)
    zero_i = torch.zeros_like(order)
    cls = torch.where(valid, torch.div(order, n_, rounding_mode="floor"), zero_i).to(torch.int32)
    box_idx = torch.remainder(order, n_)
    # -1, not the batch size: a symbolic batch exports as Shape(images), and TensorRT lets a UINT8
    # network input feed only a Cast (NvInferRuntimeBase.h, DataType::kUINT8; trt_compat TRT003)
    out_boxes = torch.gather(boxes, 1, box_idx.unsqueeze(-1).expand(-1, -1, 4))
    out_boxes = torch.where(valid.unsqueeze(-1), out_boxes, torch.zeros_like(out_boxes))
    out_scores = torch.where(valid, top, torch.zeros_like(top))
    return num, out_boxes, out_scores, cls


def nms_translation_table() -> dict:
    """``custom_translation_table`` for ``torch.onnx.export(dynamo=True)``."""
    return {nms_op().default: nms_mask_onnx}


def nms_mask_onnx(boxes, scores, max_per_class: int, iou_threshold: float, score_threshold: float):
    """ONNX translation of ``percept::nms_mask``: NonMaxSuppression -> indices -> ScatterND mask."""
    from onnxscript import ir, opset13, opset18

    op: Any = opset18  # onnxscript's typed signatures reject the untyped values of a translation
    # ScatterND from opset 13, which has no `reduction` attribute: opset 18's signature always writes
    # reduction="none", and TensorRT 10.5's importer rejects the attribute's mere presence
    # (onnx-tensorrt onnxOpImporters.cpp, ScatterND: "Attribute reduction is not supported.";
    # trt_compat TRT002). In the opset-18 model the node means ScatterND-18 with its default, "none".
    scatter_nd: Any = opset13.ScatterND

    selected = op.NonMaxSuppression(
        boxes,
        scores,
        op.Constant(value_ints=[max_per_class]),
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[score_threshold]),
    )
    # float scatter, then a compare: TensorRT's ConstantOfShape / ScatterND take float, not bool
    zeros = op.ConstantOfShape(op.Shape(scores), value=ir.tensor(np.array([0.0], np.float32)))
    count = op.Shape(selected, start=0, end=1)
    ones = op.Expand(op.Constant(value=ir.tensor(np.array([1.0], np.float32))), count)
    return op.Greater(
        scatter_nd(zeros, selected, ones), op.Constant(value=ir.tensor(np.array(0.0, np.float32)))
    )
