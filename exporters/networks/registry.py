"""The registry of networks: names, sizes, tasks and the spec each one serves (torch-free).

Sizes follow the usual width/depth multiplier scheme over one base architecture: ``n`` is small
enough to train on 2 CPU cores and serve at useful frame rates on a CPU; ``s`` and ``m`` scale
channel widths and block repeats up. ``fusion-*`` networks add a LiDAR branch; ``cam-n-<task>``
networks keep the same backbone and neck but build a single head (for the fused vs single-task
benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW, TASKS, ModelSpec

# Base channels of the stem and the four stages (strides 2, 4, 8, 16, 32) and block repeats of the
# four stages and of the neck, before the size multipliers are applied.
BASE_WIDTHS = (64, 128, 256, 512, 1024)
BASE_DEPTHS = (3, 6, 6, 3)
BASE_NECK_DEPTH = 3
# the backbone's output stride: the registered networks run at multiples of it (not a contract rule)
BACKBONE_STRIDE = 32


def check_input_size(hw: tuple[int, int]) -> tuple[int, int]:
    """The registered networks' size rule: positive multiples of :data:`BACKBONE_STRIDE`."""
    h, w = hw
    if h <= 0 or w <= 0 or h % BACKBONE_STRIDE or w % BACKBONE_STRIDE:
        raise SpecError(f"input size {h}x{w} must be positive multiples of {BACKBONE_STRIDE}")
    return hw


# Keys of PerceptionNet.forward's output dict (raw head outputs, before the exporter's decode/argmax)
DET_OUT = "det"
SEG_OUT = "seg"
DEPTH_OUT = "depth"
TASK_OUTPUTS = {"detection": DET_OUT, "segmentation": SEG_OUT, "depth": DEPTH_OUT}

# size -> (width multiplier, depth multiplier, channel cap); the cap keeps `n`'s stride-32 stage
# (most of the parameters) small enough for CPU training
SIZES: dict[str, tuple[float, float, int]] = {
    "n": (0.25, 0.33, 192),
    "s": (0.5, 0.33, 512),
    "m": (0.75, 0.67, 768),
}


def _round_channels(c: float, divisor: int = 8) -> int:
    return max(divisor, int(math.ceil(c / divisor)) * divisor)


@dataclass(frozen=True)
class NetworkConfig:
    """One registered network: architecture hyper-parameters plus the tasks and inputs it serves."""

    name: str
    size: str = "n"
    fusion: bool = False
    tasks: tuple[str, ...] = TASKS

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise SpecError(f"network {self.name!r}: size must be one of {sorted(SIZES)}, got {self.size!r}")
        if not self.tasks or set(self.tasks) - set(TASKS):
            raise SpecError(f"network {self.name!r}: tasks must be a non-empty subset of {TASKS}")

    @property
    def width_multiplier(self) -> float:
        return SIZES[self.size][0]

    @property
    def depth_multiplier(self) -> float:
        return SIZES[self.size][1]

    @property
    def widths(self) -> tuple[int, int, int, int, int]:
        """Channels at strides 2, 4, 8, 16, 32."""
        w = [_round_channels(min(b * self.width_multiplier, SIZES[self.size][2])) for b in BASE_WIDTHS]
        return w[0], w[1], w[2], w[3], w[4]

    @property
    def depths(self) -> tuple[int, int, int, int]:
        """Block repeats of the four backbone stages."""
        d = [max(1, round(b * self.depth_multiplier)) for b in BASE_DEPTHS]
        return d[0], d[1], d[2], d[3]

    @property
    def neck_depth(self) -> int:
        return max(1, round(BASE_NECK_DEPTH * self.depth_multiplier))

    @property
    def head_width(self) -> int:
        """Hidden channels of the decoupled detection branches."""
        return max(32, self.widths[2] // 2)

    @property
    def head_depth(self) -> int:
        """3x3 convs per detection branch."""
        return 1 if self.size == "n" else 2

    @property
    def dense_width(self) -> int:
        """Channels of the stride-4 decoders of the segmentation and depth heads."""
        return max(16, self.widths[1] * 3 // 4)

    def spec(self, input_hw: Sequence[int] = DEFAULT_INPUT_HW) -> ModelSpec:
        if len(input_hw) != 2:
            raise SpecError(f"network {self.name!r}: input_hw must be (height, width), got {input_hw!r}")
        hw = check_input_size((int(input_hw[0]), int(input_hw[1])))
        return ModelSpec(name=self.name, input_hw=hw, fusion=self.fusion, tasks=self.tasks)


def _registry() -> dict[str, NetworkConfig]:
    configs = [NetworkConfig(f"cam-{s}", s) for s in SIZES]
    configs += [NetworkConfig(f"fusion-{s}", s, fusion=True) for s in SIZES]
    short = {"detection": "det", "segmentation": "seg", "depth": "depth"}
    configs += [NetworkConfig(f"cam-n-{short[t]}", "n", tasks=(t,)) for t in TASKS]
    return {c.name: c for c in configs}


NETWORKS: dict[str, NetworkConfig] = _registry()


def get_config(name: str) -> NetworkConfig:
    """The registered config for ``name``; SpecError listing the known names otherwise."""
    try:
        return NETWORKS[name]
    except KeyError:
        raise SpecError(f"unknown network {name!r}; registered: {', '.join(NETWORKS)}") from None
