"""Anchor-free decoupled detection head over strides 8/16/32, its anchor grid and box decoding.

Raw output layout, per image: ``[A, 5 + C]`` where the ``A`` anchor points are the cells of the
stride-8, then stride-16, then stride-32 feature maps, each in row-major (y, x) order. Per point:
4 box-regression values (left, top, right, bottom), 1 objectness logit, C class logits.

Decoding (pure tensor ops, export-friendly): the point's centre is ``((x + 0.5) * s, (y + 0.5) * s)``
in model-input pixels; the box is ``centre -/+ softplus(ltrb) * s``; scores are
``sigmoid(obj) * sigmoid(cls)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from exporters.networks.blocks import ConvBNAct
from serving.errors import SpecError

STRIDES = (8, 16, 32)
PRIOR_PROBABILITY = 0.01  # initial objectness / class probability (focal-loss style bias init)


def anchor_points(
    input_hw: Sequence[int], device=None, dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``[A, 2]`` (x, y centres in model-input pixels) and strides ``[A]`` for an input size.

    Built from Python ints only, so an exporter sees constants."""
    h, w = int(input_hw[0]), int(input_hw[1])
    points, strides = [], []
    for s in STRIDES:
        gh, gw = h // s, w // s
        ys = (torch.arange(gh, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(gw, device=device, dtype=dtype) + 0.5) * s
        grid_y = ys.view(gh, 1).expand(gh, gw)
        grid_x = xs.view(1, gw).expand(gh, gw)
        points.append(torch.stack([grid_x, grid_y], -1).reshape(gh * gw, 2))
        strides.append(torch.full((gh * gw,), float(s), device=device, dtype=dtype))
    return torch.cat(points, 0), torch.cat(strides, 0)


def num_anchors(input_hw: Sequence[int]) -> int:
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in STRIDES)


def decode_detections(
    det_raw: torch.Tensor, points: torch.Tensor, strides: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``[B, A, 5 + C]`` -> boxes ``[B, A, 4]`` (x1, y1, x2, y2 pixels), scores ``[B, A, C]``."""
    if det_raw.dim() != 3 or det_raw.shape[-1] < 6:
        raise SpecError(f"raw detections must be [B, A, 5 + C], got shape {tuple(det_raw.shape)}")
    if det_raw.shape[1] != points.shape[0]:
        raise SpecError(
            f"raw detections hold {det_raw.shape[1]} anchor points, the anchor grid {points.shape[0]}: "
            "decode with the input size the network ran at"
        )
    dist = F.softplus(det_raw[..., :4]) * strides.unsqueeze(-1)
    boxes = torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1)
    scores = torch.sigmoid(det_raw[..., 4:5]) * torch.sigmoid(det_raw[..., 5:])
    return boxes, scores


class _DecoupledLevel(nn.Module):
    """One pyramid level: a 1x1 stem, then a regression branch (box + objectness predictions,
    as in YOLOX) and a separate classification branch."""

    def __init__(self, c_in: int, hidden: int, num_classes: int, depth: int):
        super().__init__()
        self.stem = ConvBNAct(c_in, hidden, 1)
        self.reg_branch = nn.Sequential(*(ConvBNAct(hidden, hidden, 3) for _ in range(depth)))
        self.cls_branch = nn.Sequential(*(ConvBNAct(hidden, hidden, 3) for _ in range(depth)))
        self.box_pred = nn.Conv2d(hidden, 4, 1)
        self.obj_pred = nn.Conv2d(hidden, 1, 1)
        self.cls_pred = nn.Conv2d(hidden, num_classes, 1)
        prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
        nn.init.constant_(self.obj_pred.bias, prior)  # type: ignore[arg-type]
        nn.init.constant_(self.cls_pred.bias, prior)  # type: ignore[arg-type]
        nn.init.zeros_(self.box_pred.bias)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        reg = self.reg_branch(x)
        cls = self.cls_branch(x)
        return torch.cat([self.box_pred(reg), self.obj_pred(reg), self.cls_pred(cls)], 1)


class DetectionHead(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], num_classes: int, hidden: int, depth: int = 2):
        super().__init__()
        self.levels = nn.ModuleList(_DecoupledLevel(c, hidden, num_classes, depth) for c in in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        outs = [level(f).flatten(2) for level, f in zip(self.levels, features, strict=True)]
        return torch.cat(outs, 2).transpose(1, 2)
