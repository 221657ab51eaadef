"""The typed record of one bench run: what was measured, read and how long each stage took."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from percept.bench.facts import MachineFacts, ServedModelFacts, ServerFacts
from percept.bench.measure import BatchThroughput, MatmulPeak, TorchEager
from percept.bench.served import EngineRuns, Overhead, StreamsCapacity, VideoRun, WireBytes
from percept.bench.tuned import TuneFacts

if TYPE_CHECKING:
    from clients.loadtest import LoadTestResult
    from percept.bench.around import Around
    from percept.bench.figures import Figure
    from percept.bench.precision import PrecisionAccuracy

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Bench:
    """A run's results; a field left None was not measured (``errors`` says why)."""

    out: Path
    machine_start: MachineFacts | None = None
    machine_end: MachineFacts | None = None
    served: ServedModelFacts | None = None  # the cam_n network model with the default repository
    server: ServerFacts | None = None
    input_hw: tuple[int, int] | None = None  # the fused network's, from its spec
    weights: dict[str, str] = field(default_factory=dict)  # network -> "shipped x.pt" / random init
    torch: TorchEager | None = None
    matmul: MatmulPeak | None = None  # the best of the tries before and after the sweep
    gflops_per_frame: float | None = None
    overhead: Overhead | None = None
    ort: BatchThroughput | None = None  # the better of the tries before and after the sweep
    video: VideoRun | None = None  # figure 5's run: raw when plan.VIDEO_RAW
    video_ensemble: VideoRun | None = None  # the default path, through the `perception` ensemble
    video_no_mp4: VideoRun | None = None
    video_frames: int | None = None
    engines: EngineRuns | None = None  # `percept video --engine local` vs `--engine ray`
    wire: WireBytes | None = None
    tune: TuneFacts | None = None  # `percept tune --quick` of the fused network, after the sweeps
    precision: PrecisionAccuracy | None = None  # FP16 / INT8 ONNX accuracy beside FP32
    around: Around | None = None  # server CPU per frame outside the network (percept.bench.around)
    sweeps: dict[str, LoadTestResult] = field(default_factory=dict)
    streams: dict[str, StreamsCapacity] = field(default_factory=dict)  # network name -> its search
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)  # earlier runs' ratios on this machine

    def stage(self, key: str, fn: Callable[[], T], required: bool = False) -> T | None:
        """Run one stage and record its seconds. A failed stage is recorded and skipped (the report
        says what was not measured) unless ``required``."""
        start = time.perf_counter()
        try:
            return fn()
        except Exception as exc:
            self.errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.error("bench stage %s failed: %s", key, self.errors[key])
            if required:
                raise
            return None
        finally:
            self.seconds[key] = time.perf_counter() - start
