"""The networks: a registry of fused multi-task perception networks.

Architecture (one code path for every registered network):

* input: RGB ``[B, 3, H, W]`` uint8, H and W multiples of 32; ``(x - mean) / std`` from
  ``spec.normalisation`` inside ``forward``;
* backbone: stride-2 stem + four CSP stages at strides 4/8/16/32 (SPPF on the last), channel widths
  and block repeats from the size's multipliers (``n``, ``s``, ``m``);
* neck: FPN (top-down) + PAN (bottom-up) over strides 8/16/32;
* heads, one per task of the network: anchor-free decoupled detection over strides 8/16/32
  (``exporters.networks.detection``: raw ``[B, A, 5 + C]``, ``decode_detections``,
  ``anchor_points``); segmentation logits at input resolution and metric depth (metres, bounded in
  ``(0.1, max_depth_m)``) at ``1/depth_stride``, both decoded from the stride-8 neck output with a
  stride-4 backbone skip (``exporters.networks.dense``);
* fusion (``fusion-*``): a second input ``lidar_depth`` ``[B, 1, H, W]`` (metres, 0 = no return)
  is max-pooled (nearest return per 4x4 cell) into validity / inverse depth / normalised depth and
  encoded by strided convs into features at strides 8 and 16, fused into the neck's inputs by a
  gated sum ``cam + sigmoid(conv1x1(concat(cam, lidar))) * lidar`` (``exporters.networks.lidar``).
  Camera-only and fusion networks share all other code and parameter names.

Only ONNX/TensorRT-friendly ops (conv, foldable BN, SiLU, max-pool, nearest/bilinear resize with
static scales, concat, sigmoid, softplus); no data-dependent control flow, no loops over the batch.

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
