"""Client-side figures of a window or step: throughput, latency percentiles, stability."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Latency:
    """Milliseconds over the successful requests."""

    avg: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, latencies_s: list[float]) -> Latency:
        if not latencies_s:
            nan = float("nan")
            return cls(nan, nan, nan, nan, nan, nan)
        ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
        p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
        return cls(float(ms.mean()), float(p50), float(p90), float(p95), float(p99), float(ms.max()))

    @classmethod
    def of_tail(cls, tail) -> Latency:
        """From an HDR histogram's ``Tail`` (streams mode)."""
        return cls(tail.avg, tail.p50, tail.p90, tail.p95, tail.p99, tail.max)


@dataclass(frozen=True)
class Window:
    duration_s: float
    successes: int
    errors: int
    throughput: float  # successful requests per second
    p95_ms: float


def window_of(latencies_s: list[float], errors: int, duration_s: float) -> Window:
    p95 = float(np.percentile(np.asarray(latencies_s) * 1e3, 95)) if latencies_s else float("nan")
    return Window(duration_s, len(latencies_s), errors, len(latencies_s) / duration_s, p95)


def is_stable(windows: list[Window], count: int, tolerance: float) -> bool:
    """The last ``count`` windows agree: throughput and p95 each within ``tolerance`` of their mean."""
    if len(windows) < count:
        return False
    last = windows[-count:]
    for values in ([w.throughput for w in last], [w.p95_ms for w in last]):
        arr = np.asarray(values, dtype=np.float64)
        mean = arr.mean()
        if not np.isfinite(arr).all() or mean <= 0:
            return False
        if np.abs(arr - mean).max() > tolerance * mean:
            return False
    return True
