"""A load-generating process: its own gRPC channel, threads, requests serialized once; driven over a pipe.

Commands (tuples on the pipe) and replies:
``("start", StepPlan)`` -> ``"started"``; ``("collect",)`` -> :class:`Records` completed since the
last collect; ``("stop",)`` -> stops sending, waits for what is in flight, replies the remaining
:class:`Records` (with the process's CPU seconds for the step); ``("exit",)`` -> closes and returns.
The process replies ``"ready"`` once its requests are built and each model answered one of them,
or ``("error", message)``.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from clients._core import triton_client
from clients.loadtest.histogram import LatencyHistogram
from clients.loadtest.payload import Payload
from clients.loadtest.sender import (
    Sender,
    future_status,
    keep_large_buffers_on_heap,
    parse_response,
    prefer_legacy_client_io,
    rpc_status,
    serialized_request,
)
from clients.loadtest.streams import StreamCounts, StreamLoop
from clients.options import ClientOptions
from clients.shm import SharedMemoryInputs
from serving.errors import ClientError

log = logging.getLogger(__name__)

_ERROR_PAUSE_S = 0.005


@dataclass(frozen=True)
class WorkerJob:
    index: int
    connection: ClientOptions  # url, TLS, headers
    models: tuple[str, ...]
    payloads: dict[str, list[Payload]]  # per model, one payload per frame
    shared_memory: str
    request_timeout_s: float
    seed: int


@dataclass(frozen=True)
class StepPlan:
    mode: str  # "concurrency" | "rate" | "streams"
    threads: int = 0  # concurrency mode: closed-loop threads in this process
    rate: float = 0.0  # rate mode: this process's share of the request rate (1/s)
    arrivals: str = "constant"
    max_outstanding: int = 64  # rate mode: this process's in-flight cap; streams mode: per stream
    streams: tuple[int, ...] = ()  # streams mode: the stream ids this process sends
    total_streams: int = 0  # over all processes (the streams' phases)
    fps: float = 0.0
    deadline_s: float = 0.0  # an answer later than this after its schedule is late


@dataclass
class Records:
    latencies_s: list[float] = field(default_factory=list)  # successful units only
    errors: Counter = field(default_factory=Counter)  # gRPC status name -> count
    dropped: int = 0  # rate mode: arrivals skipped because max_outstanding were in flight
    cpu_s: float = 0.0  # this process's user+system CPU seconds (filled on stop)
    max_send_lag_s: float = 0.0  # rate and streams modes: worst delay of a send behind its schedule
    streams: dict[int, StreamCounts] = field(default_factory=dict)  # streams mode, by stream id
    # streams mode, over every stream of the process: latency from each frame's scheduled send
    # time, and (a diagnostic) from its actual send
    from_schedule: LatencyHistogram | None = None
    from_send: LatencyHistogram | None = None

    def merge(self, other: Records) -> None:
        self.latencies_s.extend(other.latencies_s)
        self.errors.update(other.errors)
        self.dropped += other.dropped
        self.cpu_s += other.cpu_s
        self.max_send_lag_s = max(self.max_send_lag_s, other.max_send_lag_s)
        for stream, counts in other.streams.items():
            self.streams.setdefault(stream, StreamCounts()).merge(counts)
        self.from_schedule = _merged(self.from_schedule, other.from_schedule)
        self.from_send = _merged(self.from_send, other.from_send)

    @property
    def completed(self) -> int:
        return len(self.latencies_s) + sum(self.errors.values())


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

    def _stream(self, stream: int) -> StreamCounts:
        counts = self._records.streams.get(stream)
        if counts is None:
            counts = self._records.streams[stream] = StreamCounts()
        return counts

    def stream_sent(self, stream: int) -> None:
        with self._lock:
            self._stream(stream).sent += 1

    def stream_dropped(self, stream: int) -> None:
        with self._lock:
            self._stream(stream).dropped += 1
            self._records.dropped += 1

    def stream_answered(self, stream: int, latency_s: float, from_send_s: float, deadline_s: float) -> None:
        with self._lock:
            counts = self._stream(stream)
            counts.answered += 1
            counts.late += latency_s > deadline_s
            counts.latency.record(latency_s)
            records = self._records
            if records.from_schedule is None or records.from_send is None:
                records.from_schedule, records.from_send = LatencyHistogram(), LatencyHistogram()
            records.from_schedule.record(latency_s)
            records.from_send.record(from_send_s)
            records.latencies_s.append(latency_s)

    def stream_error(self, stream: int, status: str) -> None:
        with self._lock:
            self._stream(stream).errors += 1
            self._records.errors[status] += 1

    def take(self) -> Records:
        with self._lock:
            records, self._records = self._records, Records()
        return records


class _Inputs:
    """One serialized request per (model, frame), built from tritonclient InferInputs and reused by
    every send.

    With system shared memory every array is placed once, back to back in one registered region
    (clients.shm, the client's own), which lives until ``close``; the requests carry only where.
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
        self.requests = {
            model: [serialized_request(model, inputs) for inputs in lists]
            for model, lists in self.per_model.items()
        }

    def check(self, sender: Sender, timeout_s: float) -> None:
        """Each model answers its first request with outputs, or this raises one clear error."""
        import grpc

        for model, requests in self.requests.items():
            try:
                response = parse_response(sender.call(requests[0], timeout_s))
            except grpc.RpcError as exc:
                why = f"{rpc_status(exc)}: {exc.details()}"
                raise ClientError(f"model {model!r} refused a request: {why}") from None
            if not response.outputs:
                raise ClientError(f"model {model!r} answered a request with no outputs")

    def close(self) -> None:
        if self._shm is not None:  # unregisters, and frees the region even when the server is gone
            self._shm.close()


class _Load:
    """The threads of one step."""

    def __init__(self, job: WorkerJob, sender: Sender, inputs: _Inputs, plan: StepPlan) -> None:
        self.job, self.sender, self.plan = job, sender, plan
        self.requests = inputs.requests
        self.recorder = _Recorder()
        self.stop_event = threading.Event()
        self.threads: list = []
        self.in_flight = 0
        self.stream_in_flight: Counter = Counter()
        self.cond = threading.Condition()
        self.cpu_start = _cpu_seconds()

    def start(self) -> None:
        if self.plan.mode == "concurrency":
            for t in range(self.plan.threads):
                thread = threading.Thread(target=self._closed_loop, args=(t,), daemon=True)
                self.threads.append(thread)
        elif self.plan.mode == "streams":
            self.threads.append(StreamLoop(self))
        else:
            self.threads.append(threading.Thread(target=self._open_loop, daemon=True))
        for thread in self.threads:
            thread.start()

    def acquire(self, stream: int) -> bool:
        """A slot for one more frame of ``stream`` (False: it has max_outstanding in flight)."""
        with self.cond:
            if self.stream_in_flight[stream] >= self.plan.max_outstanding:
                return False
            self.stream_in_flight[stream] += 1
            self.in_flight += 1
        return True

    def release(self, stream: int) -> None:
        with self.cond:
            self.stream_in_flight[stream] -= 1
            self.in_flight -= 1
            self.cond.notify_all()

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
        import grpc

        n_frames = len(next(iter(self.requests.values())))
        frame = (thread_index * 7 + self.job.index * 13) % n_frames
        timeout = self.job.request_timeout_s
        while not self.stop_event.is_set():
            start = time.perf_counter()
            status = None
            for model in self.job.models:
                try:
                    self.sender.call(self.requests[model][frame], timeout)
                except grpc.RpcError as exc:
                    status = rpc_status(exc)
                    break
            if status is None:
                self.recorder.ok(time.perf_counter() - start)
            else:
                self.recorder.error(status)
                # a refused request returns at once: pause so that a down server is not hammered
                self.stop_event.wait(_ERROR_PAUSE_S)
            frame = (frame + 1) % n_frames

    def _open_loop(self) -> None:
        per_frame = self.requests[self.job.models[0]]
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
            future = self.sender.future(per_frame[frame], self.job.request_timeout_s)
            future.add_done_callback(lambda f, start=start: self._done(start, f))
            frame = (frame + 1) % len(per_frame)

    def _done(self, start: float, future) -> None:
        status = future_status(future)
        if status is None:
            self.recorder.ok(time.perf_counter() - start)
        else:
            self.recorder.error(status)
        with self.cond:
            self.in_flight -= 1
            self.cond.notify_all()


def _merged(mine: LatencyHistogram | None, other: LatencyHistogram | None) -> LatencyHistogram | None:
    if other is None:
        return mine
    if mine is None:
        mine = LatencyHistogram()
    mine.merge(other)
    return mine


def _plain_call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


def _cpu_seconds() -> float:
    """User + system CPU of every thread of this process (ns resolution, unlike os.times' ticks)."""
    return time.process_time()


def worker_main(job: WorkerJob, conn) -> None:
    """Entry point of a load-generating process (multiprocessing target)."""
    prefer_legacy_client_io()  # before tritonclient starts gRPC in this process
    keep_large_buffers_on_heap()
    try:
        client = triton_client(job.connection)  # shared-memory registration only
        inputs = _Inputs(job, client)
        sender = Sender(job.connection)
        inputs.check(sender, job.request_timeout_s)
        # everything built so far lives as long as the process: take it out of the cyclic garbage
        # collector's reach, whose passes over it (triggered by each request's small objects) were
        # a quarter of this process's perf samples at 10-fps streams
        gc.collect()
        gc.freeze()
    except Exception as exc:  # reported to the parent, which raises it as one clear error
        conn.send(("error", str(exc) if isinstance(exc, ClientError) else f"{type(exc).__name__}: {exc}"))
        return
    conn.send("ready")
    load: _Load | None = None
    try:
        while True:
            command = conn.recv()
            if command[0] == "start":
                load = _Load(job, sender, inputs, command[1])
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
        sender.close()
        client.close()
