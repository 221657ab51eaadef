"""In-process measurements: ONNX Runtime as the server runs it, PyTorch eager, the matmul peak."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clients.loadtest.frames import Frame
from serving.letterbox import network_image
from serving.ort_session import OrtSettings
from serving.spec import ModelSpec

ORT_BATCHES = (1, 2, 4, 8)
TORCH_BATCHES = (1, 4)
MATMUL_SIZES = (512, 1024, 2048)


@dataclass(frozen=True)
class BatchThroughput:
    """Frames/s per batch size (the median run of each)."""

    batch_fps: dict[int, float]

    @property
    def best_batch(self) -> int:
        return max(self.batch_fps, key=lambda b: self.batch_fps[b])

    @property
    def best_fps(self) -> float:
        return self.batch_fps[self.best_batch]

    def describe(self) -> str:
        return ", ".join(f"batch {b}: {v:.1f}" for b, v in self.batch_fps.items())


def best_of(before: BatchThroughput, after: BatchThroughput) -> BatchThroughput:
    """ORT frames/s per batch measured before and after the served sweep; the better of the two, as
    the served side's peak is its best step (on a shared host both sides keep their quietest try)."""
    return BatchThroughput({b: max(v, after.batch_fps[b]) for b, v in before.batch_fps.items()})


@dataclass(frozen=True)
class TorchEager:
    threads: int
    omp_wait_policy: str  # OMP_WAIT_POLICY as the run had it ("unset" when it had none)
    throughput: BatchThroughput
    latency_ms_p50: float  # batch 1, ``threads`` threads
    latency_ms_p50_1_thread: float


@dataclass(frozen=True)
class MatmulPeak:
    gflops: float
    library: str
    n: int


def letterboxed(frames: list[Frame], spec: ModelSpec) -> np.ndarray:
    """[N,3,H,W] uint8 network inputs from the frames, as the served raw model receives them."""
    return np.stack([network_image(f.image, spec.input_hw, spec.letterbox)[0] for f in frames])


def timed(fn: Callable[[], object], min_time_s: float, min_runs: int) -> list[float]:
    """Seconds per run of ``fn`` after one warm-up run: first-call allocations are not measured."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _ort_session(onnx_path: Path, settings: OrtSettings):
    """The one place the bench opens an ONNX Runtime session: as the served network model does."""
    from serving.ort_session import network_session

    return network_session(onnx_path, settings)


class OrtInProcess:
    """ONNX Runtime in this process, with the settings read from the served model's config."""

    def __init__(self, onnx_path: Path, images: np.ndarray, settings: OrtSettings) -> None:
        self.session: Any = _ort_session(onnx_path, settings)
        self.input_name: str = self.session.get_inputs()[0].name
        self.images = images

    def times(self, batch: int, min_time_s: float) -> list[float]:
        x = np.ascontiguousarray(np.resize(self.images, (batch, *self.images.shape[1:])))
        return timed(lambda: self.session.run(None, {self.input_name: x}), min_time_s, 5)

    def p50_ms(self, batch: int, min_time_s: float) -> float:
        return float(np.median(self.times(batch, min_time_s))) * 1e3

    def batches(self, min_time_s: float) -> BatchThroughput:
        return BatchThroughput({b: b / float(np.median(self.times(b, min_time_s))) for b in ORT_BATCHES})


def torch_eager(graph, images: np.ndarray, threads: int, min_time_s: float) -> TorchEager:
    """``graph`` (the network the ONNX was exported from) in PyTorch eager on the same inputs."""
    import torch

    fps: dict[int, float] = {}
    with torch.inference_mode():
        torch.set_num_threads(threads)
        for batch in TORCH_BATCHES:
            x = torch.from_numpy(np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:]))))
            times = timed(functools.partial(graph, x), min_time_s, 3)
            fps[batch] = batch / float(np.median(times))
            if batch == 1:
                latency = float(np.median(times)) * 1e3
        torch.set_num_threads(1)  # on a crowded host one thread can beat two: say so when it does
        x = torch.from_numpy(np.ascontiguousarray(images[:1]))
        one_thread = float(np.median(timed(lambda: graph(x), min_time_s, 3))) * 1e3
        torch.set_num_threads(threads)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return TorchEager(threads, policy, BatchThroughput(fps), latency, one_thread)


def matmul_peak() -> MatmulPeak:
    """This machine's float32 matmul GFLOP/s: the fastest single run of numpy and torch square
    matmuls (``MATMUL_SIZES``). Many short runs, because on a shared host only the quiet moments
    show what the cores can do."""
    import torch

    best = MatmulPeak(0.0, "-", 0)
    for n in MATMUL_SIZES:
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        ta = torch.from_numpy(a)
        for lib, fn in (("numpy", lambda a=a: a @ a), ("torch", lambda ta=ta: ta @ ta)):
            gflops = 2 * n**3 / min(timed(fn, 1.0, 5)) / 1e9
            if gflops > best.gflops:
                best = MatmulPeak(gflops, lib, n)
    return best


def gflops_per_frame(name: str, input_hw: tuple[int, int]) -> float:
    """FLOPs of one frame counted by PyTorch's FlopCounterMode (2 per multiply-add)."""
    from exporters.networks.complexity import measure_complexity

    return measure_complexity(name, input_hw).gflops
