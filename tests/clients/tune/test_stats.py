"""The interval maths of the tune's repeats against published t-table values and hand-computed cases."""

from __future__ import annotations

import math

import pytest

from clients.tune.stats import mean_interval, t_cdf, t_quantile, welch

# two-sided 95 %, one-sided 95 %, 99.5 %: the values every t table prints (df 1 is the Cauchy)
T_TABLE = [
    (0.975, 1, 12.7062),
    (0.975, 2, 4.3027),
    (0.975, 4, 2.7764),
    (0.95, 10, 1.8125),
    (0.995, 30, 2.7500),
    (0.975, 1e6, 1.9600),  # -> the normal's
]


@pytest.mark.parametrize(("q", "df", "expected"), T_TABLE)
def test_t_quantiles_match_the_table(q, df, expected):
    assert t_quantile(q, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(1 - q, df) == pytest.approx(-expected, abs=5e-4)


def test_the_t_cdf_has_the_closed_forms_of_one_and_two_degrees_of_freedom():
    for t in (-3.0, -0.4, 0.0, 1.0, 7.5):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-9)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-9)
    assert t_cdf(t_quantile(0.9, 3.7), 3.7) == pytest.approx(0.9, abs=1e-9)  # a Welch-like df


def test_the_mean_interval_is_the_student_t_half_width():
    interval = mean_interval([10.0, 12.0, 14.0])  # s = 2, n = 3: 4.3027 * 2 / sqrt(3)
    assert (interval.mean, interval.n) == (12.0, 3)
    assert interval.half == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-5)
    assert interval.text(2) == "12.00 ± 4.97"
    single = mean_interval([5.0])
    assert math.isnan(single.half) and single.text(2) == "5.00"


def test_welch_has_the_hand_computed_difference_error_and_degrees_of_freedom():
    d = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0])
    # var/n: 1.6667/4 = 0.41667 and 4/3 = 1.33333; df = 1.75^2 / (0.41667^2/3 + 1.33333^2/2)
    assert d.diff == -1.5 and d.se == pytest.approx(math.sqrt(1.75))
    assert d.df == pytest.approx(3.2347, abs=1e-4)
    assert d.upper(0.05) == pytest.approx(-1.5 + t_quantile(0.95, d.df) * math.sqrt(1.75))
    exact = welch([3.0, 3.0], [1.0, 1.0])  # no spread at all: the difference is exact
    assert exact.lower(0.05) == 2.0
    assert math.isnan(welch([3.0], [1.0, 2.0]).lower(0.05))  # one repeat: no interval, never significant
