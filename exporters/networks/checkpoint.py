"""Checkpoints: ``torch.save({"network", "input_hw", "state_dict", "meta"})``, loaded back into the
registered network they were trained for, with a clear error when they do not fit."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from exporters.networks.model import PerceptionNet, build_network
from exporters.networks.registry import NETWORKS
from serving.errors import ExportError, SpecError

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("network", "input_hw", "state_dict", "meta")
_SHOWN = 6  # keys named in a mismatch message before "... and N more"


def save_checkpoint(model: PerceptionNet, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``model``'s weights with its registered name and input size (atomically: a temporary
    file renamed into place). ``meta`` must hold plain JSON-like values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "network": model.spec.name,
        "input_hw": list(model.spec.input_hw),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    log.debug("saved %s checkpoint to %s", model.spec.name, path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict, checked for the expected keys and a registered network name."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        # torch's messages run to many lines of advice about weights_only; the first names the cause
        cause = (str(exc).strip().splitlines() or [""])[0]
        raise ExportError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {cause}") from exc
    if not isinstance(data, dict) or set(CHECKPOINT_KEYS) - set(data):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ExportError(f"checkpoint {path} is not a perception-serving checkpoint (keys {found})")
    if data["network"] not in NETWORKS:
        raise SpecError(f"checkpoint {path} names unknown network {data['network']!r}")
    return data


def load_weights(
    model: PerceptionNet, state_dict: dict[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Load ``state_dict`` into ``model`` strictly; SpecError naming missing, unexpected and
    mis-shaped keys otherwise."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = [
        f"{label} ({len(keys)}): {', '.join(keys[:_SHOWN])}"
        + (f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if keys
    ]
    if problems:
        raise SpecError(f"{source} does not match network {model.spec.name}: " + "; ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def load_checkpoint(
    path: str | Path, network: str | None = None, input_hw: Sequence[int] | None = None
) -> tuple[PerceptionNet, dict]:
    """Build the checkpoint's network and load its weights; returns ``(model in eval mode, meta)``.

    ``network``: the name the caller expects (SpecError when the checkpoint was trained for another).
    ``input_hw``: build at this size instead of the trained one (the networks are fully
    convolutional, so the weights fit any multiple-of-32 size)."""
    data = read_checkpoint(path)
    trained_for = data["network"]
    if network is not None and network != trained_for:
        raise SpecError(f"checkpoint {path} was trained for {trained_for}, not {network}")
    hw = input_hw if input_hw is not None else [int(v) for v in data["input_hw"]]
    model = build_network(trained_for, hw)
    load_weights(model, data["state_dict"], source=f"checkpoint {path}")
    model.eval()
    return model, dict(data["meta"])
