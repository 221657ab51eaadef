"""System shared memory for a server on the same host: one region per client, grown on demand.

The region is registered with the server once and reused for every request; ``close()`` always
unregisters it and destroys it (also when the server is gone), so nothing leaks in /dev/shm.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

import numpy as np

from serving.errors import MissingDependencyError

log = logging.getLogger(__name__)


def _shm():
    try:
        import tritonclient.utils.shared_memory as shm
    except ImportError as exc:
        raise MissingDependencyError("tritonclient[grpc]", "client") from exc
    return shm


class SharedMemoryInputs:
    """Places a request's input arrays in one shared-memory region and tells the InferInputs where."""

    def __init__(self, triton_client, call) -> None:
        # ``call(fn, *args)`` runs an RPC with the client's deadline, retries and error mapping
        self._client = triton_client
        self._call = call
        self._handle = None
        self._size = 0
        self._name = ""
        self._lock = threading.Lock()

    def _ensure(self, nbytes: int) -> None:
        if self._handle is not None and nbytes <= self._size:
            return
        self._release()
        shm = _shm()
        size = max(nbytes, 1 << 20)
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._name = f"percept_in_{tag}"
        self._handle = shm.create_shared_memory_region(self._name, f"/percept_in_{tag}", size)
        self._size = size
        try:
            self._call(self._client.register_system_shared_memory, self._name, f"/percept_in_{tag}", size)
        except BaseException:
            shm.destroy_shared_memory_region(self._handle)
            self._handle = None
            raise
        log.debug("registered shared memory region %s (%d bytes)", self._name, size)

    def bind(self, infer_inputs: list, arrays: list[np.ndarray]) -> threading.Lock:
        """Copy ``arrays`` into the region and point ``infer_inputs`` at them. Returns the held lock:
        the caller releases it once the request has been answered (the region is reused)."""
        total = sum(a.nbytes for a in arrays)
        self._lock.acquire()
        try:
            self._ensure(total)
            offset = 0
            shm = _shm()
            for inp, arr in zip(infer_inputs, arrays, strict=True):
                shm.set_shared_memory_region(self._handle, [np.ascontiguousarray(arr)], offset=offset)
                inp.set_shared_memory(self._name, arr.nbytes, offset=offset)
                offset += arr.nbytes
        except BaseException:
            self._lock.release()
            raise
        return self._lock

    def _release(self) -> None:
        if self._handle is None:
            return
        try:
            self._call(self._client.unregister_system_shared_memory, self._name)
        except Exception as exc:  # the server may be gone; the local segment must still go
            log.warning("could not unregister shared memory %s: %s", self._name, exc)
        finally:
            _shm().destroy_shared_memory_region(self._handle)
            self._handle = None
            self._size = 0

    def close(self) -> None:
        with self._lock:
            self._release()
