"""Device memory for TensorRT without torch: the CUDA runtime through cuda-python.

TensorRT's Python API takes raw device pointers and a stream handle; its own Python samples get them
from cuda-python's runtime bindings (NVIDIA/TensorRT samples/python/common_runtime.py:
``cudart.cudaMalloc``, ``cudaMemcpyAsync``, ``cudaStreamCreate``). cuda-python rather than polygraphy
because it is the thin, generated binding of the CUDA runtime API itself (each call returns
``(cudaError_t, value...)``), one pip package with no further tools; polygraphy wraps the same calls
in a larger toolkit. ``cuda.bindings.runtime`` is the module's name from cuda-python 12.6 on, the
older ``cuda.cudart`` before it (nvidia.github.io/cuda-python/cuda-bindings/latest/module/runtime.html).
Only the pure parts (:func:`check`, :class:`Buffers`' bookkeeping) run on the CI machines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.errors import ExportError, MissingDependencyError


def cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError as exc:
            raise MissingDependencyError("cuda-python", "engine") from exc
    return runtime


def check(result, what: str):
    """``(err, *values)`` of a cudart call -> the values (one, or None); ExportError on an error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:  # cudaError_t.cudaSuccess == 0
        raise ExportError(f"CUDA {what} failed: {err}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def device(index: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of GPU ``index``; ExportError where the machine has none."""
    rt = cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if not count:
        raise ExportError("building a TensorRT engine needs an NVIDIA GPU (the CUDA runtime sees none)")
    props = check(rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), (int(props.major), int(props.minor))


class Buffers:
    """Device buffers by tensor name on one created stream (TensorRT warns against the legacy default
    one); grown when a larger array comes, freed by :meth:`close`."""

    def __init__(self) -> None:
        self.rt = cudart()
        self.stream = check(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self.pointers: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    def pointer(self, name: str, nbytes: int) -> int:
        if self.sizes.get(name, -1) < nbytes:
            if name in self.pointers:
                check(self.rt.cudaFree(self.pointers[name]), "cudaFree")
            self.pointers[name] = int(check(self.rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self.sizes[name] = nbytes
        return self.pointers[name]

    def upload(self, name: str, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        ptr = self.pointer(name, array.nbytes)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        check(
            self.rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, self.stream), "copy to device"
        )
        self.synchronize()  # the host array may go away after this call
        return ptr

    def download(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        check(
            self.rt.cudaMemcpyAsync(out.ctypes.data, self.pointers[name], out.nbytes, kind, self.stream),
            "copy",
        )
        self.synchronize()
        return out

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        check(self.rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        for ptr in self.pointers.values():
            check(self.rt.cudaFree(ptr), "cudaFree")
        self.pointers.clear()
        self.sizes.clear()
        check(self.rt.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
