"""CSP backbone: a stride-2 stem and four CSP stages at strides 4, 8, 16, 32, SPPF on the last."""

from __future__ import annotations

import torch
from torch import nn

from exporters.networks.blocks import SPPF, ConvBNAct, CSPBlock


class CSPBackbone(nn.Module):
    """Returns features at strides 4, 8, 16, 32 with ``widths[1:]`` channels."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...]):
        super().__init__()
        self.stem = ConvBNAct(3, widths[0], 3, 2)
        stages = []
        for i, n in enumerate(depths):
            layers: list[nn.Module] = [
                ConvBNAct(widths[i], widths[i + 1], 3, 2),
                CSPBlock(widths[i + 1], widths[i + 1], n),
            ]
            if i == len(depths) - 1:
                layers.append(SPPF(widths[i + 1]))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
