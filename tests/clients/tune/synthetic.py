"""A synthetic stand-in for measuring a candidate (no server): known figures, three tight repeats."""

from __future__ import annotations

from collections.abc import Callable

from clients.tune import Candidate, CandidateResult, Point

SPREAD = (0.99, 1.0, 1.01)  # three repeats, +-1 %


def cost(c: Candidate) -> tuple[float, float]:
    """Throughput and p99 of a separable synthetic model: best at 2 instances x 1 thread, batch 8."""
    throughput = 100 - 20 * abs(c.instances - 2) - 10 * abs(c.threads - 1) + (5 if c.max_batch == 8 else 0)
    return throughput, 1000 / throughput


def measure_with(
    seconds: float, figures: Callable[[Candidate], tuple[float, float]] = cost, calls: list | None = None
) -> Callable[[Candidate], CandidateResult]:
    """A measure for run_tune: ``figures(c)`` spread over three repeats; ``calls`` records the order."""

    def measure(c: Candidate) -> CandidateResult:
        throughput, p99 = figures(c)
        thr, tail = tuple(throughput * f for f in SPREAD), tuple(p99 / f for f in SPREAD)
        point = Point(4, throughput, p99 / 2, sum(tail) / 3, 0, 1.0, True, thr, tail)
        if calls is not None:
            calls.append(c)
        return CandidateResult(c, (point,), seconds, repeat_seconds=seconds / 2)

    return measure
