"""Intervals of `percept tune`'s repeated measurements: Student t on the repeats, Welch on a difference.

The unit of repetition is one load step (warm-up + one window) on the candidate's server: the
requests inside a window are not independent (they share batches and, closed loop, wait on each
other), the repeats are, so the intervals are over the repeats' figures, not over requests. With
the few repeats a tune can afford (3-5), a t-interval is the right tool: a bootstrap of 3-5 values
has too few distinct resamples and covers the mean well below its nominal level.

numpy only (scipy is not a dependency of the client): the t distribution's CDF is integrated in
the angle variable, where it is a bounded, smooth integrand, and inverted by bisection.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # of the intervals shown
ALPHA = 0.05  # the decision's default significance level (clients.tune.decision)
SIMPSON_HALF_STEPS = 256  # the integrand is smooth and bounded: 513 points give ~1e-10


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` >= 1 (non-integer allowed, as Welch's is).

    With x = sqrt(df) tan(theta) the density becomes c cos(theta)^(df-1) on [0, pi/2), so
    P(0 <= T <= t) = c * integral from 0 to atan(t / sqrt(df)) of cos^(df-1), c = G((df+1)/2) /
    (sqrt(pi) G(df/2)); Simpson's rule on that bounded integrand.
    """
    if df < 1:
        raise ValueError(f"t_cdf needs df >= 1, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    # beyond 40/sqrt(df) the integrand is below exp(-700) of its peak: the grid stays on the mass
    theta = min(math.atan(abs(t) / math.sqrt(df)), 40 / math.sqrt(df))
    grid = np.linspace(0.0, theta, 2 * SIMPSON_HALF_STEPS + 1)
    values = np.cos(grid) ** (df - 1)
    h = theta / (2 * SIMPSON_HALF_STEPS)
    simpson = h / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum())
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(math.pi)
    half = min(0.5, c * float(simpson))
    return 0.5 + half if t >= 0 else 0.5 - half


@functools.lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (0 < q < 1)."""
    if not 0 < q < 1:
        raise ValueError(f"quantile level must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1 - q, df)
    low, high = 0.0, math.pi / 2  # bisect on the angle: bounded, whatever the tail
    for _ in range(60):
        mid = (low + high) / 2
        if t_cdf(math.sqrt(df) * math.tan(mid), df) < q:
            low = mid
        else:
            high = mid
    return math.sqrt(df) * math.tan((low + high) / 2)


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided interval half-width (NaN when fewer than two values)."""

    mean: float
    half: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def text(self, digits: int = 1) -> str:
        """``5.99 ± 0.04`` (the mean alone when there is no interval)."""
        if math.isnan(self.half):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def mean_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean of ``values`` ± the Student t half-width at ``confidence`` (two-sided)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, 0)
    if x.size < 2:
        return Interval(float(x.mean()), math.nan, 1)
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    half = t_quantile(1 - (1 - confidence) / 2, x.size - 1) * se
    return Interval(float(x.mean()), half, int(x.size))


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with Welch's standard error and degrees of freedom."""

    diff: float
    se: float
    df: float

    def upper(self, alpha: float) -> float:
        """One-sided upper bound at level 1 - alpha: the difference is below it with that confidence."""
        return self.diff + self._t(alpha) * self.se

    def lower(self, alpha: float) -> float:
        """One-sided lower bound at level 1 - alpha."""
        return self.diff - self._t(alpha) * self.se

    def _t(self, alpha: float) -> float:
        if math.isnan(self.se):
            return math.nan
        if self.se == 0:  # identical repeats on both sides: the difference is exact
            return 0.0
        return t_quantile(1 - alpha, self.df)


def welch(a, b) -> Difference:
    """mean(a) - mean(b) of two independent samples with unequal variances (NaN se with < 2 each)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(x.mean() - y.mean()) if x.size and y.size else math.nan
    if x.size < 2 or y.size < 2:
        return Difference(diff, math.nan, math.nan)
    vx, vy = float(x.var(ddof=1)) / x.size, float(y.var(ddof=1)) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return Difference(diff, 0.0, math.inf)
    df = (vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1))
    return Difference(diff, se, max(1.0, df))
