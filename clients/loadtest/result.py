"""What a load test measured: one :class:`StepResult` per concurrency level (or request rate)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from clients.loadtest.histogram import LatencyHistogram, Tail
from clients.loadtest.server_stats import ServerSplit
from clients.loadtest.stats import Latency


@dataclass(frozen=True)
class StreamStat:
    """One camera stream over the measured span; milliseconds from each frame's schedule."""

    stream: int
    sent: int
    answered: int
    late: int
    dropped: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class StreamsSummary:
    """Streams mode, the measured span: frames of every stream, latency from each frame's
    scheduled send time (HDR histograms merged over streams and worker processes), and the same
    from the actual send (what a harness blind to its own lateness would report). Each count is
    taken when it happens: a frame sent in one window and answered in the next is sent in the one
    and answered (or late) in the other, so over a span answered can exceed sent."""

    streams: int
    fps: float
    deadline_ms: float
    sent: int
    answered: int
    late: int
    dropped: int
    errors: int
    latency: Tail
    from_send: Tail
    per_stream: tuple[StreamStat, ...]

    @classmethod
    def of(cls, records, streams: int, fps: float, deadline_ms: float) -> StreamsSummary:
        """From the worker ``Records`` of the measured span, merged over processes."""
        counts = records.streams
        per_stream = []
        for stream in range(streams):
            c = counts.get(stream)
            if c is None:
                per_stream.append(StreamStat(stream, 0, 0, 0, 0, 0, *(3 * [float("nan")])))
                continue
            t = c.latency.tail()
            counted = (c.sent, c.answered, c.late, c.dropped, c.errors)
            per_stream.append(StreamStat(stream, *counted, t.p50, t.p99, t.max))
        return cls(
            streams=streams,
            fps=fps,
            deadline_ms=deadline_ms,
            sent=sum(s.sent for s in per_stream),
            answered=sum(s.answered for s in per_stream),
            late=sum(s.late for s in per_stream),
            dropped=sum(s.dropped for s in per_stream),
            errors=sum(s.errors for s in per_stream),
            latency=(records.from_schedule or LatencyHistogram()).tail(),
            from_send=(records.from_send or LatencyHistogram()).tail(),
            per_stream=tuple(per_stream),
        )


@dataclass(frozen=True)
class StepResult:
    mode: str  # "concurrency" | "rate"
    concurrency: int  # closed-loop requests in flight; rate mode: the in-flight cap
    target_rate: float | None  # rate mode: requests/s asked for
    windows: int  # measurement windows run
    stable: bool  # the last windows agreed within the tolerance (else the cap was hit)
    duration_s: float  # measured span (the last `stable_windows` windows)
    successes: int  # measured span
    throughput: float  # successful requests (units) per second over the measured span
    latency: Latency  # milliseconds, successful requests of the measured span
    errors: dict[str, int]  # gRPC status -> count, measured span
    dropped: int  # rate mode: arrivals not sent because the in-flight cap was reached
    max_send_lag_ms: float  # rate mode: worst lateness of a send behind its schedule
    server: dict[str, ServerSplit]  # per model, deltas over the measured span
    client_successes_total: int  # whole step, warm-up and drain included
    client_errors_total: int
    server_successes_total: dict[str, int]  # per model, idle-to-idle delta over the whole step
    harness_cpu_ms_per_request: float  # CPU of the load workers per completed request
    harness_cpu_share: float  # worker CPU seconds / (wall seconds x cores): the harness's footprint
    networks: tuple[str, ...] = ()  # the network models among `server` (an ensemble's own included)
    streams: StreamsSummary | None = None  # streams mode (`concurrency` is then the stream count)

    @property
    def little_concurrency(self) -> float:
        """Throughput x mean latency: the requests in flight that Little's law infers."""
        return self.throughput * self.latency.avg / 1e3

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def held(self, slo_p99_ms: float) -> bool:
        """Met the p99 SLO with every request answered: no error, nothing dropped."""
        return self.latency.p99 <= slo_p99_ms and self.error_count == 0 and self.dropped == 0

    def network_split(self) -> ServerSplit | None:
        """The split to show: the costliest network model (the one taking ``images``), else the first."""
        networks = [self.server[m] for m in self.networks if m in self.server]
        if networks:
            return max(networks, key=lambda s: s.compute_infer_ms)
        return next(iter(self.server.values()), None)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["little_concurrency"] = self.little_concurrency
        return _finite(data)


@dataclass(frozen=True)
class LoadTestResult:
    url: str
    models: tuple[str, ...]
    mode: str
    inputs: str  # what the frames were
    options: dict
    machine: dict
    steps: list[StepResult] = field(default_factory=list)
    capacity: dict | None = None  # --find-capacity: clients.loadtest.capacity.Capacity.to_dict()

    def slo_missed(self, slo_p99_ms: float | None, scope: str = "any") -> list[StepResult]:
        """Steps that miss the p99 SLO: any step (``any``) or the last one (``last``).

        A step with no successful request misses it (its p99 is undefined).
        """
        if slo_p99_ms is None or not self.steps:
            return []
        steps = self.steps if scope == "any" else self.steps[-1:]
        return [s for s in steps if not (s.latency.p99 <= slo_p99_ms)]

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "models": list(self.models),
            "mode": self.mode,
            "inputs": self.inputs,
            "options": self.options,
            "machine": self.machine,
            "steps": [s.to_dict() for s in self.steps],
            **({"capacity": _finite(self.capacity)} if self.capacity is not None else {}),
        }


def _finite(value):
    """JSON has no NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
