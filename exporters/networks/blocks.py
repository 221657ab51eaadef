"""Building blocks: conv + BN + SiLU, CSP block, SPPF. Only ops that export cleanly to ONNX and
TensorRT (conv, batch norm that folds into the conv, SiLU, max-pool, concat, add)."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Module):
    """Conv (no bias) + BatchNorm + SiLU; 'same' padding for odd kernels."""

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False)
        # variance-preserving init: an untrained network (tests, export fixtures) keeps O(1)
        # activations in eval mode instead of fading towards constant outputs layer by layer
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_in", nonlinearity="relu")
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act: nn.Module = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs with an optional residual connection."""

    def __init__(self, c: int, shortcut: bool = True):
        super().__init__()
        self.cv1 = ConvBNAct(c, c, 3)
        self.cv2 = ConvBNAct(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CSPBlock(nn.Module):
    """Cross-stage-partial block: two 1x1 projections split the input into a bypass half and a
    half that runs through ``n`` bottlenecks; every intermediate output is concatenated and fused
    by a 1x1 conv (the C2f arrangement, with two convs instead of a tensor split)."""

    def __init__(self, c_in: int, c_out: int, n: int = 1, shortcut: bool = True):
        super().__init__()
        c = c_out // 2
        self.bypass = ConvBNAct(c_in, c, 1)
        self.main = ConvBNAct(c_in, c, 1)
        self.blocks = nn.ModuleList(Bottleneck(c, shortcut) for _ in range(n))
        self.fuse = ConvBNAct((2 + n) * c, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.bypass(x), self.main(x)]
        for block in self.blocks:
            ys.append(block(ys[-1]))
        return self.fuse(torch.cat(ys, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained 5x5 max-pools, concatenated."""

    def __init__(self, c: int):
        super().__init__()
        self.reduce = ConvBNAct(c, c // 2, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.fuse = ConvBNAct(c // 2 * 4, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y0 = self.reduce(x)
        y1 = self.pool(y0)
        y2 = self.pool(y1)
        return self.fuse(torch.cat([y0, y1, y2, self.pool(y2)], 1))
