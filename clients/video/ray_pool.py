"""The Ray side of `percept video --engine ray`: joining (or starting) the cluster, and the worker
actor that runs units (clients.video.units) with its own backend: its own Triton client channel,
or ONNX Runtime in the actor. The driver that hands units out is clients.video.ray_engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from clients.video.backends import make_backend
from clients.video.options import VideoOptions
from clients.video.sources import InputSource
from clients.video.units import Unit, run_unit
from serving.errors import MissingDependencyError, SpecError

log = logging.getLogger(__name__)

WORKER_START_TIMEOUT_S = 120.0  # no worker up by then: the cluster has no room for one
PROBE_TIMEOUT_S = 5.0  # a TCP connect to the Ray address before ray.init (which waits minutes)


class EngineError(SpecError):
    """The Ray engine cannot run (cluster unreachable, no room for a worker): one line, exit 1."""


class Frames:
    """What InputRun calls a progress bar: in a worker it only counts the frames written."""

    def __init__(self) -> None:
        self.n = 0

    def open(self, *_args) -> None:
        pass

    def advance(self, _slot: int) -> None:
        self.n += 1

    def close(self, _slot: int) -> None:
        pass


class UnitWorker:
    """One Ray actor: a backend made on first use and kept for every unit it runs, one at a time."""

    def __init__(self, options: VideoOptions) -> None:
        import cv2

        cv2.setNumThreads(options.opencv_threads)  # the actor's process is the run's, as run_video's
        self.options = options
        self.backend = None
        self.frames = Frames()

    async def ready(self) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address()}

    async def run(self, source: InputSource, unit: Unit, attempt: int) -> dict:
        o = self.options
        if self.backend is None:
            self.backend = make_backend(o.backend, o.client, o.fusion_model, o.onnx, o.fusion_onnx)
        self.frames = Frames()
        r = await run_unit(source, unit, attempt, o, self.backend, self.frames)
        return {"status": r.status, "frames": r.frames, "message": r.message, "latencies_ms": r.latencies_ms}

    async def progress(self) -> int:
        return self.frames.n

    async def close(self) -> None:
        if self.backend is not None:
            await self.backend.close()


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray") from exc
    return ray


def _probe(address: str) -> None:
    """Fail in seconds, naming the address, where ray.init would wait minutes for a GCS."""
    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise EngineError(f"--ray-address {address!r}: expected auto, host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise EngineError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc}") from exc


QUIET = {"logging_level": logging.ERROR, "log_to_driver": False}  # errors reach the driver as results
LOCAL_START_TRIES = 3  # ray.init gives a new raylet a fixed 30 s to register: a loaded host can miss it


def start_local(num_cpus: int) -> None:
    """A local Ray runtime on this machine with ``num_cpus`` CPUs and no dashboard."""
    ray = import_ray()
    for attempt in range(1, LOCAL_START_TRIES + 1):
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **QUIET)
            return
        except Exception as exc:  # ray.init raises a bare Exception when the raylet is late
            with contextlib.suppress(Exception):
                ray.shutdown()
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt == LOCAL_START_TRIES:
                raise EngineError(f"cannot start a local Ray runtime ({attempt} tries): {why}") from exc
            log.warning("starting a local Ray runtime failed (%s); trying again", why)


def connect(options: VideoOptions) -> bool:
    """Join the cluster of --ray-address, or start a local runtime; True when this call started or
    joined it (and so shuts it down), False when the process already had one (a test, a notebook)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    r = options.ray
    if r.address is None:
        start_local(max(1, round(r.workers * r.num_cpus)))
        return True
    if r.address != "auto":
        _probe(r.address)
    try:
        ray.init(address=r.address, **QUIET)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise EngineError(f"cannot reach the Ray cluster at {r.address}: {str(exc).splitlines()[0]}") from exc
    return True


@dataclass
class Slot:
    actor: Any
    ready: Any  # the ObjectRef of actor.ready() until it resolved
    info: dict = field(default_factory=dict)
    busy: tuple | None = None  # (ref, unit, attempt)
