"""Client CPU by stage: CPU seconds (``time.thread_time`` of the thread doing the work) summed per
named stage, and the process's own CPU (``time.process_time``: every thread, user + system) over
the same span, so that what no stage claims (gRPC's threads, OpenCV's worker threads, the
interpreter) shows as ``other`` rather than disappearing.

`percept video` reports it per frame in summary.json (``cpu_ms_per_frame``): on a host where the
client shares the cores with the server, each of these milliseconds is taken from the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# `percept video`'s stages, in the order a frame goes through them (clients.video.run): decode (the
# decoder thread: read + BGR->RGB), request (letterbox with --raw, request tensors), send_receive
# (the event loop's CPU not in another stage: gRPC calls, protobuf in and out, the window),
# postprocess (reply tensors -> result), jsonl (the record and its line), dense (--save-dense
# .npz), annotate (the drawn frame), encode (the MP4 writer)
STAGES = ("decode", "request", "send_receive", "postprocess", "jsonl", "dense", "annotate", "encode")
OTHER, TOTAL = "other", "total"
# the event loop's own CPU, less its stages, is send_receive
LOOP_STAGES = ("request", "postprocess")


class StageCpu:
    """Thread-safe per-stage CPU sums of one run; ``begin`` / ``end`` on the thread of the event loop
    bracket the span (its CPU and the process's)."""

    def __init__(self) -> None:
        self._seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()
        self._start: tuple[float, float] | None = None
        self._span: tuple[float, float] = (0.0, 0.0)  # (process CPU, event-loop thread CPU)

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] += seconds

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """CPU of the calling thread inside the block, added to ``name``."""
        t0 = time.thread_time()
        try:
            yield
        finally:
            self.add(name, time.thread_time() - t0)

    def begin(self) -> None:
        self._start = (time.process_time(), time.thread_time())

    def end(self) -> None:
        if self._start is not None:
            self._span = (time.process_time() - self._start[0], time.thread_time() - self._start[1])
            self._start = None

    def per_frame_ms(self, frames: int) -> dict[str, float] | None:
        """ms of CPU per frame by stage, ``other`` (the process's CPU no stage claims) and ``total``
        (the process's CPU over the span); None before a frame was processed."""
        if frames <= 0:
            return None
        process, loop = self._span
        with self._lock:
            seconds = dict(self._seconds)
        seconds["send_receive"] = max(0.0, loop - sum(seconds[s] for s in LOOP_STAGES))
        seconds[OTHER] = max(0.0, process - sum(seconds.values()))
        seconds[TOTAL] = process
        return {k: round(1000.0 * v / frames, 3) for k, v in seconds.items()}


def describe(cpu_ms: dict[str, float]) -> str:
    """One line: ``client CPU per frame 31.2 ms: decode 1.9, annotate 7.1, ...`` (stages over 0.05 ms)."""
    parts = [f"{k} {v:.1f}" for k, v in cpu_ms.items() if k != TOTAL and v >= 0.05]
    return f"client CPU per frame {cpu_ms[TOTAL]:.1f} ms: " + ", ".join(parts)
