"""The bench's tune: `percept tune --quick` on the fused network, its best against the defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clients.loadtest.frames import Frame
from percept.bench.plan import TUNE_BUDGET_S, TUNE_CONCURRENCY, TUNE_SLO_P99_MS


@dataclass(frozen=True)
class TuneFacts:
    """The tune's outcome as the figure needs it (the whole table is in OUT/tune/tune.json)."""

    best: str  # the best candidate's label
    best_throughput: float
    best_p99_ms: float
    best_concurrency: int
    defaults_throughput: float  # the defaults' best point under the same constraint
    defaults_p99_ms: float
    defaults_concurrency: int
    defaults_feasible: bool
    candidates: int
    skipped: int
    seconds: float
    slo_p99_ms: float


def bench_space():
    """Instances x threads, max batch and queue delay around the defaults (2 x 2 threads, 8, 0 µs)."""
    from clients.tune import SearchSpace

    return SearchSpace(instances=(1, 2, 4), threads=(1, 2), max_batch=(4, 8), queue_delay_us=(0, 2000))


def tune_best(onnx: Path, frames: list[Frame], work: Path, out: Path, quick: bool) -> TuneFacts:
    """Quick tune (coordinate descent) of the raw network under p99 <= TUNE_SLO_P99_MS, within the
    budget (half of it with --quick); writes tune.csv/.json and pareto.png into ``out``."""
    from clients.tune import Constraint, TuneOptions, run_tune, write_table

    options = TuneOptions(
        onnx=onnx,
        space=bench_space(),
        constraint=Constraint(slo_p99_ms=TUNE_SLO_P99_MS),
        quick=True,
        budget_s=TUNE_BUDGET_S / 2 if quick else TUNE_BUDGET_S,
        target="network",
        concurrency=TUNE_CONCURRENCY,
        window_s=1.5 if quick else 2.0,
    )
    result = run_tune(options, frames, work)
    write_table(result, out)
    best, base = result.best(), result.baseline
    if best is None:
        raise ValueError(f"no candidate met p99 <= {TUNE_SLO_P99_MS:g} ms (see {out / 'tune.json'})")
    point, base_point = best.best_point(options.constraint), base.best_point(options.constraint)
    if point is None or base_point is None:
        raise ValueError(f"the defaults were not measured: {base.error}")
    return TuneFacts(
        best=best.candidate.label,
        best_throughput=point.throughput,
        best_p99_ms=point.p99_ms,
        best_concurrency=point.concurrency,
        defaults_throughput=base_point.throughput,
        defaults_p99_ms=base_point.p99_ms,
        defaults_concurrency=base_point.concurrency,
        defaults_feasible=base_point.feasible(options.constraint),
        candidates=len(result.results),
        skipped=len(result.skipped),
        seconds=result.seconds,
        slo_p99_ms=TUNE_SLO_P99_MS,
    )
