"""Dense heads: segmentation logits at input resolution and metric depth at 1/depth_stride.

Both decode the neck's stride-8 output with a stride-4 skip from the backbone: a 1x1 lateral on
each, nearest x2 upsampling of the coarse one, a sum and a 3x3 conv (a small FPN step). Each
head owns its decoder, so single-task networks build exactly what they use.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from exporters.networks.blocks import ConvBNAct

MIN_DEPTH_M = 0.1  # the depth head's lower bound; its output is strictly positive


class StrideFourDecoder(nn.Module):
    def __init__(self, c_p3: int, c_skip: int, width: int):
        super().__init__()
        self.lateral = ConvBNAct(c_p3, width, 1)
        self.skip = ConvBNAct(c_skip, width, 1)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.refine = ConvBNAct(width, width, 3)

    def forward(self, p3: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        return self.refine(self.up(self.lateral(p3)) + self.skip(c2))


class SegmentationHead(nn.Module):
    """Class logits ``[B, S, H, W]``: predicted at stride 4, upsampled x4 bilinearly."""

    def __init__(self, c_p3: int, c_skip: int, width: int, num_classes: int):
        super().__init__()
        self.decoder = StrideFourDecoder(c_p3, c_skip, width)
        self.pred = nn.Conv2d(width, num_classes, 1)
        self.up = nn.Upsample(scale_factor=4.0, mode="bilinear", align_corners=False)

    def forward(self, p3: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
        return self.up(self.pred(self.decoder(p3, c2)))


class LidarDepthGuide(nn.Module):
    """Residual correction of the depth decoder's stride-4 features from the LiDAR at stride 4:
    ``feat + conv1x1(ConvBNAct3x3(concat(feat, lidar4)))``. The last conv starts at zero, so a
    camera-trained head is unchanged until training teaches it where to trust a return."""

    def __init__(self, width: int, guide_channels: int):
        super().__init__()
        self.mix = ConvBNAct(width + guide_channels, width, 3)
        self.out = nn.Conv2d(width, width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(self, feat: torch.Tensor, lidar4: torch.Tensor) -> torch.Tensor:
        return feat + self.out(self.mix(torch.cat([feat, lidar4], 1)))


class DepthHead(nn.Module):
    """Metric depth ``[B, 1, H/depth_stride, W/depth_stride]`` in metres, in
    ``(MIN_DEPTH_M, max_depth_m)``: ``min + (max - min) * sigmoid(x)``; the stride-4 features
    (corrected by the LiDAR guide in fusion networks) are upsampled bilinearly to the output
    stride and refined there by a depthwise 3x3 conv."""

    def __init__(
        self,
        c_p3: int,
        c_skip: int,
        width: int,
        depth_stride: int,
        max_depth_m: float,
        guide_channels: int = 0,
    ):
        super().__init__()
        self.decoder = StrideFourDecoder(c_p3, c_skip, width)
        self.guide = LidarDepthGuide(width, guide_channels) if guide_channels else None
        factor = 4 // depth_stride
        self.up: nn.Module = (
            nn.Upsample(scale_factor=float(factor), mode="bilinear", align_corners=False)
            if factor > 1
            else nn.Identity()
        )
        self.refine = ConvBNAct(width, width, 3, groups=width)
        self.pred = nn.Conv2d(width, 1, 1)
        self.min_depth = MIN_DEPTH_M
        self.depth_range = max_depth_m - MIN_DEPTH_M
        # start near 20 m, a typical mid-range distance, rather than at half the range
        p = (20.0 - MIN_DEPTH_M) / self.depth_range
        nn.init.constant_(self.pred.bias, math.log(p / (1 - p)))  # type: ignore[arg-type]

    def forward(self, p3: torch.Tensor, c2: torch.Tensor, lidar4: torch.Tensor | None = None) -> torch.Tensor:
        feat = self.decoder(p3, c2)
        if self.guide is not None:
            if lidar4 is None:
                raise ValueError("this depth head is LiDAR-guided: pass the stride-4 LiDAR guide")
            feat = self.guide(feat, lidar4)
        x = self.pred(self.refine(self.up(feat)))
        return self.min_depth + self.depth_range * torch.sigmoid(x)
