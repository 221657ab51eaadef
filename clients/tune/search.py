"""The search of `percept tune`: the whole grid, or coordinate descent from the defaults (quick).

The defaults candidate (the repository builder's defaults) is measured first, always: it is the
baseline the result is compared with. Then

* grid: every valid combination of the space, in order;
* quick: coordinate descent. Starting from the defaults, one coordinate at a time (instances and
  threads together, since they share the cores; then max batch, preferred batch, queue delay,
  precision) every value is tried with the other knobs at the best so far, and the best is kept.
  It measures 1 + sum(values - 1) candidates instead of their product. Chosen over successive
  halving because here the fixed cost of a candidate (rebuild the repository, restart the server,
  spawn the load workers: most of its time on a small host) does not shrink with a shorter window,
  so only measuring fewer candidates saves time; and on these knobs the best value of one depends
  little on the others, except instances x threads, which move as one coordinate.

Every candidate is measured ``repeats`` times per concurrency level (measure.py) and the result
is a recommendation only when it beats the defaults beyond that noise (decision.py). Quick mode's
descent moves to a value only when it beats the current one by the same rule, so it does not
wander on noise. When the search ends with a recommendation, the defaults are measured once more
and their repeats pooled with the first measurement's: drift over the tune (a neighbour's load, a
warming machine) then weighs on them as on the candidates measured in between, and the decision is
taken again on the pooled repeats. That closing measurement runs even past the budget: a
recommendation is not made without it.

No candidate starts whose expected time (the mean of those measured) would end past the budget;
the ones not started are listed as skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clients.loadtest import Frame
from clients.tune.decision import Decision, beats, decide
from clients.tune.measure import CandidateResult, measure_candidate, target_model
from clients.tune.options import TuneOptions
from clients.tune.space import COORDINATES, Candidate, files_for

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    options: TuneOptions
    model: str  # the model driven (ensemble or raw network)
    variants: dict[str, Path]  # precision -> ONNX file
    accuracy: dict[str, dict[str, float]]  # precision -> metric deltas vs PyTorch (export report)
    defaults: Candidate
    results: list[CandidateResult] = field(default_factory=list)
    skipped: list[Candidate] = field(default_factory=list)  # not started: the budget ran out
    seconds: float = 0.0
    defaults_measured: int = 1  # 2: measured again at the end, repeats pooled

    @property
    def mode(self) -> str:
        return "quick (coordinate descent)" if self.options.quick else "grid"

    def result_of(self, candidate: Candidate) -> CandidateResult | None:
        return next((r for r in self.results if r.candidate == candidate), None)

    @property
    def baseline(self) -> CandidateResult:
        found = self.result_of(self.defaults)
        assert found is not None  # measured first, always
        return found

    def decision(self) -> Decision:
        return decide(self.results, self.baseline, self.options.constraint, self.options.alpha)

    def best(self) -> CandidateResult | None:
        """The configuration to serve: the recommended change, else the defaults when they meet the
        constraint; None when no candidate meets it."""
        recommended = self.decision().recommended
        if recommended is not None:
            return recommended
        return self.baseline if self.baseline.feasible(self.options.constraint) else None

    @property
    def repeat_seconds(self) -> float:
        """What the repeats cost: the seconds of every level's steps beyond its first."""
        return sum(r.repeat_seconds for r in self.results)

    def closest(self) -> CandidateResult | None:
        """The candidate that came nearest to the constraint (for the error when none met it)."""
        constraint = self.options.constraint
        return max((r for r in self.results if r.points), key=lambda r: r.key(constraint), default=None)


Measure = Callable[[Candidate], CandidateResult]


class _Runner:
    """Measures candidates once each, within the budget."""

    def __init__(self, result: TuneResult, measure: Measure, on_result) -> None:
        self.result = result
        self.measure = measure
        self.on_result = on_result
        self.deadline = time.monotonic() + result.options.budget_s
        self.out_of_budget = False

    def run(self, candidate: Candidate, always: bool = False) -> CandidateResult | None:
        done = self.result.result_of(candidate)
        if done is not None:
            return done
        measured = [r.seconds for r in self.result.results]
        expected = sum(measured) / len(measured) if measured else 0.0
        if not always and (self.out_of_budget or time.monotonic() + expected > self.deadline):
            self.out_of_budget = True
            if candidate not in self.result.skipped:
                self.result.skipped.append(candidate)
            return None
        log.info("candidate %d: %s", len(self.result.results) + 1, candidate.label)
        found = self.measure(candidate)
        self.result.results.append(found)
        if self.on_result is not None:
            self.on_result(found)
        return found


def run_tune(
    options: TuneOptions,
    frames: list[Frame],
    work: Path,
    on_result: Callable[[CandidateResult], None] | None = None,
    measure: Measure | None = None,
) -> TuneResult:
    """Search ``options.space`` for ``options.onnx``; ``work`` holds the candidates' repositories."""
    from serving.onnx_meta import accuracy_deltas, file_precision, precision_variants
    from serving.repository import NetworkArtifact

    variants = precision_variants(options.onnx)
    space = options.space.limit_max_batch(NetworkArtifact.from_onnx(options.onnx).max_batch)
    defaults = Candidate.defaults(file_precision(options.onnx))
    files_for([*space.grid(), defaults], variants)
    result = TuneResult(
        options, target_model(options.onnx, options.target), variants, accuracy_deltas(options.onnx), defaults
    )

    def measure_one(c: Candidate) -> CandidateResult:
        return measure_candidate(c, variants[c.precision], options, frames, work)

    runner = _Runner(result, measure or measure_one, on_result)
    start = time.perf_counter()
    runner.run(defaults, always=True)
    if options.quick:
        _descend(runner, space, defaults, options)
    else:
        for candidate in space.grid():
            runner.run(candidate)
    if not result.decision().keep_defaults and result.baseline.points:
        _measure_defaults_again(runner)
    result.seconds = time.perf_counter() - start
    return result


def _measure_defaults_again(runner: _Runner) -> None:
    result = runner.result
    log.info("the defaults again, to bracket the candidates: %s", result.defaults.label)
    again = runner.measure(result.defaults)
    index = result.results.index(result.baseline)
    result.results[index] = result.baseline.merged(again)
    result.defaults_measured += 1
    if runner.on_result is not None:
        runner.on_result(again)


def _descend(runner: _Runner, space, start: Candidate, options: TuneOptions) -> None:
    constraint = options.constraint
    current = runner.result.baseline
    for coordinate in COORDINATES:
        better = []
        for candidate in space.along(current.candidate, coordinate):
            measured = runner.run(candidate)
            if (
                measured is not None
                and measured is not current
                and beats(measured, current, constraint, options.alpha)
            ):
                better.append(measured)
        current = max(better, key=lambda r: r.key(constraint), default=current)
        log.info("after %s: %s", "+".join(coordinate), current.candidate.label)
