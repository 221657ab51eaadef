"""What a load test measured: one :class:`StepResult` per concurrency level (or request rate)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from clients.loadtest.server_stats import ServerSplit
from clients.loadtest.stats import Latency


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

    @property
    def little_concurrency(self) -> float:
        """Throughput x mean latency: the requests in flight that Little's law infers."""
        return self.throughput * self.latency.avg / 1e3

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

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
