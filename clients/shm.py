"""System shared memory for a server on the same host.

A request's input arrays are copied into a region of /dev/shm that the server has registered, and
the request carries only the region's name and offsets instead of the bytes. Regions are registered
once and reused; ``close()`` always unregisters and destroys them (also when the server is gone), so
nothing leaks in /dev/shm. The sync client uses one region (one request at a time); the asyncio
client a pool with one region per request in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from dataclasses import dataclass

import numpy as np

from serving.errors import MissingDependencyError

log = logging.getLogger(__name__)

MIN_REGION_BYTES = 1 << 20


def _shm():
    try:
        import tritonclient.utils.shared_memory as shm
    except ImportError as exc:
        raise MissingDependencyError("tritonclient[grpc]", "client") from exc
    return shm


@dataclass
class Region:
    name: str
    key: str
    size: int
    handle: object

    @classmethod
    def create(cls, nbytes: int) -> Region:
        tag = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        size = max(nbytes, MIN_REGION_BYTES)
        name, key = f"percept_in_{tag}", f"/percept_in_{tag}"
        return cls(name, key, size, _shm().create_shared_memory_region(name, key, size))

    def destroy(self) -> None:
        _shm().destroy_shared_memory_region(self.handle)

    def bind(self, infer_inputs: list, arrays: list[np.ndarray]) -> None:
        """Copy ``arrays`` into the region, back to back, and point ``infer_inputs`` at them."""
        offset = 0
        for inp, arr in zip(infer_inputs, arrays, strict=True):
            _shm().set_shared_memory_region(self.handle, [np.ascontiguousarray(arr)], offset=offset)
            inp.set_shared_memory(self.name, arr.nbytes, offset=offset)
            offset += arr.nbytes


class SharedMemoryInputs:
    """The sync client's region: grown on demand, held (locked) from bind until the reply."""

    def __init__(self, triton_client, call) -> None:
        # ``call(fn, *args)`` runs an RPC with the client's deadline, retries and error mapping
        self._client = triton_client
        self._call = call
        self._region: Region | None = None
        self._lock = threading.Lock()

    def _ensure(self, nbytes: int) -> Region:
        if self._region is not None and nbytes <= self._region.size:
            return self._region
        self._release()
        region = Region.create(nbytes)
        try:
            self._call(self._client.register_system_shared_memory, region.name, region.key, region.size)
        except BaseException:
            region.destroy()
            raise
        log.debug("registered shared memory region %s (%d bytes)", region.name, region.size)
        self._region = region
        return region

    def bind(self, infer_inputs: list, arrays: list[np.ndarray]) -> threading.Lock:
        """Place the arrays; returns the held lock, which the caller releases once answered."""
        self._lock.acquire()
        try:
            self._ensure(sum(a.nbytes for a in arrays)).bind(infer_inputs, arrays)
        except BaseException:
            self._lock.release()
            raise
        return self._lock

    def _release(self) -> None:
        region, self._region = self._region, None
        if region is None:
            return
        try:
            self._call(self._client.unregister_system_shared_memory, region.name)
        except Exception as exc:  # the server may be gone; the local segment must still go
            log.warning("could not unregister shared memory %s: %s", region.name, exc)
        finally:
            region.destroy()

    def close(self) -> None:
        with self._lock:
            self._release()


class AsyncSharedMemoryPool:
    """The asyncio client's regions: at most ``slots`` (one per request in flight), reused."""

    def __init__(self, triton_client, call, slots: int = 16) -> None:
        # ``call(fn, *args)`` is the asyncio client's coroutine running an RPC with its policies
        self._client = triton_client
        self._call = call
        self._slots = slots
        self._all: list[Region] = []
        self._count = 0  # regions made or being made: counted before the registration is awaited
        self._free: asyncio.Queue[Region] | None = None

    async def _new(self, nbytes: int) -> Region:
        region = Region.create(nbytes)
        self._all.append(region)
        try:
            await self._call(self._client.register_system_shared_memory, region.name, region.key, region.size)
        except BaseException:
            self._all.remove(region)
            self._count -= 1
            region.destroy()
            raise
        return region

    async def _drop(self, region: Region) -> None:
        self._all.remove(region)
        self._count -= 1
        try:
            await self._call(self._client.unregister_system_shared_memory, region.name)
        except Exception as exc:
            log.warning("could not unregister shared memory %s: %s", region.name, exc)
        finally:
            region.destroy()

    async def acquire(self, nbytes: int) -> Region:
        if self._free is None:
            self._free = asyncio.Queue()
        if self._free.empty() and self._count < self._slots:
            self._count += 1
            return await self._new(nbytes)
        region = await self._free.get()
        if region.size < nbytes:
            await self._drop(region)
            self._count += 1
            return await self._new(nbytes)
        return region

    def release(self, region: Region) -> None:
        if self._free is not None and region in self._all:
            self._free.put_nowait(region)

    async def close(self) -> None:
        for region in list(self._all):
            await self._drop(region)
