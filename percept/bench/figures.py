"""The figures of BENCHMARKS.md: one table of key, title, goal and the builder of its two sides."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from percept.bench import around as A
from percept.bench.breakdown import Breakdown
from percept.bench.networks import FUSED, FUSION
from percept.bench.plan import BATCHING_CONCURRENCY as C
from percept.bench.plan import STREAMS_FPS, STREAMS_SLO_P99_MS, TUNE_CONCURRENCY
from percept.bench.plan import TUNE_SLO_P99_MS as TUNE_SLO
from percept.bench.results import Bench
from percept.bench.video_figure import GOAL as VIDEO_GOAL
from percept.bench.video_figure import video_figure

Side = tuple[str, float, str]  # label, value, unit
T = TypeVar("T")


@dataclass
class Figure:
    """One row of the table: numerator / denominator against a goal."""

    key: str
    title: str
    numerator: Side
    denominator: Side
    goal: str = ""  # e.g. "<= 1.10"; empty: reported, no goal
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.numerator[1] / self.denominator[1] if self.denominator[1] else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.goal or self.ratio != self.ratio:  # no goal, or not measured (NaN)
            return None
        op, value = self.goal.split()
        return self.ratio <= float(value) if op == "<=" else self.ratio >= float(value)


@dataclass(frozen=True)
class FigureSpec:
    key: str
    title: str
    goal: str  # empty: reported, no goal
    build: Callable[[Bench], tuple[Side, Side, str]]  # numerator, denominator, note


def need(value: T | None, name: str) -> T:
    """A measurement a figure cannot do without; KeyError (not measured) when it is missing."""
    if value is None:
        raise KeyError(name)
    return value


def _peak(bench: Bench):
    """The best served cam_n step with the default repository: the sweep and the batching-on steps."""
    steps = [
        *bench.sweeps["raw"].steps,
        *(bench.sweeps["batching_on"].steps if "batching_on" in bench.sweeps else []),
    ]
    return max(steps, key=lambda s: s.throughput)


def _served_peak(bench: Bench) -> Side:
    peak = _peak(bench)
    return (f"served cam_n peak (c={peak.concurrency})", peak.throughput, "frames/s")


def _ort_p50(bench: Bench) -> float:
    return min(need(bench.overhead, "overhead").ort_p50_ms)


def avg_batch(step) -> float:
    split = step.network_split()
    return split.avg_batch if split else float("nan")


def _list(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def _overhead(bench: Bench) -> tuple[Side, Side, str]:
    overhead = need(bench.overhead, "overhead")
    served, ort = overhead.served_p50_ms, overhead.ort_p50_ms
    medians = float(np.median(served)) / float(np.median(ort))
    note = (
        f"best of {len(served)} served steps alternated with {len(ort)} in-process runs, each side's "
        f"quietest round; served p50s {_list(served)} ms, in-process {_list(ort)} ms (ratio of medians "
        f"{medians:.2f})"
    )
    found = Breakdown.of(overhead)
    if found is not None:
        note += "; " + found.note()
    return ("served cam_n p50", min(served), "ms"), ("in-process ORT p50", _ort_p50(bench), "ms"), note


def _peak_vs_ort(bench: Bench) -> tuple[Side, Side, str]:
    ort = need(bench.ort, "ort")
    return _served_peak(bench), (f"ORT batch {ort.best_batch}", ort.best_fps, "frames/s"), ""


def _batching(bench: Bench) -> tuple[Side, Side, str]:
    on = max(bench.sweeps["batching_on"].steps, key=lambda s: s.throughput)
    off = max(bench.sweeps["no_batching"].steps, key=lambda s: s.throughput)
    return (
        (f"on (avg batch {avg_batch(on):.2f})", on.throughput, "frames/s"),
        (f"off (avg batch {avg_batch(off):.2f})", off.throughput, "frames/s"),
        "no goal in the issue; > 1 means batching pays on this machine; best of 2 alternated steps each",
    )


def _fused(bench: Bench) -> tuple[Side, Side, str]:
    fused = _peak(bench)
    trio = max(bench.sweeps["single_task"].steps, key=lambda s: s.throughput)
    return (
        (f"cam_n, all heads (c={fused.concurrency})", fused.throughput, "frames/s"),
        (f"det + seg + depth nets (c={trio.concurrency})", trio.throughput, "frames/s"),
        "each side's best step over the same sweep of concurrency levels",
    )


def _video(bench: Bench) -> tuple[Side, Side, str]:
    return video_figure(bench, _served_peak(bench))


def _wire(bench: Bench) -> tuple[Side, Side, str]:
    wire = need(bench.wire, "wire")
    return (
        ("perception ensemble response", wire.ensemble / 1e3, "kB"),
        ("FP32 det raw + seg logits + depth", wire.raw_fp32_total / 1e3, "kB"),
        "",
    )


def _flops(bench: Bench) -> tuple[Side, Side, str]:
    ort, matmul = need(bench.ort, "ort"), need(bench.matmul, "matmul")
    gflops = need(bench.gflops_per_frame, "gflops_per_frame")
    note = (
        f"the served peak achieves {gflops * _peak(bench).throughput:.1f} GFLOP/s"
        if "raw" in bench.sweeps
        else ""
    )
    return (
        (f"ORT batch {ort.best_batch} x {gflops:.1f} GFLOP/frame", gflops * ort.best_fps, "GFLOP/s"),
        (f"{matmul.library} fp32 matmul n={matmul.n}", matmul.gflops, "GFLOP/s"),
        note,
    )


def _ort_vs_torch(bench: Bench) -> tuple[Side, Side, str]:
    ort, torch_res = need(bench.ort, "ort"), need(bench.torch, "torch")
    note = (
        f"> 1 means ORT is faster; {torch_res.threads} threads each, PyTorch with "
        f"OMP_WAIT_POLICY={torch_res.omp_wait_policy}; "
        f"batch 4: ORT {ort.batch_fps[4]:.1f} vs PyTorch {torch_res.throughput.batch_fps[4]:.1f} frames/s; "
        f"PyTorch with 1 thread: {torch_res.latency_ms_p50_1_thread:.0f} ms"
    )
    return (
        ("PyTorch eager p50", torch_res.latency_ms_p50, "ms"),
        ("ONNX Runtime p50", _ort_p50(bench), "ms"),
        note,
    )


def _engines(bench: Bench) -> tuple[Side, Side, str]:
    runs = need(bench.engines, "engines")
    ray, local = runs.ray, runs.local
    t = ray["timing"]
    note = (
        f"{ray['frames_processed']} frames, {len(ray['inputs'])} inputs, the same server; ray: a local "
        f"runtime, {runs.workers} actors, units of {runs.shard_frames} frames ({len(ray['units'])} units). "
        f"Of its {ray['seconds']:.1f} s, {runs.ray_startup_s:.1f} s are start-up (ray.init "
        f"{t['ray_connected']:.1f} s, then the actors), the rest units and joins: steady state "
        f"{runs.ray_steady_fps:.1f} frames/s ({runs.ray_steady_fps / local['fps']:.2f} x local); "
        f"command wall {runs.ray_wall_s:.1f} s vs {runs.local_wall_s:.1f} s"
    )
    return (
        (f"--engine ray, {runs.workers} workers", ray["fps"], "frames/s"),
        (f"--engine local, --parallel {runs.workers}", local["fps"], "frames/s"),
        note,
    )


def _tune(bench: Bench) -> tuple[Side, Side, str]:
    tune = need(bench.tune, "tune")
    base = "" if tune.defaults_feasible else ", the defaults missed it"
    levels = "/".join(str(c) for c in TUNE_CONCURRENCY)
    note = (
        f"`percept tune --quick` (coordinate descent from the defaults) of the raw cam_n network, "
        f"{tune.candidates} candidates in {tune.seconds:.0f} s ({tune.skipped} left by the budget), each "
        f"served by a restarted tritonserver and measured at concurrency {levels}; each side is its best "
        f"point with p99 <= {tune.slo_p99_ms:g} ms{base}; best {tune.best} at c={tune.best_concurrency}, "
        f"p99 {tune.best_p99_ms:.0f} ms; defaults at c={tune.defaults_concurrency}, "
        f"p99 {tune.defaults_p99_ms:.0f} ms; the table is in artifacts/bench/tune/"
    )
    return (
        (f"tune's best ({tune.best})", tune.best_throughput, "frames/s"),
        ("repository defaults", tune.defaults_throughput, "frames/s"),
        note,
    )


HARNESS_CPU_BUDGET_MS = 0.5  # issue 16: client CPU per request at 384x640 raw frames


def _streams(bench: Bench, network: str):
    search = bench.streams.get(network)
    if search is None:
        raise KeyError(f"streams_{network}")
    return search


def _n_streams(n: int) -> str:
    return f"{n} stream{'' if n == 1 else 's'}"


def _probes(search) -> str:
    return ", ".join(f"{p.value}{'' if p.held else ' (missed)'}" for p in search.capacity.search.probes)


def _cam_streams(bench: Bench) -> tuple[Side, Side, str]:
    search = _streams(bench, FUSED)
    n = search.best
    note = f"`{search.model}` ensemble; streams tried in order: {_probes(search)}"
    if search.capacity.search.at_limit:
        note += " (the search's limit: it may hold more)"
    return (f"{_n_streams(n)} x {STREAMS_FPS:g} fps", n * STREAMS_FPS, "frames/s"), _served_peak(bench), note


def _fusion_streams(bench: Bench) -> tuple[Side, Side, str]:
    fusion, cam = _streams(bench, FUSION), _streams(bench, FUSED)
    note = f"`{fusion.model}` (camera + LiDAR) streams tried in order: {_probes(fusion)}"
    if not cam.best:  # 0 / 0: no ratio, but both searches ran
        note += f"; `{cam.model}` held none either ({_probes(cam)})"
    return (f"{fusion.model}", fusion.best, "streams"), (f"{cam.model}", cam.best, "streams"), note


def _harness_cpu(bench: Bench) -> tuple[Side, Side, str]:
    search = _streams(bench, FUSED)
    steps = search.result.steps
    step = search.capacity.best_step or steps[0]
    each = ", ".join(f"{_n_streams(s.concurrency)} {s.harness_cpu_ms_per_request:.2f}" for s in steps)
    note = (
        f"load-worker CPU (user + system, every thread of the worker processes) per answered request of "
        f"the `{search.model}` streams steps, raw frames; by step (ms): {each}. The floor at camera "
        "rates: a plain TCP socket sending the same 737 kB request and reading the 371 kB answer over "
        "loopback costs ~0.5 ms of CPU per frame on the 2-core test host, and gRPC with inputs and "
        "outputs in shared memory (a 741-byte request) ~1.1 ms (README, Load testing)"
    )
    return (
        (f"at {_n_streams(step.concurrency)}", step.harness_cpu_ms_per_request, "ms"),
        ("issue 16's budget", HARNESS_CPU_BUDGET_MS, "ms"),
        note,
    )


def _around(request: str, goal_ms: float):
    def build(bench: Bench) -> tuple[Side, Side, str]:
        rows = need(bench.around, "around").rows
        row = next(r for r in rows if r.request == request)
        each = "; ".join(
            f"{r.request} `{r.model}`: {r.server_cpu_ms:.2f} ms, {r.frames_per_s:.0f} frames/s here, "
            f"{r.host_fps:.0f} frames/s fed on {A.HOST_CORES} cores"
            for r in rows
        )
        note = (
            f"tritonserver + stubs CPU per answered request, the network answering from memory, "
            f"concurrency {A.AROUND_CONCURRENCY}: {each}"
        )
        return (f"{request}", row.server_cpu_ms, "ms"), ("issue 21's goal", goal_ms, "ms"), note

    return build


FIGURES = (
    FigureSpec("1", "serving overhead at concurrency 1 (raw network, p50 latency)", "<= 1.05", _overhead),
    FigureSpec("2", "served peak throughput / in-process best batch", ">= 0.90", _peak_vs_ort),
    FigureSpec("3", f"dynamic batching on / off at concurrency {C}", "", _batching),
    FigureSpec(
        "4",
        "fused network vs three single-task networks on the same frames, peak throughput",
        ">= 2.0",
        _fused,
    ),
    FigureSpec("5", "`percept video` end to end / model-only throughput", f">= {VIDEO_GOAL:.2f}", _video),
    FigureSpec("6", "bytes on the wire per frame: served outputs / raw FP32 heads", "<= 0.15", _wire),
    FigureSpec("7", "achieved model GFLOP/s / measured matmul peak", "", _flops),
    FigureSpec(
        "8", "ONNX Runtime vs PyTorch eager, batch 1 latency (same network, in-process)", "", _ort_vs_torch
    ),
    FigureSpec(
        "9",
        f"cam-n: {STREAMS_FPS:g}-fps camera streams held at p99 <= {STREAMS_SLO_P99_MS:g} ms, frames/s held "
        "/ served peak",
        "",
        _cam_streams,
    ),
    FigureSpec(
        "10",
        f"fusion-n / cam-n: {STREAMS_FPS:g}-fps streams held at p99 <= {STREAMS_SLO_P99_MS:g} ms",
        "",
        _fusion_streams,
    ),
    FigureSpec(
        "11", "load-test harness CPU per request (384x640 raw frames) / budget", "<= 1.00", _harness_cpu
    ),
    FigureSpec("12", "`percept video --engine ray` / `--engine local`, same inputs and server", "", _engines),
    FigureSpec(
        "13",
        f"`percept tune` best vs the repository defaults, throughput at p99 <= {TUNE_SLO:g} ms",
        "",
        _tune,
    ),
    FigureSpec(
        "14",
        "server CPU per 720p JPEG outside the network (decode step + frame model) / goal",
        "<= 1.00",
        _around(A.JPEG_720P, A.JPEG_720P_GOAL_MS),
    ),
    FigureSpec(
        "15",
        "server CPU per raw 720p frame outside the network (the frame model alone) / goal",
        "<= 1.00",
        _around(A.RAW_720P, A.RAW_720P_GOAL_MS),
    ),
)


def figures(bench: Bench) -> list[Figure]:
    """Every figure whose inputs were measured; the others say which stage failed."""
    out = []
    for spec in FIGURES:
        try:
            numerator, denominator, note = spec.build(bench)
        except (KeyError, StopIteration, ValueError) as exc:
            why = "; ".join(f"{k}: {v}" for k, v in bench.errors.items()) or f"missing {exc}"
            nan = float("nan")
            out.append(
                Figure(
                    spec.key, spec.title, ("-", nan, ""), ("-", nan, ""), spec.goal, f"not measured ({why})"
                )
            )
            continue
        out.append(Figure(spec.key, spec.title, numerator, denominator, spec.goal, note))
    return out
