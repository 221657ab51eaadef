"""The multi-task loss: detection (GIoU + BCE objectness/class), segmentation (CE + dice), depth
(scale-invariant log loss, masked where the ground truth is undefined), with task weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from exporters.training.assign import assign


@dataclass(frozen=True)
class LossWeights:
    detection: float = 1.0
    segmentation: float = 1.0
    depth: float = 1.0
    box: float = 5.0  # within detection, as in YOLOX
    objectness: float = 1.0
    classification: float = 1.0
    dice: float = 0.5
    # 0.85 (the usual choice) discounts a scale bias common to the batch; short runs then keep a
    # systematic under-estimate that AbsRel counts in full, so metric depth uses a smaller lambda
    silog_lambda: float = 0.25
    seg_class_weights: tuple[float, ...] = (1.0, 1.0, 2.0)  # lane markings are thin and rare


def giou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """1 - GIoU per box pair, xyxy."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    area_p = (px2 - px1).clamp(min=0) * (py2 - py1).clamp(min=0)
    area_t = (tx2 - tx1).clamp(min=0) * (ty2 - ty1).clamp(min=0)
    iw = (torch.minimum(px2, tx2) - torch.maximum(px1, tx1)).clamp(min=0)
    ih = (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)).clamp(min=0)
    inter = iw * ih
    union = area_p + area_t - inter + eps
    iou = inter / union
    cw = torch.maximum(px2, tx2) - torch.minimum(px1, tx1)
    ch = torch.maximum(py2, ty2) - torch.minimum(py1, ty1)
    hull = cw * ch + eps
    return 1.0 - (iou - (hull - union) / hull)


def detection_loss(
    det_raw: torch.Tensor,
    boxes: torch.Tensor,
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: list[torch.Tensor],
    gt_classes: list[torch.Tensor],
    w: LossWeights,
) -> tuple[torch.Tensor, dict[str, float]]:
    """det_raw [B,A,5+C] (4 regression, objectness logit, class logits); boxes [B,A,4] decoded."""
    bsz, _, ch = det_raw.shape
    num_classes = ch - 5
    obj_logits = det_raw[..., 4]
    cls_logits = det_raw[..., 5:]
    obj_target = torch.zeros_like(obj_logits)
    box_losses, cls_losses = [], []
    num_pos = 0
    for b in range(bsz):
        idx = assign(points, strides, gt_boxes[b])
        pos = idx >= 0
        n = int(pos.sum())
        if n == 0:
            continue
        num_pos += n
        obj_target[b, pos] = 1.0
        target_boxes = gt_boxes[b][idx[pos]]
        box_losses.append(giou_loss(boxes[b, pos], target_boxes))
        onehot = F.one_hot(gt_classes[b][idx[pos]], num_classes).to(cls_logits.dtype)
        cls_losses.append(
            F.binary_cross_entropy_with_logits(cls_logits[b, pos], onehot, reduction="none").sum(1)
        )
    norm = max(num_pos, 1)
    obj = F.binary_cross_entropy_with_logits(obj_logits, obj_target, reduction="sum") / norm
    box = torch.cat(box_losses).sum() / norm if box_losses else det_raw.sum() * 0.0
    cls = torch.cat(cls_losses).sum() / norm if cls_losses else det_raw.sum() * 0.0
    total = w.box * box + w.objectness * obj + w.classification * cls
    return total, {
        "box": float(box.detach()),
        "obj": float(obj.detach()),
        "cls": float(cls.detach()),
        "pos": float(num_pos / bsz),
    }


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, w: LossWeights) -> torch.Tensor:
    """Weighted cross-entropy plus soft dice over the foreground classes."""
    weight = torch.tensor(w.seg_class_weights[: logits.shape[1]], dtype=logits.dtype)
    if len(weight) < logits.shape[1]:
        weight = torch.ones(logits.shape[1], dtype=logits.dtype)
    ce = F.cross_entropy(logits, target, weight=weight)
    if w.dice <= 0:
        return ce
    prob = logits.softmax(1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(prob.dtype)[:, 1:]
    inter = (prob * onehot).sum((0, 2, 3))
    denom = prob.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    dice = 1.0 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
    return ce + w.dice * dice


def depth_loss(pred: torch.Tensor, gt: torch.Tensor, max_depth: float, w: LossWeights) -> torch.Tensor:
    """SILog on valid pixels (0 < gt <= max_depth); the prediction [B,1,h,w] is upsampled (nearest)
    to the ground truth's size, the same rule the evaluation uses."""
    if pred.shape[-2:] != gt.shape[-2:]:
        pred = F.interpolate(pred, size=gt.shape[-2:], mode="nearest")
    pred = pred[:, 0]
    valid = (gt > 0) & (gt <= max_depth)
    if not bool(valid.any()):
        return pred.sum() * 0.0
    d = torch.log(pred[valid].clamp(min=1e-3)) - torch.log(gt[valid])
    var = (d**2).mean() - w.silog_lambda * d.mean() ** 2
    return torch.sqrt(var.clamp(min=1e-8)) * 10.0
