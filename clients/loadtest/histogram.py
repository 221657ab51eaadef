"""Latency kept in an HDR histogram (HdrHistogram_py): constant memory, percentiles to p99.99
within the histogram's precision, and an encoded form that crosses process pipes and merges
exactly (the workers' histograms add up to the one a single process would have recorded)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.errors import MissingDependencyError

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: far past any request timeout; longer values are clamped
DIGITS = 3  # values within 0.1 % of what was recorded
STREAM_DIGITS = 2  # one stream's own histogram: 1 %, a tenth of the memory (one per stream and window)
TAIL_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9, 99.99)


def _hdr_class():
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError as exc:
        raise MissingDependencyError("hdrhistogram", "client") from exc
    return HdrHistogram


@dataclass(frozen=True)
class Tail:
    """Milliseconds: the percentiles of TAIL_PERCENTILES, mean and max (NaN when empty)."""

    count: int
    avg: float
    p50: float
    p90: float
    p95: float
    p99: float
    p99_9: float
    p99_99: float
    max: float


class LatencyHistogram:
    """Seconds in, milliseconds out. Recording is pure Python (~2 us); the percentiles are read
    with one cumulative sum over the counts (HdrHistogram_py's own scan is pure Python, ~30 ms per
    percentile). Pickles as (digits, sum, HdrHistogram encoding), so a worker process can send it
    through a multiprocessing pipe; ``merge`` adds another one's counts."""

    def __init__(self, digits: int = DIGITS) -> None:
        self.digits = digits
        self._h = _hdr_class()(LOWEST_US, HIGHEST_US, digits)
        self._sum_us = 0  # the exact mean (the histogram's own is of bucket midpoints)

    def record(self, seconds: float) -> None:
        value = min(HIGHEST_US, max(LOWEST_US, round(seconds * 1e6)))
        self._h.record_value(value)
        self._sum_us += value

    def merge(self, other: LatencyHistogram) -> None:
        if other.count:
            self._h.add(other._h)
            self._sum_us += other._sum_us

    @property
    def count(self) -> int:
        return int(self._h.get_total_count())

    def percentiles_ms(self, percentiles: tuple[float, ...]) -> list[float]:
        """The value at each percentile, as HdrHistogram defines it (the highest value equivalent
        to the first bucket whose cumulative count reaches the percentile's share)."""
        h = self._h
        if not self.count:
            return [float("nan")] * len(percentiles)
        cumulative = np.cumsum(np.ctypeslib.as_array(h.counts)[: h.counts_len])
        out = []
        for p in percentiles:
            index = int(np.searchsorted(cumulative, h.get_target_count_at_percentile(p)))
            out.append(h.get_highest_equivalent_value(h.get_value_from_index(index)) / 1e3)
        return out

    def tail(self) -> Tail:
        count = self.count
        if not count:
            nan = float("nan")
            return Tail(0, nan, nan, nan, nan, nan, nan, nan, nan)
        p50, p90, p95, p99, p99_9, p99_99 = self.percentiles_ms(TAIL_PERCENTILES)
        mean = self._sum_us / count / 1e3
        return Tail(count, mean, p50, p90, p95, p99, p99_9, p99_99, self._h.get_max_value() / 1e3)

    def __getstate__(self) -> tuple[int, int, bytes]:
        return self.digits, self._sum_us, self._h.encode() if self.count else b""

    def __setstate__(self, state: tuple[int, int, bytes]) -> None:
        self.digits, self._sum_us, encoded = state
        cls = _hdr_class()
        self._h = cls(LOWEST_US, HIGHEST_US, self.digits)
        if encoded:
            self._h.add(cls.decode(encoded))
