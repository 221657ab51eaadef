"""Camera streams: each stream sends its own frame sequence on its own clock, open loop.

Stream ``s`` of ``n`` sends frame ``k`` at ``start + (s / n + k) / fps`` (the streams' phases
spread over one frame period, as unsynchronised cameras would be), whatever happened to its
earlier frames: a late answer never delays the next send. Latency is measured from that
*scheduled* time, so a stall of the server (or of this process) is charged to every frame it
delayed, instead of to the one request a closed-loop client happens to have in flight
(coordinated omission). A stream with ``max_outstanding`` frames in flight drops the next frame
(counted), as a camera with a full queue would.
"""

from __future__ import annotations

import heapq
import threading
import time
from dataclasses import dataclass, field

from clients.loadtest.histogram import STREAM_DIGITS, LatencyHistogram
from clients.loadtest.sender import future_status


@dataclass
class StreamCounts:
    """One stream's frames over a span; ``latency`` measured from each frame's scheduled time."""

    sent: int = 0
    answered: int = 0
    late: int = 0  # answered past the deadline
    dropped: int = 0  # not sent: the stream had max_outstanding frames in flight
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=lambda: LatencyHistogram(STREAM_DIGITS))

    def merge(self, other: StreamCounts) -> None:
        self.sent += other.sent
        self.answered += other.answered
        self.late += other.late
        self.dropped += other.dropped
        self.errors += other.errors
        self.latency.merge(other.latency)


def first_send_times(streams: tuple[int, ...], total: int, fps: float, start: float) -> dict[int, float]:
    """When each stream sends its first frame: phases spread evenly over one frame period."""
    return {s: start + (s / total) / fps for s in streams}


class StreamLoop:
    """One thread sending every stream of this process (a heap of next send times); the answers'
    callbacks run on gRPC's threads. ``load`` is the worker's step: its sender, requests, plan,
    recorder, stop event and in-flight accounting (``acquire``/``release``)."""

    def __init__(self, load) -> None:
        self.load = load
        self.thread = threading.Thread(target=self._run, daemon=True, name="streams")

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()

    def _run(self) -> None:
        load, plan = self.load, self.load.plan
        period = 1.0 / plan.fps
        firsts = first_send_times(plan.streams, plan.total_streams, plan.fps, time.perf_counter() + 0.01)
        heap = [(t, s, 0) for s, t in firsts.items()]
        heapq.heapify(heap)
        while heap and not load.stop_event.is_set():
            scheduled, stream, k = heap[0]
            delay = scheduled - time.perf_counter()
            if delay > 0 and load.stop_event.wait(delay):
                break
            heapq.heapreplace(heap, (scheduled + period, stream, k + 1))
            load.recorder.lag(max(0.0, -delay))
            self._send(stream, k, scheduled)

    def _send(self, stream: int, k: int, scheduled: float) -> None:
        load = self.load
        if not load.acquire(stream):
            load.recorder.stream_dropped(stream)
            return
        requests = load.requests[load.job.models[0]]
        request = requests[(stream * 7 + k) % len(requests)]  # each stream its own sequence
        sent_at = time.perf_counter()
        load.recorder.stream_sent(stream)
        future = load.sender.future(request, load.job.request_timeout_s)
        future.add_done_callback(lambda f: self._done(f, stream, scheduled, sent_at))

    def _done(self, future, stream: int, scheduled: float, sent_at: float) -> None:
        now = time.perf_counter()
        load = self.load
        error = future_status(future)
        if error is None:
            load.recorder.stream_answered(stream, now - scheduled, now - sent_at, load.plan.deadline_s)
        else:
            load.recorder.stream_error(stream, error)
        load.release(stream)
