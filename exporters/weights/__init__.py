"""Shipped checkpoints of the default networks, trained on the synthetic world by `percept train`.

``<name>.pt`` (see exporters.networks.checkpoint for the format) with ``<name>.json`` metadata:
network, input size, classes, training seed and steps, wall time, validation metrics.
"""

from __future__ import annotations

from pathlib import Path

from serving.errors import SpecError

WEIGHTS_DIR = Path(__file__).resolve().parent
SHIPPED = ("cam-n", "fusion-n")


def default_checkpoint(name: str) -> Path:
    """Path of the shipped checkpoint of network ``name``; SpecError when none is shipped."""
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise SpecError(f"no shipped checkpoint for {name!r}; shipped: {', '.join(shipped) or 'none'}")
    return path


def shipped_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint of network ``name``, or None when none is shipped (a random init then)."""
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if path.is_file() else None


def checkpoint_metadata(name: str) -> dict:
    """The metadata JSON next to the shipped checkpoint of ``name``."""
    import json

    return json.loads(default_checkpoint(name).with_suffix(".json").read_text())
