"""A load-generating process: its own gRPC client, threads, pre-built inputs; driven over a pipe.

Commands (tuples on the pipe) and replies:
``("start", StepPlan)`` -> ``"started"``; ``("collect",)`` -> :class:`Records` completed since the
last collect; ``("stop",)`` -> stops sending, waits for what is in flight, replies the remaining
:class:`Records` (with the process's CPU seconds for the step); ``("exit",)`` -> closes and returns.
The process replies ``"ready"`` once its client and inputs are set up, or ``("error", message)``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from clients.loadtest.payload import Payload
from clients.shm import SharedMemoryInputs

log = logging.getLogger(__name__)

_ERROR_PAUSE_S = 0.005


@dataclass(frozen=True)
class WorkerJob:
    index: int
    url: str
    models: tuple[str, ...]
    payloads: dict[str, list[Payload]]  # per model, one payload per frame
    shared_memory: str
    request_timeout_s: float
    seed: int


@dataclass(frozen=True)
class StepPlan:
    mode: str  # "concurrency" | "rate"
    threads: int = 0  # concurrency mode: closed-loop threads in this process
    rate: float = 0.0  # rate mode: this process's share of the request rate (1/s)
    arrivals: str = "constant"
    max_outstanding: int = 64


@dataclass
class Records:
    latencies_s: list[float] = field(default_factory=list)  # successful units only
    errors: Counter = field(default_factory=Counter)  # gRPC status name -> count
    dropped: int = 0  # rate mode: arrivals skipped because max_outstanding were in flight
    cpu_s: float = 0.0  # this process's user+system CPU seconds (filled on stop)
    max_send_lag_s: float = 0.0  # rate mode: worst delay of a send behind its schedule

    def merge(self, other: Records) -> None:
        self.latencies_s.extend(other.latencies_s)
        self.errors.update(other.errors)
        self.dropped += other.dropped
        self.cpu_s += other.cpu_s
        self.max_send_lag_s = max(self.max_send_lag_s, other.max_send_lag_s)

    @property
    def completed(self) -> int:
        return len(self.latencies_s) + sum(self.errors.values())


def status_name(exc: Exception) -> str:
    """The gRPC status of a tritonclient error, e.g. ``UNAVAILABLE`` (never the message text)."""
    status = getattr(exc, "status", None)
    text = status() if callable(status) else None
    return str(text).removeprefix("StatusCode.") if text else "UNKNOWN"


class _Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records = Records()

    def ok(self, latency_s: float) -> None:
        with self._lock:
            self._records.latencies_s.append(latency_s)

    def error(self, status: str) -> None:
        with self._lock:
            self._records.errors[status] += 1

    def drop(self) -> None:
        with self._lock:
            self._records.dropped += 1

    def lag(self, lag_s: float) -> None:
        with self._lock:
            self._records.max_send_lag_s = max(self._records.max_send_lag_s, lag_s)

    def take(self) -> Records:
        with self._lock:
            records, self._records = self._records, Records()
        return records


class _Inputs:
    """tritonclient InferInput lists built once per (model, frame) and reused by every request.

    With system shared memory every array is placed once, back to back in one registered region
    (clients.shm, the client's own), which lives until ``close``.
    """

    def __init__(self, job: WorkerJob, client) -> None:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import np_to_triton_dtype

        self.per_model: dict[str, list[list]] = {}
        placed: tuple[list, list[np.ndarray]] = ([], [])
        for model, payloads in job.payloads.items():
            lists = []
            for payload in payloads:
                inputs = []
                for name, array in payload:
                    inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                    if job.shared_memory == "system":
                        placed[0].append(inp)
                        placed[1].append(array)
                    else:
                        inp.set_data_from_numpy(array)
                    inputs.append(inp)
                lists.append(inputs)
            self.per_model[model] = lists
        self._shm: SharedMemoryInputs | None = None
        if job.shared_memory == "system":
            self._shm = SharedMemoryInputs(client, _plain_call)
            # placed once and never rebound: nothing else needs the region's lock
            self._shm.bind(*placed).release()

    def close(self) -> None:
        if self._shm is not None:  # unregisters, and frees the region even when the server is gone
            self._shm.close()


class _Load:
    """The threads of one step."""

    def __init__(self, job: WorkerJob, client, inputs: _Inputs, plan: StepPlan) -> None:
        self.job, self.client, self.inputs, self.plan = job, client, inputs, plan
        self.recorder = _Recorder()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.in_flight = 0
        self.cond = threading.Condition()
        self.cpu_start = _cpu_seconds()

    def start(self) -> None:
        if self.plan.mode == "concurrency":
            for t in range(self.plan.threads):
                thread = threading.Thread(target=self._closed_loop, args=(t,), daemon=True)
                self.threads.append(thread)
        else:
            self.threads.append(threading.Thread(target=self._open_loop, daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self) -> Records:
        self.stop_event.set()
        for thread in self.threads:
            thread.join()
        with self.cond:
            self.cond.wait_for(lambda: self.in_flight == 0, timeout=self.job.request_timeout_s + 5)
        records = self.recorder.take()
        records.cpu_s = _cpu_seconds() - self.cpu_start
        return records

    def _closed_loop(self, thread_index: int) -> None:
        from tritonclient.utils import InferenceServerException

        n_frames = len(next(iter(self.inputs.per_model.values())))
        frame = (thread_index * 7 + self.job.index * 13) % n_frames
        timeout = self.job.request_timeout_s
        while not self.stop_event.is_set():
            start = time.perf_counter()
            status = None
            for model in self.job.models:
                try:
                    self.client.infer(model, self.inputs.per_model[model][frame], client_timeout=timeout)
                except InferenceServerException as exc:
                    status = status_name(exc)
                    break
            if status is None:
                self.recorder.ok(time.perf_counter() - start)
            else:
                self.recorder.error(status)
                # a refused request returns at once: pause so that a down server is not hammered
                self.stop_event.wait(_ERROR_PAUSE_S)
            frame = (frame + 1) % n_frames

    def _open_loop(self) -> None:
        model = self.job.models[0]
        per_frame = self.inputs.per_model[model]
        rng = random.Random(self.job.seed * 1009 + self.job.index)
        mean_gap = 1.0 / self.plan.rate
        next_time = time.perf_counter()
        frame = 0
        while not self.stop_event.is_set():
            gap = rng.expovariate(1.0 / mean_gap) if self.plan.arrivals == "poisson" else mean_gap
            next_time += gap
            delay = next_time - time.perf_counter()
            if delay > 0 and self.stop_event.wait(delay):
                break
            self.recorder.lag(max(0.0, -delay))
            with self.cond:
                if self.in_flight >= self.plan.max_outstanding:
                    self.recorder.drop()
                    continue
                self.in_flight += 1
            start = time.perf_counter()
            self.client.async_infer(
                model,
                per_frame[frame],
                callback=lambda result, error, start=start: self._done(start, error),
                client_timeout=self.job.request_timeout_s,
            )
            frame = (frame + 1) % len(per_frame)

    def _done(self, start: float, error) -> None:
        if error is None:
            self.recorder.ok(time.perf_counter() - start)
        else:
            self.recorder.error(status_name(error))
        with self.cond:
            self.in_flight -= 1
            self.cond.notify_all()


def _plain_call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def worker_main(job: WorkerJob, conn) -> None:
    """Entry point of a load-generating process (multiprocessing target)."""
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(job.url)
        inputs = _Inputs(job, client)
    except Exception as exc:  # reported to the parent, which raises it as one clear error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send("ready")
    load: _Load | None = None
    try:
        while True:
            command = conn.recv()
            if command[0] == "start":
                load = _Load(job, client, inputs, command[1])
                load.start()
                conn.send("started")
            elif command[0] == "collect":
                conn.send(load.recorder.take() if load else Records())
            elif command[0] == "stop":
                conn.send(load.stop() if load else Records())
                load = None
            elif command[0] == "exit":
                break
    finally:
        if load is not None:
            load.stop()
        inputs.close()
        client.close()
