"""Parameters and FLOPs of a network at an input size, measured by running it once.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix
products only, one multiply-add = 2 FLOPs (so GFLOPs = 2 x GMACs); element-wise ops (BN before
folding, activations, resizes, additions) are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from exporters.networks.model import PerceptionNet, build_network
from exporters.networks.registry import NETWORKS
from serving.spec import DEFAULT_INPUT_HW


@dataclass(frozen=True)
class Complexity:
    name: str
    input_hw: tuple[int, int]
    params: int
    flops: int  # per image, 2 per multiply-add

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gflops(self) -> float:
        return self.flops / 1e9


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_complexity(
    network: str | PerceptionNet, input_hw: Sequence[int] = DEFAULT_INPUT_HW
) -> Complexity:
    """Parameters and FLOPs of one forward pass on one image at ``input_hw`` (a registered name is
    built on the meta device, so even ``m`` at full size takes well under a second)."""
    if isinstance(network, str):
        # on the meta device nothing is computed or allocated: shapes alone give the counts
        with torch.device("meta"):
            model = build_network(network, input_hw)
    else:
        model = network
    device = next(model.parameters()).device
    h, w = int(input_hw[0]), int(input_hw[1])
    images = torch.zeros(1, 3, h, w, dtype=torch.uint8, device=device)
    lidar = torch.zeros(1, 1, h, w, device=device) if model.spec.fusion else None
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(images, lidar)
    model.train(was_training)
    return Complexity(model.spec.name, (h, w), count_parameters(model), counter.get_total_flops())


def complexity_table(
    names: list[str] | None = None, input_hw: tuple[int, int] = DEFAULT_INPUT_HW
) -> list[Complexity]:
    return [measure_complexity(n, input_hw) for n in (names or list(NETWORKS))]


def format_table(rows: list[Complexity]) -> str:
    """A Markdown table (the README's table of networks)."""
    lines = [
        "| network | tasks | LiDAR | params (M) | GFLOPs @ HxW |",
        "|---|---|---|---:|---:|",
    ]
    for r in rows:
        cfg = NETWORKS[r.name]
        tasks = ", ".join(cfg.tasks)
        lines.append(
            f"| {r.name} | {tasks} | {'yes' if cfg.fusion else 'no'} | {r.params_m:.2f} | "
            f"{r.gflops:.2f} @ {r.input_hw[0]}x{r.input_hw[1]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # `python -m exporters.networks.complexity`: the README table
    print(format_table(complexity_table()))
