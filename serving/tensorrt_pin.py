"""Which TensorRT may have built an engine the serving image loads: exactly the image's own.

A serialized engine is tied to the TensorRT that built it (major, minor, patch); the Triton image
:data:`serving.model_config.NGC_IMAGE` ships :data:`serving.model_config.NGC_TENSORRT_VERSION`.
Torch- and TensorRT-free: `percept repo build` uses it on engine sidecars, the export stage on the
installed TensorRT.
"""

from __future__ import annotations

from serving.model_config import NGC_TENSORRT_VERSION


def version_key(version: str) -> tuple[int, int, int]:
    """``"10.5.0.18"`` -> (10, 5, 0)."""
    parts = _numbers(version)
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def same_tensorrt(built: str, server: str = NGC_TENSORRT_VERSION) -> bool:
    """Major, minor and patch equal, and the build number too where both name one: "in the standard
    runtime, version numbers must match (in major, minor, patch, and build)" (NVIDIA TensorRT release
    properties, developer.nvidia.com/docs/drive/drive-os/7.0.3/public/drive-os-tensorrt-release-notes/
    release-properties.html); engines are not built with the version-compatible flag here."""
    a, b = _numbers(built), _numbers(server)
    if version_key(built) != version_key(server):
        return False
    return len(a) < 4 or len(b) < 4 or a[3] == b[3]


def _numbers(version: str) -> list[int]:
    parts = []
    for piece in str(version).split(".")[:4]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return parts
