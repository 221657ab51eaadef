"""The tune's decision rule on synthetic repeats (no server): a change only beyond the noise."""

from __future__ import annotations

import pytest

from clients.tune import Candidate, CandidateResult, Constraint, Point
from clients.tune.decision import decide

DEFAULTS = Candidate.defaults()  # 2 instances x 2 threads
DOUBLE = Candidate(4, 2, 8, 0, 0)  # twice the instances
SMALL = Candidate(1, 2, 8, 0, 0)  # half
SLO = Constraint(slo_p99_ms=2000)

# issue 25: the defaults' 5.988 req/s against the "best" 5.994, on 7 real 720p images
DEFAULT_THROUGHPUT = (5.95, 6.02, 5.99, 5.97, 6.01)
DEFAULT_P99 = (1310.0, 1295.0, 1330.0, 1302.0, 1318.0)


def result(candidate: Candidate, throughput, p99) -> CandidateResult:
    mean = sum(throughput) / len(throughput)
    p99_mean = sum(p99) / len(p99)
    point = Point(8, mean, p99_mean / 2, p99_mean, 0, 1.5, True, tuple(throughput), tuple(p99))
    return CandidateResult(candidate, (point,), seconds=30.0)


def defaults() -> CandidateResult:
    return result(DEFAULTS, DEFAULT_THROUGHPUT, DEFAULT_P99)


def test_a_candidate_equal_within_the_noise_keeps_the_defaults():
    base = defaults()
    noise = result(DOUBLE, (5.98, 6.03, 5.97, 6.00, 6.01), (1340.0, 1301.0, 1335.0, 1322.0, 1329.0))
    assert noise.best_point(SLO).throughput > base.best_point(SLO).throughput  # the leader, by a hair
    decision = decide([base, noise], base, SLO)
    assert decision.keep_defaults and decision.recommended is None
    assert decision.leader is noise
    assert decision.reason.startswith("keep the defaults") and "within the noise" in decision.reason
    assert "6.00 ± 0.03 req/s" in decision.reason  # the leader's figures carry their interval
    slow = result(SMALL, (5.01, 5.05, 4.98, 5.02, 5.00), DEFAULT_P99)
    behind = decide([base, slow], base, SLO)
    assert behind.keep_defaults and behind.leader is base
    assert behind.reason.startswith("keep the defaults: they rank first at 5.99 ± 0.04 req/s")


def test_a_clearly_faster_candidate_is_recommended():
    base = defaults()
    fast = result(DOUBLE, (7.02, 7.10, 6.96, 7.05, 7.01), (1150.0, 1170.0, 1145.0, 1160.0, 1152.0))
    decision = decide([base, fast], base, SLO)
    assert decision.recommended is fast
    (comparison,) = decision.comparisons
    assert comparison.better and not comparison.worse
    assert comparison.throughput.diff == pytest.approx(1.04, abs=1e-9)


def test_faster_but_a_significantly_worse_p99_is_not_recommended():
    base = defaults()
    late = result(DOUBLE, (7.02, 7.10, 6.96, 7.05, 7.01), (1590.0, 1620.0, 1575.0, 1610.0, 1600.0))
    decision = decide([base, late], base, SLO)
    assert decision.keep_defaults
    assert decision.comparisons[0].better and decision.comparisons[0].worse
    assert "its p99 is significantly worse" in decision.reason


def test_of_two_faster_candidates_within_each_others_noise_the_one_with_fewer_cores_wins():
    base = defaults()
    big = result(DOUBLE, (7.06, 7.12, 6.98, 7.08, 7.03), (1150.0, 1170.0, 1145.0, 1160.0, 1152.0))
    small = result(SMALL, (7.02, 7.10, 6.96, 7.05, 7.01), (1155.0, 1168.0, 1150.0, 1161.0, 1158.0))
    decision = decide([base, big, small], base, SLO)
    assert decision.leader is big and decision.recommended is small


def test_the_better_test_is_corrected_for_the_candidates_compared():
    base = defaults()
    # +0.04 req/s (t = 2.3): significant against the defaults alone, not once 8 candidates were compared
    edge = result(DOUBLE, (6.00, 6.05, 6.02, 6.01, 6.04), DEFAULT_P99)
    assert decide([base, edge], base, SLO).recommended is edge
    others = [
        result(Candidate(1, 1, b, 0, d), DEFAULT_THROUGHPUT, DEFAULT_P99) for b in (4, 8) for d in (0, 1, 2)
    ]
    others.append(result(Candidate(4, 1, 8, 0, 0), DEFAULT_THROUGHPUT, DEFAULT_P99))
    decision = decide([base, edge, *others], base, SLO)
    assert decision.alpha == pytest.approx(0.05 / 8)
    assert decision.keep_defaults


def test_with_only_a_minimum_throughput_a_significantly_lower_p99_is_the_gain():
    floor = Constraint(min_throughput=5)
    base = defaults()
    quicker = result(DOUBLE, DEFAULT_THROUGHPUT, (1105.0, 1120.0, 1098.0, 1110.0, 1116.0))
    assert decide([base, quicker], base, floor).recommended is quicker
    slower = result(DOUBLE, (5.61, 5.66, 5.58, 5.63, 5.60), (1105.0, 1120.0, 1098.0, 1110.0, 1116.0))
    assert "its throughput is significantly worse" in decide([base, slower], base, floor).reason


def test_defaults_that_miss_the_constraint_give_way_to_a_candidate_that_meets_it():
    tight = Constraint(slo_p99_ms=1250)
    base = defaults()
    fast = result(DOUBLE, (7.02, 7.10, 6.96, 7.05, 7.01), (1150.0, 1170.0, 1145.0, 1160.0, 1152.0))
    assert decide([base, fast], base, tight).recommended is fast
    assert decide([base], base, Constraint(slo_p99_ms=10)).reason.startswith("no candidate met")
