"""Which TensorRT may have built an engine the serving image loads: exactly the image's own.

A serialized engine is tied to the TensorRT that built it (major, minor, patch); the Triton image
:data:`serving.model_config.NGC_IMAGE` ships :data:`serving.model_config.NGC_TENSORRT_VERSION`.
Torch- and TensorRT-free: `percept repo build` uses it on engine sidecars, the export stage on the
installed TensorRT.
"""

from __future__ import annotations

from serving.model_config import NGC_TENSORRT_VERSION


def version_key(version: str) -> tuple[int, int, int]:
    """``"10.5.0.18"`` -> (10, 5, 0): the part of a TensorRT version an engine must match."""
    parts = []
    for piece in str(version).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def same_tensorrt(built: str, server: str = NGC_TENSORRT_VERSION) -> bool:
    return version_key(built) == version_key(server)
