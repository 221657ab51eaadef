"""The networks: a registry of fused multi-task perception networks (CSP backbone, FPN+PAN neck,
anchor-free detection, segmentation and metric-depth heads, optional LiDAR fusion).

The registry (`NETWORKS`, `NetworkConfig`, `get_config`) is torch-free; everything that builds or
runs a network imports torch on first use and raises MissingDependencyError without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from exporters.networks.registry import (
    DEPTH_OUT,
    DET_OUT,
    NETWORKS,
    SEG_OUT,
    TASK_OUTPUTS,
    NetworkConfig,
    get_config,
)
from serving.errors import MissingDependencyError

if TYPE_CHECKING:
    from exporters.networks.checkpoint import load_checkpoint, load_weights, save_checkpoint
    from exporters.networks.complexity import Complexity, complexity_table, measure_complexity
    from exporters.networks.model import PerceptionNet, build_network

_LAZY = {
    "PerceptionNet": "model",
    "build_network": "model",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_weights": "checkpoint",
    "Complexity": "complexity",
    "measure_complexity": "complexity",
    "complexity_table": "complexity",
}

__all__ = [
    "DEPTH_OUT",
    "DET_OUT",
    "NETWORKS",
    "SEG_OUT",
    "TASK_OUTPUTS",
    "NetworkConfig",
    "get_config",
    "PerceptionNet",
    "build_network",
    "save_checkpoint",
    "load_checkpoint",
    "load_weights",
    "Complexity",
    "measure_complexity",
    "complexity_table",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("torch", "export") from exc
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
