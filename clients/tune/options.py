"""Options of a tune: the constraint, the search, the per-candidate measurement; frozen and checked."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clients.tune.space import SearchSpace
from clients.tune.stats import ALPHA
from serving.errors import SpecError

TARGETS = ("pipeline", "network")
# steps (warm-up + one window) per concurrency level: quick keeps the tune short, the grid (which
# compares many more candidates, so needs more evidence per one) measures more
DEFAULT_REPEATS = {"quick": 3, "grid": 5}


@dataclass(frozen=True)
class Constraint:
    """What a measured point must meet: p99 at most ``slo_p99_ms``, throughput at least
    ``min_throughput``, and no failed request (a configuration that rejects requests meets no SLO).

    The objective among the points that meet it: the highest throughput, or, when only a minimum
    throughput is given, the lowest p99.
    """

    slo_p99_ms: float | None = None
    min_throughput: float | None = None

    def __post_init__(self) -> None:
        if self.slo_p99_ms is not None and self.slo_p99_ms <= 0:
            raise SpecError(f"--slo-p99-ms must be > 0, got {self.slo_p99_ms}")
        if self.min_throughput is not None and self.min_throughput <= 0:
            raise SpecError(f"--min-throughput must be > 0, got {self.min_throughput}")

    @property
    def objective(self) -> str:
        return "p99" if self.min_throughput is not None and self.slo_p99_ms is None else "throughput"

    def describe(self) -> str:
        parts = []
        if self.slo_p99_ms is not None:
            parts.append(f"p99 <= {self.slo_p99_ms:g} ms")
        if self.min_throughput is not None:
            parts.append(f"throughput >= {self.min_throughput:g}/s")
        return " and ".join(parts + ["no failed requests"])

    def violation(self, throughput: float, p99_ms: float, errors: int) -> float:
        """0 when met; else how far off, as a sum of relative misses (a failed request counts 1)."""
        miss = 1.0 if errors else 0.0
        if self.slo_p99_ms is not None:
            miss += max(0.0, p99_ms / self.slo_p99_ms - 1) if p99_ms == p99_ms else 1.0
        if self.min_throughput is not None:
            miss += max(0.0, 1 - throughput / self.min_throughput)
        return miss


@dataclass(frozen=True)
class TuneOptions:
    """One tune of one network file (its reduced-precision siblings are found beside it)."""

    onnx: Path
    space: SearchSpace = field(default_factory=SearchSpace)
    constraint: Constraint = field(default_factory=Constraint)
    quick: bool = False  # coordinate descent from the defaults instead of the whole grid
    budget_s: float = 600.0  # no candidate starts that would end past this
    target: str = "pipeline"  # drive the network's ensemble, or the raw network model
    concurrency: tuple[int, ...] = (2, 8)  # closed-loop levels measured per candidate
    workers: int = 2  # load-generating processes
    warmup_s: float = 1.0
    window_s: float = 2.0  # one measurement window per step
    repeats: int = 0  # steps per concurrency level; 0: DEFAULT_REPEATS of the mode
    alpha: float = ALPHA  # the decision's significance level (clients.tune.decision)
    frames: int = 4
    seed: int = 0
    startup_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise SpecError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.budget_s <= 0:
            raise SpecError(f"--budget-s must be > 0, got {self.budget_s}")
        if not self.concurrency or min(self.concurrency) < 1:
            raise SpecError(f"concurrency levels must be >= 1, got {self.concurrency}")
        if self.frames < 1 or self.workers < 1:
            raise SpecError("need at least one frame and one load worker")
        if self.window_s <= 0 or self.warmup_s < 0 or self.startup_timeout_s <= 0:
            raise SpecError("the window and start-up timeout must be > 0 s, the warm-up >= 0 s")
        if not 0 < self.alpha < 1:
            raise SpecError(f"--alpha must be in (0, 1), got {self.alpha}")
        if self.repeats == 0:
            object.__setattr__(self, "repeats", DEFAULT_REPEATS["quick" if self.quick else "grid"])
        elif self.repeats < 2:
            raise SpecError(
                f"--repeats must be >= 2 (an interval needs two measurements), got {self.repeats}"
            )
