"""LiDAR branch of the fusion networks and the gated sum that fuses it with the camera features.

The sparse depth image (metres, 0 = no return) becomes three channels: validity, inverse depth,
and depth / max_depth of the *nearest* return in each 4x4 cell (a 4x4 max-pool over inverse depth,
which densifies the sparse returns without averaging foreground with background). Strided 3x3
convs then give features at strides 8 and 16, which are fused with the camera backbone's outputs
at the same strides (the neck's inputs) by

    fused = cam + sigmoid(conv1x1(concat(cam, lidar))) * lidar

so the network learns per pixel and channel how much to trust the LiDAR, and an all-zero LiDAR
image (no returns) is a valid input.

The depth head also gets the LiDAR directly at stride 4 (the three input channels and the first
conv's features): a return measures depth to within centimetres, which no amount of fusion at
strides 8 and 16 recovers at the depth head's resolution (see exporters.networks.dense).
"""

from __future__ import annotations

import torch
from torch import nn

from exporters.networks.blocks import ConvBNAct

MIN_RETURN_M = 0.5  # returns closer than this are treated as this close (serving.lidar drops them)


class LidarEncoder(nn.Module):
    def __init__(self, width: int, c8: int, c16: int, max_depth_m: float):
        super().__init__()
        self.max_depth = max_depth_m
        self.guide_channels = 3 + width  # the stride-4 output handed to the depth head
        self.pool = nn.MaxPool2d(4, 4)
        self.conv4 = ConvBNAct(3, width, 3)
        self.down8 = ConvBNAct(width, 2 * width, 3, 2)
        self.mix8 = ConvBNAct(2 * width, 2 * width, 3)
        self.out8 = ConvBNAct(2 * width, c8, 1)
        self.down16 = ConvBNAct(2 * width, 4 * width, 3, 2)
        self.mix16 = ConvBNAct(4 * width, 4 * width, 3)
        self.out16 = ConvBNAct(4 * width, c16, 1)

    def encode_input(self, lidar_depth: torch.Tensor) -> torch.Tensor:
        """[B,1,H,W] metres -> [B,3,H/4,W/4]: valid, inverse depth, normalised nearest depth.
        Non-positive and non-finite values count as no return."""
        finite = lidar_depth < float("inf")
        valid_in = (lidar_depth > 0) & finite
        inv = torch.where(valid_in, 1.0 / lidar_depth.clamp(min=MIN_RETURN_M), 0.0)
        inv = self.pool(inv)
        valid = (inv > 0).to(inv.dtype)
        near = valid / inv.clamp(min=1.0 / self.max_depth) / self.max_depth
        return torch.cat([valid, inv, near], 1)

    def forward(self, lidar_depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (stride-4 guide ``[B, guide_channels, H/4, W/4]``, stride-8 and stride-16 features)."""
        enc = self.encode_input(lidar_depth)
        x4 = self.conv4(enc)
        x8 = self.mix8(self.down8(x4))
        x16 = self.mix16(self.down16(x8))
        return torch.cat([enc, x4], 1), self.out8(x8), self.out16(x16)


class GatedFusion(nn.Module):
    """``cam + sigmoid(conv1x1(concat(cam, lidar))) * lidar``."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv2d(2 * channels, channels, 1)
        nn.init.zeros_(self.gate.bias)  # type: ignore[arg-type]

    def forward(self, cam: torch.Tensor, lidar: torch.Tensor) -> torch.Tensor:
        return cam + torch.sigmoid(self.gate(torch.cat([cam, lidar], 1))) * lidar
