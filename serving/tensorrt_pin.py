"""Which TensorRT may have built an engine the serving image loads: exactly the image's own.

A serialized engine is tied to the TensorRT that built it (major, minor, patch); the target Triton
image :data:`serving.ngc.TRITON_IMAGE` ships :func:`serving.ngc.tensorrt_version`. Torch- and
TensorRT-free: `percept repo build` uses it on engine sidecars, the export stage on the installed
TensorRT.
"""

from __future__ import annotations

from serving import ngc
from serving.errors import ServingError


def version_key(version: str) -> tuple[int, int, int]:
    """``"10.5.0.18"`` -> (10, 5, 0)."""
    parts = _numbers(version)
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def target_tensorrt() -> str:
    """The TensorRT of the NGC target; ServingError saying how to set it where NVIDIA's pages did not
    confirm it (serving.ngc)."""
    version = ngc.tensorrt_version()
    if version is None:
        raise ServingError(
            f"the TensorRT version of {ngc.TRITON_IMAGE} is not pinned (serving/ngc.py: unconfirmed): "
            f"read it in the image (`dpkg -l | grep libnvinfer`) and set {ngc.TENSORRT_VERSION_ENV}"
        )
    return version


def same_tensorrt(built: str, server: str | None = None) -> bool:
    """Major, minor and patch equal, and the build number too where both name one: "in the standard
    runtime, version numbers must match (in major, minor, patch, and build)" (NVIDIA TensorRT release
    properties, developer.nvidia.com/docs/drive/drive-os/7.0.3/public/drive-os-tensorrt-release-notes/
    release-properties.html); engines are not built with the version-compatible flag here.
    ``server`` None: the NGC target's (:func:`target_tensorrt`)."""
    server = target_tensorrt() if server is None else server
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
