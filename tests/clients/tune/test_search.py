"""The tune's search space, constraint and search order, on a known synthetic cost (no server)."""

from __future__ import annotations

import pytest

from clients.tune import Candidate, Constraint, Point, SearchSpace, TuneOptions, run_tune
from clients.tune.report import pareto
from serving.errors import SpecError
from serving.model_config import RepositoryOptions
from tests.clients.tune.synthetic import measure_with as _measure


def test_the_defaults_candidate_is_the_repository_builders_defaults():
    base, cand = RepositoryOptions(), Candidate.defaults()
    assert cand.repository_options() == base
    assert cand.repo_build_flags() == []
    other = Candidate(1, 3, 4, 2, 500, "fp16")
    opts = other.repository_options()
    assert (opts.network_instances, opts.frame_instances, opts.intra_op_threads) == (1, 1, 3)
    assert opts.batching.max_batch_size == 4 and opts.batching.preferred_batch_sizes == (2,)
    assert opts.batching.max_queue_delay_us == 500
    assert other.repo_build_flags() == [
        "--instances", "1", "--frame-instances", "1", "--threads", "3", "--max-batch-size", "4",
        "--max-queue-delay-us", "500", "--preferred-batch-size", "2",
    ]  # fmt: skip


def test_the_grid_skips_a_preferred_batch_above_the_max_batch_and_limits_to_the_profile():
    space = SearchSpace(
        instances=(1, 2), threads=(1,), max_batch=(2, 8), preferred_batch=(0, 4), queue_delay_us=(0,)
    )
    grid = space.grid()
    assert len(grid) == 2 * 2 * 2 - 2  # (b2, pref 4) is invalid, for both instance counts
    assert all(c.preferred_batch <= c.max_batch for c in grid)
    assert space.limit_max_batch(4).max_batch == (2,)
    with pytest.raises(SpecError, match="batch profile max 1"):
        space.limit_max_batch(1)
    with pytest.raises(SpecError, match="repeat"):
        SearchSpace(instances=(1, 1))


def test_the_constraint_ranks_feasible_points_by_throughput_and_the_rest_by_how_far_they_miss():
    slo = Constraint(slo_p99_ms=100)
    fast = Point(8, 50.0, 40.0, 90.0, 0, 2.0, True)
    faster_but_late = Point(8, 60.0, 40.0, 150.0, 0, 2.0, True)
    failing = Point(8, 70.0, 40.0, 50.0, 3, 2.0, True)
    assert fast.feasible(slo) and not faster_but_late.feasible(slo) and not failing.feasible(slo)
    assert max([faster_but_late, failing, fast], key=lambda p: p.key(slo)) is fast
    assert faster_but_late.key(slo) > Point(8, 60.0, 40.0, 300.0, 0, 2.0, True).key(slo)
    lowest_p99 = Constraint(min_throughput=40)
    assert lowest_p99.objective == "p99"
    slow_tail = Point(2, 45.0, 10.0, 20.0, 0, 1.0, True)
    assert max([fast, slow_tail], key=lambda p: p.key(lowest_p99)) is slow_tail
    assert "p99 <= 100 ms" in slo.describe() and "throughput >= 40/s" in lowest_p99.describe()


def test_pareto_keeps_the_points_nothing_beats_on_both_axes():
    assert pareto([(10, 5), (20, 8), (15, 9), (5, 5)]) == [True, True, False, False]


def test_quick_mode_descends_one_coordinate_at_a_time_from_the_defaults(tiny, tmp_path):
    space = SearchSpace(instances=(1, 2, 3), threads=(1, 2), max_batch=(4, 8), queue_delay_us=(0,))
    options = TuneOptions(onnx=tiny, space=space, constraint=Constraint(slo_p99_ms=50), quick=True)
    assert options.repeats == 3
    calls: list[Candidate] = []
    result = run_tune(options, [], tmp_path, measure=_measure(0.0, calls=calls))
    # defaults, then the 6 instances x threads pairs (one of them the defaults' 2x2), then batch 4
    assert len(result.results) == 1 + 5 + 1 < space.size + 1
    best = result.best()
    assert best is not None and (best.candidate.instances, best.candidate.threads) == (2, 1)
    assert best.candidate.max_batch == 8 and best is result.decision().recommended
    # a change is recommended: the defaults were measured again at the end, their repeats pooled
    assert calls[0] == calls[-1] == result.defaults and result.defaults_measured == 2
    assert len(result.baseline.points[0].throughput_samples) == 6
    grid = run_tune(TuneOptions(onnx=tiny, space=space), [], tmp_path, measure=_measure(0.0))
    assert len(grid.results) == space.size  # the defaults (2x2, b8, d0) are a grid point
    assert grid.best() is not None and grid.best().candidate == best.candidate


def test_no_candidate_starts_past_the_budget_but_the_defaults_always_run(tiny, tmp_path):
    options = TuneOptions(onnx=tiny, space=SearchSpace(instances=(1, 4)), budget_s=5)
    result = run_tune(options, [], tmp_path, measure=_measure(60.0))
    assert [r.candidate for r in result.results] == [Candidate.defaults()]
    assert len(result.skipped) == SearchSpace(instances=(1, 4)).size


def test_a_precision_without_its_file_is_one_clear_error(tiny, tmp_path):
    options = TuneOptions(onnx=tiny, space=SearchSpace(precision=("fp32", "int8")))
    with pytest.raises(SpecError, match=r"no int8 ONNX beside the model .*--precision int8"):
        run_tune(options, [], tmp_path, measure=_measure(0.0))
