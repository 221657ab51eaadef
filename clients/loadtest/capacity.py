"""Capacity: the largest load (camera streams) a server holds within a p99 SLO, in few steps.

The search doubles the load from ``start`` until a step misses (or ``limit`` holds), then bisects
between the last step that held and the first that missed. A server of capacity C >= start costs
about ``2 * log2(C / start)`` steps, never more than ``2 * ceil(log2(limit / start)) + 1``.
It assumes what every load curve does: a load that misses the SLO is not held by a larger one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from clients.loadtest.result import LoadTestResult, StepResult
from serving.errors import SpecError


@dataclass(frozen=True)
class Probe:
    value: int
    held: bool


@dataclass(frozen=True)
class Search:
    """What a search found: ``best`` held (0: not even ``start``), ``probes`` in the order run."""

    best: int
    probes: tuple[Probe, ...]
    limit: int

    @property
    def first_missed(self) -> int | None:
        missed = [p.value for p in self.probes if not p.held]
        return min(missed) if missed else None

    @property
    def at_limit(self) -> bool:
        """The limit itself held: the real capacity may be higher."""
        return self.best == self.limit


def largest_held(holds: Callable[[int], bool], start: int = 1, limit: int = 256) -> Search:
    """The largest integer in [start, limit] for which ``holds`` is true, assuming that once it is
    false it stays false: an exponential bracket, then bisection. Each value is tried at most once."""
    if start < 1 or limit < start:
        raise SpecError(f"capacity search needs 1 <= start ({start}) <= limit ({limit})")
    probes: list[Probe] = []

    def probe(value: int) -> bool:
        held = holds(value)
        probes.append(Probe(value, held))
        return held

    if not probe(start):
        return Search(0, tuple(probes), limit)
    good, bad = start, None
    while bad is None and good < limit:
        value = min(2 * good, limit)
        if probe(value):
            good = value
        else:
            bad = value
    while bad is not None and bad - good > 1:
        mid = (good + bad) // 2
        if probe(mid):
            good = mid
        else:
            bad = mid
    return Search(good, tuple(probes), limit)


@dataclass
class Capacity:
    """A capacity search over a load test's steps: the search and every step it ran."""

    slo_p99_ms: float
    search: Search
    steps: dict[int, StepResult] = field(default_factory=dict)

    @property
    def best(self) -> int:
        return self.search.best

    @property
    def best_step(self) -> StepResult | None:
        return self.steps.get(self.best)

    def to_dict(self) -> dict:
        return {
            "slo_p99_ms": self.slo_p99_ms,
            "best": self.best,
            "at_limit": self.search.at_limit,
            "limit": self.search.limit,
            "first_missed": self.search.first_missed,
            "probes": [{"value": p.value, "held": p.held} for p in self.search.probes],
        }


def find_capacity(
    test,
    slo_p99_ms: float,
    start: int = 1,
    limit: int = 256,
    on_step: Callable[[StepResult, bool], None] | None = None,
) -> Capacity:
    """Search an open :class:`~clients.loadtest.runner.LoadTest` (streams mode: the step value is
    the number of streams) for the largest step that holds ``slo_p99_ms`` with nothing failed or
    dropped (``StepResult.held``)."""
    if slo_p99_ms <= 0:
        raise SpecError(f"SLO p99 must be > 0 ms, got {slo_p99_ms}")
    steps: dict[int, StepResult] = {}

    def holds(value: int) -> bool:
        step = test.run_step(value)
        steps[value] = step
        held = step.held(slo_p99_ms)
        if on_step is not None:
            on_step(step, held)
        return held

    search = largest_held(holds, start, limit)
    return Capacity(slo_p99_ms, search, steps)


def capacity_result(test, capacity: Capacity) -> LoadTestResult:
    """The load test's result with the search's steps in load order (the curve) and the capacity."""
    result = replace(test.new_result(), capacity=capacity.to_dict())
    result.steps.extend(capacity.steps[v] for v in sorted(capacity.steps))
    return result
