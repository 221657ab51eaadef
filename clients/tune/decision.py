"""Whether `percept tune` recommends a change: only one that beats the defaults beyond the noise.

Every comparison is against the defaults (what the user already runs), each candidate's point
against the defaults' point, on the repeats' values (clients.tune.stats):

* The defaults miss the constraint and a candidate meets it: that candidate (the one ranked first).
* Otherwise a candidate is recommended when its objective (throughput, or p99 when only a minimum
  throughput is asked) is better than the defaults' by a one-sided Welch test at ``alpha / m``,
  ``m`` the candidates compared (Bonferroni: the best of many noisy candidates looks better by
  chance, the winner's curse), AND its other figure is not significantly worse (one-sided at
  ``alpha``, unadjusted, so a worse tail is caught more readily than a gain is granted).
* Of the candidates that pass, the one ranked first, unless another passing one is not
  significantly behind it and takes fewer cores (instances x threads), then a smaller max batch:
  on a tie, fewer resources.
* Nothing passes: keep the defaults, and say why.
"""

from __future__ import annotations

from dataclasses import dataclass

from clients.tune.measure import CandidateResult, Point
from clients.tune.options import Constraint
from clients.tune.stats import ALPHA, Difference, welch


@dataclass(frozen=True)
class Comparison:
    """One candidate's point against the defaults' point (differences are candidate - defaults)."""

    result: CandidateResult
    throughput: Difference
    p99: Difference
    better: bool  # the objective, significantly (at the adjusted level)
    worse: bool  # the other figure, significantly (at the unadjusted level)

    @property
    def passes(self) -> bool:
        return self.better and not self.worse


@dataclass(frozen=True)
class Decision:
    recommended: CandidateResult | None  # None: keep the defaults (or nothing met the constraint)
    leader: CandidateResult | None  # the feasible candidate ranked first on the point estimates
    reason: str
    alpha: float  # the one-sided level of each "better" test (ALPHA / candidates compared)
    comparisons: tuple[Comparison, ...] = ()

    @property
    def keep_defaults(self) -> bool:
        return self.recommended is None


def compare(
    result: CandidateResult,
    defaults: CandidateResult,
    constraint: Constraint,
    alpha_better: float,
    alpha_worse: float,
) -> Comparison:
    """``result``'s best point against ``defaults``' best point (both must have one)."""
    point, base = result.best_point(constraint), defaults.best_point(constraint)
    assert point is not None and base is not None
    throughput = welch(point.samples("throughput"), base.samples("throughput"))
    p99 = welch(point.samples("p99_ms"), base.samples("p99_ms"))
    if constraint.objective == "p99":
        better, worse = p99.upper(alpha_better) < 0, throughput.upper(alpha_worse) < 0
    else:
        better, worse = throughput.lower(alpha_better) > 0, p99.lower(alpha_worse) > 0
    return Comparison(result, throughput, p99, better, worse)


def beats(
    result: CandidateResult, current: CandidateResult, constraint: Constraint, alpha: float = ALPHA
) -> bool:
    """Whether quick mode's descent moves from ``current`` to ``result``: meeting the constraint
    when ``current`` does not, or, both meeting it, passing the rule at ``alpha`` (unadjusted: it
    steers the search, the final decision is the one corrected for the candidates compared)."""
    if not result.feasible(constraint):
        return not current.feasible(constraint) and result.key(constraint) > current.key(constraint)
    if not current.feasible(constraint):
        return True
    return compare(result, current, constraint, alpha, alpha).passes


def _cost(result: CandidateResult) -> tuple[int, int]:
    c = result.candidate
    return (c.instances * c.threads, c.max_batch)


def _figures(point: Point | None) -> str:
    if point is None:
        return "not measured"
    thr, p99 = point.interval("throughput"), point.interval("p99_ms")
    return f"{thr.text(2)} req/s, p99 {p99.text(1)} ms (c={point.concurrency})"


def decide(
    results: list[CandidateResult], defaults: CandidateResult, constraint: Constraint, alpha: float = ALPHA
) -> Decision:
    """The recommendation among ``results`` (the defaults' own result among them or not)."""
    others = [r for r in results if r.candidate != defaults.candidate and r.feasible(constraint)]
    leader = max([*others, defaults], key=lambda r: r.key(constraint)) if others else None
    if not defaults.feasible(constraint):
        if leader is None:
            return Decision(None, None, f"no candidate met the constraint {constraint.describe()}", alpha)
        reason = (
            f"the defaults miss the constraint {constraint.describe()}; {leader.candidate.label} meets it"
        )
        return Decision(leader, leader, reason, alpha)
    if leader is None or leader is defaults:
        leader = defaults
        if not others:
            return Decision(None, defaults, "keep the defaults: no other candidate met the constraint", alpha)
    each = alpha / len(others)
    comparisons = tuple(compare(r, defaults, constraint, each, alpha) for r in others)
    passing = [c for c in comparisons if c.passes]
    base = _figures(defaults.best_point(constraint))
    if not passing:
        top = max(comparisons, key=lambda c: c.result.key(constraint))
        figures = f"{top.result.candidate.label} at {_figures(top.result.best_point(constraint))}"
        if top.result.key(constraint) <= defaults.key(constraint):
            reason = f"keep the defaults: they rank first at {base}; the best other candidate is {figures}"
        else:
            worse = "its throughput" if constraint.objective == "p99" else "its p99"
            why = f"{worse} is significantly worse" if top.better else "the difference is within the noise"
            reason = f"keep the defaults: the best candidate {figures} vs the defaults' {base}: {why}"
        return Decision(None, leader, reason, each, comparisons)
    first = max(passing, key=lambda c: c.result.key(constraint))
    tied = [c for c in passing if c is first or not _ahead(first.result, c.result, constraint, alpha)]
    chosen = min(tied, key=lambda c: (_cost(c.result), [-k for k in c.result.key(constraint)[1:]]))
    reason = (
        f"{chosen.result.candidate.label} at {_figures(chosen.result.best_point(constraint))} beats "
        f"the defaults' {base} beyond the noise"
    )
    return Decision(chosen.result, leader, reason, each, comparisons)


def _ahead(a: CandidateResult, b: CandidateResult, constraint: Constraint, alpha: float) -> bool:
    """``a``'s objective significantly better than ``b``'s."""
    return compare(a, b, constraint, alpha, alpha).better
