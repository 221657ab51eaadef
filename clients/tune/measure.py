"""Measure one candidate: build its repository, start tritonserver on it, run the load test, stop.

The repository comes from :func:`serving.repository.build_repository` (the same builder as `percept
repo build`), the server is :class:`serving.launcher.TritonServer` on free loopback ports, and the
load is the `percept loadtest` harness (:class:`clients.loadtest.LoadTest`), one closed-loop step
per concurrency level. A candidate whose server does not start is recorded with the reason, not
raised: the search goes on.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from clients.loadtest import Frame, LoadTest, LoadTestOptions, StepResult
from clients.tune.options import Constraint, TuneOptions
from clients.tune.space import Candidate
from serving.errors import PerceptionError
from serving.model_config import RepositoryOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """One measured load level of one candidate."""

    concurrency: int
    throughput: float  # requests/s over the step's measured span
    p50_ms: float
    p99_ms: float
    errors: int
    avg_batch: float  # the network model's, from Triton's statistics
    stable: bool

    @classmethod
    def of(cls, step: StepResult) -> Point:
        split = step.network_split()
        return cls(
            concurrency=step.concurrency,
            throughput=step.throughput,
            p50_ms=step.latency.p50,
            p99_ms=step.latency.p99,
            errors=step.error_count,
            avg_batch=split.avg_batch if split else math.nan,
            stable=step.stable,
        )

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
    error: str = ""  # why nothing was measured (server start or load test failed)

    def best_point(self, constraint: Constraint) -> Point | None:
        return max(self.points, key=lambda p: p.key(constraint), default=None)

    def feasible(self, constraint: Constraint) -> bool:
        best = self.best_point(constraint)
        return best is not None and best.feasible(constraint)

    def key(self, constraint: Constraint) -> tuple:
        best = self.best_point(constraint)
        return best.key(constraint) if best is not None else (-1,)


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
        max_windows=options.max_windows,
        stable_windows=options.stable_windows,
        tolerance=0.15,
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
            steps = test.run().steps
    except PerceptionError as exc:
        reason = str(exc).splitlines()[0][:300]
        log.warning("candidate %s not measured: %s", candidate.label, reason)
        return CandidateResult(candidate, (), time.perf_counter() - start, error=reason)
    finally:
        server.stop()
    points = tuple(Point.of(s) for s in steps)
    return CandidateResult(candidate, points, time.perf_counter() - start)
