"""Measure one candidate: build its repository, start tritonserver on it, run the load test, stop.

The repository comes from :func:`serving.repository.build_repository` (the same builder as `percept
repo build`), the server is :class:`serving.launcher.TritonServer` on free loopback ports, and the
load is the `percept loadtest` harness (:class:`clients.loadtest.LoadTest`): per concurrency level,
``repeats`` closed-loop steps of one window each (each its own warm-up, so the repeats are
independent replications and not slices of one run), whose throughputs and p99s give the point's
intervals (clients.tune.stats). A candidate whose server does not start is recorded with the
reason, not raised: the search goes on.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from clients.loadtest import Frame, LoadTest, LoadTestOptions, StepResult
from clients.tune.options import Constraint, TuneOptions
from clients.tune.space import Candidate
from clients.tune.stats import Interval, mean_interval
from serving.errors import PerceptionError
from serving.model_config import RepositoryOptions

log = logging.getLogger(__name__)

STABLE_TOLERANCE = 0.15  # the load test's own rule for windows that agree, applied to the repeats


@dataclass(frozen=True)
class Point:
    """One measured load level of one candidate: the means over its repeats, and the repeats."""

    concurrency: int
    throughput: float  # requests/s, mean of the repeats' windows
    p50_ms: float  # mean of the repeats' p50
    p99_ms: float  # mean of the repeats' p99
    errors: int  # all repeats
    avg_batch: float  # the network model's, from Triton's statistics (mean of the repeats)
    stable: bool  # the repeats' throughputs agree within STABLE_TOLERANCE of their mean
    throughput_samples: tuple[float, ...] = ()  # one per repeat
    p99_samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, steps: list[StepResult]) -> Point:
        """From the repeats (one step each) of one concurrency level."""
        splits = [s.network_split() for s in steps]
        batches = [x.avg_batch for x in splits if x is not None]
        return cls(
            concurrency=steps[0].concurrency,
            throughput=_mean([s.throughput for s in steps]),
            p50_ms=_mean([s.latency.p50 for s in steps]),
            p99_ms=_mean([s.latency.p99 for s in steps]),
            errors=sum(s.error_count for s in steps),
            avg_batch=_mean(batches) if batches else math.nan,
            stable=_agree([s.throughput for s in steps]),
            throughput_samples=tuple(s.throughput for s in steps),
            p99_samples=tuple(s.latency.p99 for s in steps),
        )

    def merged(self, other: Point) -> Point:
        """Both measurements' repeats as one point (the defaults measured before and after)."""
        n, m = len(self.samples("throughput")), len(other.samples("throughput"))
        throughput = self.samples("throughput") + other.samples("throughput")
        p99 = self.samples("p99_ms") + other.samples("p99_ms")
        return Point(
            concurrency=self.concurrency,
            throughput=_mean(list(throughput)),
            p50_ms=(n * self.p50_ms + m * other.p50_ms) / (n + m),
            p99_ms=_mean(list(p99)),
            errors=self.errors + other.errors,
            avg_batch=(n * self.avg_batch + m * other.avg_batch) / (n + m),
            stable=_agree(list(throughput)),
            throughput_samples=throughput,
            p99_samples=p99,
        )

    def samples(self, name: str) -> tuple[float, ...]:
        """The repeats of ``throughput`` or ``p99_ms`` (the mean alone when none were kept)."""
        kept = self.throughput_samples if name == "throughput" else self.p99_samples
        return kept or (getattr(self, name),)

    def interval(self, name: str) -> Interval:
        """Mean ± the 95 % t half-width over the repeats of ``throughput`` or ``p99_ms``."""
        return mean_interval(self.samples(name))

    def feasible(self, constraint: Constraint) -> bool:
        return constraint.violation(self.throughput, self.p99_ms, self.errors) == 0

    def key(self, constraint: Constraint) -> tuple:
        """Larger is better: points that meet the constraint by the objective, then the others by
        how little they miss it."""
        if not self.feasible(constraint):
            return (0, -constraint.violation(self.throughput, self.p99_ms, self.errors))
        if constraint.objective == "p99":
            return (1, -self.p99_ms, self.throughput)
        return (1, self.throughput, -self.p99_ms)


@dataclass(frozen=True)
class CandidateResult:
    candidate: Candidate
    points: tuple[Point, ...]
    seconds: float  # wall time of the whole candidate: build, start, load, stop
    repeat_seconds: float = 0.0  # of which the repeats beyond the first step of each level
    error: str = ""  # why nothing was measured (server start or load test failed)

    def best_point(self, constraint: Constraint) -> Point | None:
        return max(self.points, key=lambda p: p.key(constraint), default=None)

    def feasible(self, constraint: Constraint) -> bool:
        best = self.best_point(constraint)
        return best is not None and best.feasible(constraint)

    def key(self, constraint: Constraint) -> tuple:
        best = self.best_point(constraint)
        return best.key(constraint) if best is not None else (-1,)

    def merged(self, other: CandidateResult) -> CandidateResult:
        """This candidate measured again: the repeats of each concurrency level pooled."""
        if not other.points:
            return replace(self, seconds=self.seconds + other.seconds)
        if not self.points:
            return replace(other, seconds=self.seconds + other.seconds)
        theirs = {p.concurrency: p for p in other.points}
        points = tuple(p.merged(theirs[p.concurrency]) if p.concurrency in theirs else p for p in self.points)
        return replace(
            self,
            points=points,
            seconds=self.seconds + other.seconds,
            repeat_seconds=self.repeat_seconds + other.repeat_seconds,
        )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _agree(values: list[float]) -> bool:
    mean = _mean(values)
    return mean > 0 and max(abs(v - mean) for v in values) <= STABLE_TOLERANCE * mean


def candidate_options(candidate: Candidate, target: str, link: bool = True) -> RepositoryOptions:
    """The repository of one candidate: pre/postprocess only when the ensemble is what is driven."""
    return candidate.repository_options(RepositoryOptions(ensembles=target == "pipeline", link=link))


def target_model(onnx: Path, target: str) -> str:
    from serving.model_config import ensemble_name, network_model_name
    from serving.onnx_meta import read_spec

    spec = read_spec(onnx)
    return ensemble_name(spec) if target == "pipeline" else network_model_name(spec)


def load_options(url: str, model: str, options: TuneOptions) -> LoadTestOptions:
    return LoadTestOptions(
        url=url,
        models=(model,),
        concurrency=options.concurrency,
        workers=options.workers,
        warmup_s=options.warmup_s,
        window_s=options.window_s,
        max_windows=1,  # one window per step: the repeats are steps
        stable_windows=1,
        seed=options.seed,
    )


def measure_candidate(
    candidate: Candidate, onnx: Path, options: TuneOptions, frames: list[Frame], work: Path
) -> CandidateResult:
    """Build ``work/repository`` for ``candidate`` from ``onnx`` (its precision's file), serve it, load it."""
    from serving.launcher import ServerOptions, TritonServer
    from serving.repository import build_repository

    start = time.perf_counter()
    repo = work / "repository"
    if repo.exists():
        shutil.rmtree(repo)
    build_repository([onnx], repo, candidate_options(candidate, options.target))
    server = TritonServer(ServerOptions(repository=repo, startup_timeout_s=options.startup_timeout_s))
    model = target_model(onnx, options.target)
    try:
        server.start()
        with LoadTest(load_options(server.grpc_url, model, options), frames, f"{len(frames)} frames") as test:
            points, repeat_s = _repeat(test, options)
    except PerceptionError as exc:
        reason = str(exc).splitlines()[0][:300]
        log.warning("candidate %s not measured: %s", candidate.label, reason)
        return CandidateResult(candidate, (), time.perf_counter() - start, error=reason)
    finally:
        server.stop()
    return CandidateResult(candidate, points, time.perf_counter() - start, repeat_s)


def _repeat(test: LoadTest, options: TuneOptions) -> tuple[tuple[Point, ...], float]:
    """``options.repeats`` steps per concurrency level; the points and the seconds of the repeats
    beyond each level's first (what the intervals cost)."""
    points, extra = [], 0.0
    for concurrency in options.concurrency:
        steps = []
        for i in range(options.repeats):
            t0 = time.perf_counter()
            steps.append(test.run_step(concurrency))
            extra += (time.perf_counter() - t0) if i else 0.0
        points.append(Point.of(steps))
    return tuple(points), extra
