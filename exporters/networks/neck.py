"""FPN + PAN neck: a top-down path (stride 32 -> 16 -> 8) then a bottom-up path (8 -> 16 -> 32)."""

from __future__ import annotations

import torch
from torch import nn

from exporters.networks.blocks import ConvBNAct, CSPBlock


class FPNPAN(nn.Module):
    """Fuses backbone features at strides 8/16/32 (channels ``c3, c4, c5``); outputs the same
    strides and channels, each level now carrying context from the others."""

    def __init__(self, c3: int, c4: int, c5: int, n: int = 1):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.td4 = CSPBlock(c5 + c4, c4, n, shortcut=False)
        self.td3 = CSPBlock(c4 + c3, c3, n, shortcut=False)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bu4 = CSPBlock(c3 + c4, c4, n, shortcut=False)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bu5 = CSPBlock(c4 + c5, c5, n, shortcut=False)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> list[torch.Tensor]:
        t4 = self.td4(torch.cat([self.up(c5), c4], 1))
        p3 = self.td3(torch.cat([self.up(t4), c3], 1))
        p4 = self.bu4(torch.cat([self.down3(p3), t4], 1))
        p5 = self.bu5(torch.cat([self.down4(p4), c5], 1))
        return [p3, p4, p5]
