"""Anchor-free target assignment: centre sampling at the stride that matches the box size.

A point of the detection grid is a positive for a ground-truth box when it lies inside the box,
within ``radius`` strides of the box centre, and its stride suits the box's longer side (small
boxes go to stride 8, large ones to 32, with overlapping ranges so that boxes near a boundary get
points on both levels). A point claimed by several boxes takes the smallest one. Every box gets
at least one point: the nearest point of the grid at its best stride, even for a box smaller than
one stride (a quarter of this world's boxes are under 32x32 pixels).
"""

from __future__ import annotations

import torch

# longer box side (pixels) range served by each stride
SCALE_RANGES: dict[int, tuple[float, float]] = {8: (0.0, 64.0), 16: (40.0, 160.0), 32: (112.0, float("inf"))}


def _stride_ok(strides: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
    """[A, N] whether each point's stride suits each box's longer side."""
    ok = torch.zeros(len(strides), len(longer), dtype=torch.bool)
    for s, (lo, hi) in SCALE_RANGES.items():
        rows = strides == s
        ok[rows] = ((longer >= lo) & (longer < hi))[None, :].expand(int(rows.sum()), -1)
    return ok


def _best_stride(longer: torch.Tensor) -> torch.Tensor:
    best = torch.full_like(longer, 8.0)
    best[longer >= 96.0] = 16.0
    best[longer >= 192.0] = 32.0
    return best


def assign(
    points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, radius: float = 2.5
) -> torch.Tensor:
    """Index of the assigned ground-truth box for each of the A points, -1 for background.

    points [A,2] (x, y pixels), strides [A], gt_boxes [N,4] xyxy.
    """
    num_points = len(points)
    if len(gt_boxes) == 0:
        return torch.full((num_points,), -1, dtype=torch.long)
    x, y = points[:, 0:1], points[:, 1:2]  # [A,1]
    x1, y1, x2, y2 = (gt_boxes[:, i][None, :] for i in range(4))  # [1,N]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = radius * strides.float()[:, None]
    inside = (x > x1) & (x < x2) & (y > y1) & (y < y2)
    central = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    wh = gt_boxes[:, 2:] - gt_boxes[:, :2]
    longer = wh.max(dim=1).values
    cand = inside & central & _stride_ok(strides.float(), longer)
    # every box gets the nearest point at its best stride
    dist = (x - cx) ** 2 + (y - cy) ** 2  # [A,N]
    best = _best_stride(longer)
    at_best = strides.float()[:, None] == best[None, :]
    nearest = torch.where(at_best, dist, torch.full_like(dist, float("inf"))).argmin(dim=0)  # [N]
    cand[nearest, torch.arange(len(gt_boxes))] = True
    area = (wh[:, 0] * wh[:, 1])[None, :].expand(num_points, -1)
    area = torch.where(cand, area, torch.full_like(area, float("inf")))
    min_area, idx = area.min(dim=1)
    return torch.where(torch.isfinite(min_area), idx, torch.full_like(idx, -1))
