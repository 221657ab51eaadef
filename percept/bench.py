"""`make bench`: the benchmark suite. Every figure is a ratio of two numbers measured in this run.

Runs ``python -m percept.bench``: exports cam-n and the three single-task networks (reused from
``artifacts/bench`` when already there), builds two repositories (dynamic batching on / off),
starts the real tritonserver, drives it with the load-test harness, measures ONNX Runtime and
PyTorch in-process on the same ONNX / network and inputs, and rewrites BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from clients.loadtest import LoadTest, LoadTestOptions, LoadTestResult
from clients.loadtest.frames import Frame, world_frames
from clients.loadtest.payload import build_payload, fetch_model_info
from clients.loadtest.runner import machine_info
from serving.letterbox import letterbox_image
from serving.spec import ENSEMBLE_CAMERA, ModelSpec

log = logging.getLogger("percept.bench")

FUSED = "cam-n"
SINGLE_TASK = ("cam-n-det", "cam-n-seg", "cam-n-depth")
SWEEP = (1, 2, 4, 8, 16)
SINGLE_TASK_SWEEP = (2, 4, 8)  # c=1 cannot be a trio's peak: three requests in turn, one core idle
BATCHING_CONCURRENCY = 8
ORT_BATCHES = (1, 2, 4, 8)
OVERHEAD_ROUNDS = 4  # served c=1 steps, each between two in-process batch-1 runs
COMMAND = "make bench  (python -m percept.bench)"

VIDEO_REPEATS = 5  # the bench video: 80 distinct world scenes, repeated


@dataclass
class Figure:
    """One row of the table: numerator / denominator against a goal."""

    key: str
    title: str
    numerator: tuple[str, float, str]  # label, value, unit
    denominator: tuple[str, float, str]
    goal: str = ""  # e.g. "<= 1.10"; empty: reported, no goal
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.numerator[1] / self.denominator[1] if self.denominator[1] else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, value = self.goal.split()
        return self.ratio <= float(value) if op == "<=" else self.ratio >= float(value)


@dataclass
class Bench:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    sweeps: dict[str, LoadTestResult] = field(default_factory=dict)
    facts: dict = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # earlier runs' ratios on this machine

    def measure(self, key: str, fn, required: bool = False):
        """Run one stage, record its seconds and its result (a sweep or a fact). A failed stage is
        recorded and skipped (BENCHMARKS.md says what was not measured) unless ``required``."""
        start = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:
            self.errors[key] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            log.error("bench stage %s failed: %s", key, self.errors[key])
            if required:
                raise
            return None
        finally:
            self.seconds[key] = time.perf_counter() - start
        if isinstance(value, LoadTestResult):
            self.sweeps[key.removeprefix("sweep_")] = value
        else:
            self.facts[key] = value
        return value


# --- model side: export, in-process ONNX Runtime and PyTorch -----------------------------------
def export_networks(out: Path, names: tuple[str, ...], fresh: bool) -> dict[str, Path]:
    """model.onnx per network (shipped weights where they exist, else seeded random init).

    The verification stage is `percept export`'s job; timings do not depend on it, so the bench
    calls the ONNX stage alone.
    """
    from exporters.export.onnx_export import export_onnx
    from exporters.export.options import OnnxOptions
    from exporters.export.run import load_network

    paths = {}
    for name in names:
        path = out / name / "model.onnx"
        checkpoint = _shipped_checkpoint(name)
        if fresh or not _export_is_current(path, checkpoint):
            model = load_network(name, checkpoint, None, seed=0)
            export_onnx(model, path, OnnxOptions(checkpoint=checkpoint), provenance_extra={"bench_seed": 0})
        paths[name] = path
    return paths


def _export_is_current(path: Path, checkpoint: Path | None) -> bool:
    """An earlier bench export of the same weights (shipped checkpoint by hash, or random init)."""
    from exporters.export.onnx_export import file_sha256, read_provenance

    if not path.exists():
        return False
    try:
        prov = read_provenance(path)
    except Exception:  # unreadable or foreign file: export again
        return False
    return prov.get("checkpoint_sha256") == (file_sha256(checkpoint) if checkpoint else None)


def weights_used(onnx: dict[str, Path]) -> dict[str, str]:
    from exporters.export.onnx_export import read_provenance

    out = {}
    for name, path in onnx.items():
        ckpt = read_provenance(path).get("checkpoint")
        out[name] = f"shipped {Path(ckpt).name}" if ckpt else "seeded random init"
    return out


def _shipped_checkpoint(name: str) -> Path | None:
    try:
        from exporters.weights import default_checkpoint

        path = Path(default_checkpoint(name))
    except Exception:  # no shipped weights for this network: random init is fine for timing
        return None
    return path if path.exists() else None


def letterboxed(frames: list[Frame], spec: ModelSpec) -> np.ndarray:
    """[N,3,H,W] uint8 network inputs from the frames, as the served raw model receives them."""
    rule = spec.letterbox
    images = [letterbox_image(f.image, spec.input_hw, rule.pad_value, rule.allow_upscale)[0] for f in frames]
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2))


def _timed(fn, min_time_s: float, min_runs: int) -> list[float]:
    fn()  # warm-up run: first-call allocations are not what is measured
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


class OrtInProcess:
    """ONNX Runtime in this process, configured like the served network model."""

    def __init__(self, onnx_path: Path, images: np.ndarray, settings: dict) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings["intra_op_threads"]
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(settings["allow_spinning"])))
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name
        self.images = images

    def times(self, batch: int, min_time_s: float) -> list[float]:
        x = np.ascontiguousarray(np.resize(self.images, (batch, *self.images.shape[1:])))
        return _timed(lambda: self.session.run(None, {self.name: x}), min_time_s, 5)

    def batches(self, min_time_s: float) -> dict:
        """Frames/s per batch size (median of runs) and the best of them."""
        fps = {b: b / float(np.median(self.times(b, min_time_s))) for b in ORT_BATCHES}
        best = max(fps, key=lambda b: fps[b])
        return {"batch_fps": fps, "best_batch": best, "best_fps": fps[best]}


def combine_batches(before: dict, after: dict) -> dict:
    """ORT frames/s per batch measured before and after the served sweep; the better of the two, as
    the served side's peak is its best step (on a shared host both sides keep their quietest try)."""
    fps = {b: max(before["batch_fps"][b], after["batch_fps"][b]) for b in ORT_BATCHES}
    best = max(fps, key=lambda b: fps[b])
    return {"batch_fps": fps, "best_batch": best, "best_fps": fps[best]}


def overhead_rounds(url: str, model: str, frames: list[Frame], ort: OrtInProcess, rounds: int, quick: bool):
    """Served latency at concurrency 1 and in-process latency at batch 1, alternated ``rounds``
    times (ORT before every served step and after the last)."""
    min_time = 1.0 if quick else 2.0
    ort_p50 = [float(np.median(ort.times(1, min_time))) * 1e3]

    def after_step(_step) -> None:
        ort_p50.append(float(np.median(ort.times(1, min_time))) * 1e3)

    options = replace(
        _sweep_options(url, (model,), (1,) * rounds, quick),
        warmup_s=1.0,
        window_s=1.5,
        stable_windows=2,
        max_windows=3,
    )
    with LoadTest(options, frames, f"{len(frames)} world frames", on_step=after_step) as test:
        result = test.run()
    served = [s.latency.p50 for s in result.steps]
    return {"served_p50_ms": served, "ort_p50_ms": ort_p50}


def torch_eager(name: str, images: np.ndarray, threads: int, min_time_s: float) -> dict:
    """The same network (the deploy wrapper that the ONNX was exported from) in PyTorch eager."""
    import torch

    from exporters.export.graph import build_deploy_model
    from exporters.export.run import load_network

    model = load_network(name, _shipped_checkpoint(name), None, seed=0)
    deploy = build_deploy_model(model, model.spec).eval()
    out: dict = {"batch_fps": {}, "threads": threads}
    with torch.inference_mode():
        torch.set_num_threads(threads)
        for batch in (1, 4):
            x = torch.from_numpy(np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:]))))
            times = _timed(lambda x=x: deploy(x), min_time_s, 3)
            out["batch_fps"][batch] = batch / float(np.median(times))
            if batch == 1:
                out["latency_ms_p50"] = float(np.median(times)) * 1e3
        torch.set_num_threads(1)  # on a crowded host one thread can beat two: say so when it does
        x = torch.from_numpy(np.ascontiguousarray(images[:1]))
        out["latency_ms_p50_1_thread"] = float(np.median(_timed(lambda: deploy(x), min_time_s, 3))) * 1e3
        torch.set_num_threads(threads)
    return out


def matmul_peak() -> dict:
    """This machine's float32 matmul GFLOP/s: the fastest single run of numpy and torch square
    matmuls (n = 512, 1024, 2048). Many short runs, because on a shared host only the quiet moments
    show what the cores can do."""
    import torch

    best: dict = {}
    for n in (512, 1024, 2048):
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        ta = torch.from_numpy(a)
        for lib, fn in (("numpy", lambda a=a: a @ a), ("torch", lambda ta=ta: ta @ ta)):
            times = _timed(fn, 1.0, 5)
            gflops = 2 * n**3 / min(times) / 1e9
            if gflops > best.get("gflops", 0):
                best = {"gflops": gflops, "library": lib, "n": n}
    return best


# --- server side ---------------------------------------------------------------------------------
def build_repository(onnx: dict[str, Path], out: Path, dynamic_batching: bool) -> Path:
    """The repository as `percept repo build` writes it, with or without the dynamic batcher on
    the network models (without it Triton runs each request on its own)."""
    from serving.model_config import BatchingOptions, RepositoryOptions
    from serving.repository import build_repository as build

    if out.exists():
        shutil.rmtree(out)
    options = RepositoryOptions(batching=BatchingOptions(dynamic=dynamic_batching))
    build([onnx[n] for n in (FUSED, *SINGLE_TASK)], out, options)
    return out


def start_server(repository: Path):
    from serving.launcher import ServerOptions, TritonServer

    return TritonServer(ServerOptions(repository=repository, startup_timeout_s=300)).start()


def _sweep_options(url: str, models: tuple[str, ...], concurrency: tuple[int, ...], quick: bool):
    return LoadTestOptions(
        url=url,
        models=models,
        concurrency=concurrency,
        workers=2,
        warmup_s=1.0 if quick else 2.0,
        window_s=1.5 if quick else 2.5,
        max_windows=3 if quick else 5,
        stable_windows=2 if quick else 3,
        tolerance=0.15,
        min_window_requests=12,
    )


def alternate(
    plans: dict[str, tuple[str, tuple[str, ...]]],
    schedule: list[tuple[str, int]],
    frames: list[Frame],
    quick: bool,
) -> dict[str, LoadTestResult]:
    """Several load tests open side by side (``plans``: key -> url, models), their steps run in
    ``schedule`` order (key, concurrency), so that a drift of the machine's load spreads over all."""
    with contextlib.ExitStack() as stack:
        tests, results = {}, {}
        for key, (url, models) in plans.items():
            levels = tuple(c for k, c in schedule if k == key)
            options = _sweep_options(url, models, levels, quick)
            tests[key] = stack.enter_context(LoadTest(options, frames, f"{len(frames)} world frames"))
            results[key] = tests[key].new_result()
        for key, concurrency in schedule:
            results[key].steps.append(tests[key].run_step(concurrency))
    return results


def sweep(url: str, models: tuple[str, ...], concurrency: tuple[int, ...], frames: list[Frame], quick: bool):
    options = _sweep_options(url, models, concurrency, quick)
    with LoadTest(options, frames, f"{len(frames)} world frames") as test:
        return test.run()


def response_bytes(url: str, model: str, frame: Frame) -> int:
    """Size of one ModelInferResponse for ``frame`` (the output tensors on the wire, gRPC framing
    aside), with the inputs the load test would send that model."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    with grpcclient.InferenceServerClient(url) as client:
        info = fetch_model_info(lambda m: client.get_model_config(m, as_json=True)["config"], model)
        inputs = []
        for name, array in build_payload(info, frame):
            inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            inputs.append(inp.set_data_from_numpy(array))
        return client.infer(model, inputs).get_response().ByteSize()


def raw_fp32_bytes(spec: ModelSpec) -> dict[str, int]:
    """What shipping the heads' raw FP32 tensors would cost per frame: detection [A, 5+C], the
    segmentation logits [S,H,W] and depth [1,H/s,W/s]."""
    from exporters.networks.detection import num_anchors

    h, w = spec.input_hw
    dh, dw = spec.depth_hw
    return {
        "det_raw": num_anchors(spec.input_hw) * (5 + len(spec.det_classes)) * 4,
        "seg_logits": len(spec.seg_classes) * h * w * 4,
        "depth_fp32": dh * dw * 4,
    }


def write_video(frames: list[Frame], path: Path) -> Path:
    import cv2

    h, w = frames[0].image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_fps(url: str, video: Path, out: Path, annotate: bool = True) -> dict:
    """`percept video` as a user runs it (annotated MP4, JSONL, summary); its summary's frames/s."""
    entry = "from percept.cli import main; main()"
    cmd = [sys.executable, "-c", entry, "video", str(video), "--out", str(out), "--url", url, "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd + ([] if annotate else ["--no-video"]), capture_output=True, text=True, timeout=600
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"percept video failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    return {"fps": float(summary["fps"]), "command_wall_s": wall, "summary": summary}


# --- the run ---------------------------------------------------------------------------------------
def run(out: Path, fresh: bool, quick: bool) -> Bench:
    bench = Bench(out)
    t_all = time.perf_counter()
    min_time = 1.5 if quick else 3.0
    settings = _server_ort_settings()
    threads = settings["intra_op_threads"]
    bench.facts["machine_start"] = machine_info()

    onnx = bench.measure("export", lambda: export_networks(out / "onnx", (FUSED, *SINGLE_TASK), fresh), True)
    from serving.onnx_meta import read_spec

    spec = read_spec(onnx[FUSED])
    bench.facts["weights"] = weights_used(onnx)
    frames = world_frames(4 if quick else 8, seed=0, hw=spec.input_hw)
    images = letterboxed(frames, spec)
    bench.measure("torch", lambda: torch_eager(FUSED, images, threads, min_time))
    bench.measure("matmul_before", matmul_peak)
    bench.measure("gflops_per_frame", lambda: _gflops(spec))

    raw_model = FUSED.replace("-", "_")
    single_models = tuple(n.replace("-", "_") for n in SINGLE_TASK)
    with tempfile.TemporaryDirectory(prefix="percept-bench-") as tmp, contextlib.ExitStack() as servers:
        work = Path(tmp)
        # both servers up from the start (an idle one costs no CPU), so the batching on/off steps can
        # alternate like every other pair of numbers here
        repo_on = build_repository(onnx, work / "repo_batching", dynamic_batching=True)
        repo_off = build_repository(onnx, work / "repo_no_batching", dynamic_batching=False)
        on = servers.enter_context(bench.measure("server_start", lambda: start_server(repo_on), True))
        off = servers.enter_context(
            bench.measure("server_start_no_batching", lambda: start_server(repo_off), True)
        )
        url = on.grpc_url
        # in-process ORT alternates with the served side (the servers idle meanwhile), so that both
        # sides of ratios 1 and 2 see the same machine load as far as possible
        ort = OrtInProcess(onnx[FUSED], images, settings)
        bench.measure(
            "overhead", lambda: overhead_rounds(url, raw_model, frames, ort, OVERHEAD_ROUNDS, quick)
        )
        bench.measure("ort_before", lambda: ort.batches(min_time))
        schedule = [
            (key, c)
            for c in SWEEP
            for key in ("raw", "single_task")
            if key == "raw" or c in SINGLE_TASK_SWEEP
        ]
        plans = {"raw": (url, (raw_model,)), "single_task": (url, single_models)}
        bench.measure("sweeps_main", lambda: alternate(plans, schedule, frames, quick))
        bench.measure("ort_after", lambda: ort.batches(min_time))
        bench.measure("matmul_after", matmul_peak)
        plans_b: dict[str, tuple[str, tuple[str, ...]]] = {
            "batching_on": (url, (raw_model,)),
            "no_batching": (off.grpc_url, (raw_model,)),
        }
        schedule_b = [("batching_on", BATCHING_CONCURRENCY), ("no_batching", BATCHING_CONCURRENCY)] * 2
        bench.measure("sweeps_batching", lambda: alternate(plans_b, schedule_b, frames, quick))
        bench.measure(
            "sweep_ensemble", lambda: sweep(url, (ENSEMBLE_CAMERA,), (BATCHING_CONCURRENCY,), frames, quick)
        )
        # long enough (a 40 s drive at 10 fps) that start-up and the final MP4 join are not the figure
        drive = world_frames(40 if quick else 80, seed=100, hw=spec.input_hw) * VIDEO_REPEATS
        video = write_video(drive, work / "drive.mp4")
        bench.facts["video_frames"] = len(drive)
        bench.measure("video", lambda: video_fps(url, video, work / "video_out"))
        bench.measure("video_no_mp4", lambda: video_fps(url, video, work / "video_out_no_mp4", False))
        wire = {"ensemble": (ENSEMBLE_CAMERA, frames[0]), "raw_network": (raw_model, frames[0])}
        bench.measure(
            "wire",
            lambda: (
                {k: response_bytes(url, *v) for k, v in wire.items()} | {"raw_fp32": raw_fp32_bytes(spec)}
            ),
        )

    for key in ("sweeps_main", "sweeps_batching"):
        bench.sweeps.update(bench.facts.pop(key, {}))
    peaks = [bench.facts[k] for k in ("matmul_before", "matmul_after") if k in bench.facts]
    if peaks:  # the best seen: a crowded moment must not pass for the machine's peak
        bench.facts["matmul"] = max(peaks, key=lambda p: p["gflops"])
    if "ort_before" in bench.facts and "ort_after" in bench.facts:
        bench.facts["ort"] = combine_batches(bench.facts["ort_before"], bench.facts["ort_after"])
    bench.figures = figures(bench)
    bench.facts["machine_end"] = machine_info()
    bench.seconds["total"] = time.perf_counter() - t_all
    return bench


def _gflops(spec: ModelSpec) -> float:
    from exporters.networks.complexity import measure_complexity

    return measure_complexity(FUSED, spec.input_hw).gflops


def _server_ort_settings() -> dict:
    """The ONNX Runtime settings the repository builder gives the served network model."""
    from serving.model_config import RepositoryOptions

    options = RepositoryOptions()
    # spinning is ORT's own default where the builder has no such option
    return {
        "intra_op_threads": options.intra_op_threads,
        "allow_spinning": getattr(options, "allow_spinning", True),
        "network_instances": options.network_instances,
    }


C = BATCHING_CONCURRENCY


def _peak(bench: Bench):
    """The best served cam_n step with the default repository: the sweep and the batching-on steps."""
    steps = [
        *bench.sweeps["raw"].steps,
        *(bench.sweeps["batching_on"].steps if "batching_on" in bench.sweeps else []),
    ]
    return max(steps, key=lambda s: s.throughput)


def _served_peak(bench: Bench) -> tuple[str, float, str]:
    peak = _peak(bench)
    return (f"served cam_n peak (c={peak.concurrency})", peak.throughput, "frames/s")


def _ort_p50(bench: Bench) -> float:
    return min(bench.facts["overhead"]["ort_p50_ms"])


def _fig_overhead(bench: Bench) -> Figure:
    served, ort = bench.facts["overhead"]["served_p50_ms"], bench.facts["overhead"]["ort_p50_ms"]
    medians = float(np.median(served)) / float(np.median(ort))
    return Figure(
        "1",
        "serving overhead at concurrency 1 (raw network, p50 latency)",
        ("served cam_n p50", min(served), "ms"),
        ("in-process ORT p50", _ort_p50(bench), "ms"),
        "<= 1.10",
        note=(
            f"best of {len(served)} served steps alternated with {len(ort)} in-process runs, each side's "
            f"quietest round; served p50s {_list(served)} ms, in-process {_list(ort)} ms (ratio of medians "
            f"{medians:.2f})"
        ),
    )


def _list(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def _fig_peak(bench: Bench) -> Figure:
    ort = bench.facts["ort"]
    ort_best = (f"ORT batch {ort['best_batch']}", ort["best_fps"], "frames/s")
    return Figure(
        "2", "served peak throughput / in-process best batch", _served_peak(bench), ort_best, ">= 0.90"
    )


def _fig_batching(bench: Bench) -> Figure:
    on = max(bench.sweeps["batching_on"].steps, key=lambda s: s.throughput)
    off = max(bench.sweeps["no_batching"].steps, key=lambda s: s.throughput)
    return Figure(
        "3",
        f"dynamic batching on / off at concurrency {C}",
        (f"on (avg batch {_batch(on):.2f})", on.throughput, "frames/s"),
        (f"off (avg batch {_batch(off):.2f})", off.throughput, "frames/s"),
        note="no goal in the issue; > 1 means batching pays on this machine; best of 2 alternated steps each",
    )


def _fig_fused(bench: Bench) -> Figure:
    fused = _peak(bench)
    trio = max(bench.sweeps["single_task"].steps, key=lambda s: s.throughput)
    return Figure(
        "4",
        "fused network vs three single-task networks on the same frames, peak throughput",
        (f"cam_n, all heads (c={fused.concurrency})", fused.throughput, "frames/s"),
        (f"det + seg + depth nets (c={trio.concurrency})", trio.throughput, "frames/s"),
        ">= 2.0",
        note="each side's best step over the same sweep of concurrency levels",
    )


def _fig_video(bench: Bench) -> Figure:
    video = ("percept video", bench.facts["video"]["fps"], "frames/s")
    notes = []
    if "video_no_mp4" in bench.facts:
        notes.append(
            f"without the annotated MP4 (--no-video): {bench.facts['video_no_mp4']['fps']:.1f} frames/s"
        )
    if "ensemble" in bench.sweeps:
        step = bench.sweeps["ensemble"].steps[0]
        notes.append(
            f"the `perception` ensemble alone at c={step.concurrency}: {step.throughput:.1f} frames/s"
        )
    title = "`percept video` end to end / model-only throughput"
    return Figure("5", title, video, _served_peak(bench), ">= 0.85", note="; ".join(notes))


def _fig_wire(bench: Bench) -> Figure:
    wire = bench.facts["wire"]
    return Figure(
        "6",
        "bytes on the wire per frame: served outputs / raw FP32 heads",
        ("perception ensemble response", wire["ensemble"] / 1e3, "kB"),
        ("FP32 det raw + seg logits + depth", sum(wire["raw_fp32"].values()) / 1e3, "kB"),
        "<= 0.15",
    )


def _fig_flops(bench: Bench) -> Figure:
    ort, matmul, gflops = bench.facts["ort"], bench.facts["matmul"], bench.facts["gflops_per_frame"]
    note = ""
    if "raw" in bench.sweeps:
        note = f"the served peak achieves {gflops * _peak(bench).throughput:.1f} GFLOP/s"
    return Figure(
        "7",
        "achieved model GFLOP/s / measured matmul peak",
        (f"ORT batch {ort['best_batch']} x {gflops:.1f} GFLOP/frame", gflops * ort["best_fps"], "GFLOP/s"),
        (f"{matmul['library']} fp32 matmul n={matmul['n']}", matmul["gflops"], "GFLOP/s"),
        note=note,
    )


def _fig_ort_torch(bench: Bench) -> Figure:
    ort, torch_res = bench.facts["ort"], bench.facts["torch"]
    return Figure(
        "8",
        "ONNX Runtime vs PyTorch eager, batch 1 latency (same network, in-process)",
        ("PyTorch eager p50", torch_res["latency_ms_p50"], "ms"),
        ("ONNX Runtime p50", _ort_p50(bench), "ms"),
        note=(
            f"> 1 means ORT is faster; {torch_res['threads']} threads each, PyTorch with "
            "OMP_WAIT_POLICY=PASSIVE; "
            f"batch 4: ORT {ort['batch_fps'][4]:.1f} vs PyTorch {torch_res['batch_fps'][4]:.1f} frames/s; "
            f"PyTorch with 1 thread: {torch_res['latency_ms_p50_1_thread']:.0f} ms"
        ),
    )


FIGURES = (
    ("1", "serving overhead at concurrency 1", _fig_overhead),
    ("2", "served peak / in-process best batch", _fig_peak),
    ("3", f"dynamic batching on / off at concurrency {C}", _fig_batching),
    ("4", "fused network vs three single-task networks", _fig_fused),
    ("5", "`percept video` end to end / model-only throughput", _fig_video),
    ("6", "bytes on the wire per frame", _fig_wire),
    ("7", "achieved model GFLOP/s / measured matmul peak", _fig_flops),
    ("8", "ONNX Runtime vs PyTorch eager", _fig_ort_torch),
)


def figures(bench: Bench) -> list[Figure]:
    """Every figure whose inputs were measured; the others say which stage failed."""
    out = []
    for key, title, build in FIGURES:
        try:
            out.append(build(bench))
        except (KeyError, StopIteration) as exc:
            why = "; ".join(f"{k}: {v}" for k, v in bench.errors.items()) or f"missing {exc}"
            nan = float("nan")
            out.append(Figure(key, title, ("-", nan, ""), ("-", nan, ""), note=f"not measured ({why})"))
    return out


def _batch(step) -> float:
    split = step.network_split()
    return split.avg_batch if split else float("nan")


# --- BENCHMARKS.md ------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("onnxruntime", "torch", "numpy", "tritonclient", "nvidia-pytriton", "onnx"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    out["tritonserver"] = "2.51 (inside nvidia-pytriton 0.7.0, python backend running ONNX Runtime)"
    return out


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def markdown(bench: Bench) -> str:
    f = bench.facts
    m0, m1 = f["machine_start"], f["machine_end"]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{COMMAND}` on {now}; the whole run took {bench.seconds['total']:.0f} s.",
        "Every figure is a ratio of two numbers measured in this one run on this one machine. Absolute",
        "numbers on a shared 2-core machine move a lot from run to run; ratios move less, but they still",
        "move (last column), so read a goal as met or missed for this run, not for all time.",
        "",
        f"Machine: {m0['cpu']}, {m0['cores']} cores, no GPU; load average {m0['load_avg_1m']:.2f} at the",
        f"start and {m1['load_avg_1m']:.2f} at the end (other jobs were running on this machine).",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        "",
        "| # | figure | numerator | denominator | ratio | goal | met | earlier runs here |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fig in bench.figures:
        lines.append("| " + " | ".join([*_cells(fig), _spread(bench.history, fig.key)]) + " |")
    lines += [
        "",
        f"Earlier runs here: min-max of each ratio over the {len(bench.history)} earlier `make bench` runs",
        "recorded in `artifacts/bench/history.jsonl` on this machine (any code version), to show how much",
        "a ratio moves from run to run on a shared host.",
        "",
        "Notes:",
        "",
    ]
    lines += [f"- ({fig.key}) {fig.note}" for fig in bench.figures if fig.note]
    lines += [
        "- GPU rows (torch CUDA FP16 for 4 and 7) were not run: this session had no GPU.",
        "- (1), (2): the in-process side uses ONNX Runtime configured like the served network model",
        f"  ({_describe(_server_ort_settings())}, CPU provider) on the same model.onnx",
        "  and the same letterboxed frames, run while the server idles: batch-1 latency alternated with",
        "  the served concurrency-1 steps, throughput per batch before and after the served sweep",
        "  (the better of the two). The served side is the raw network model `cam_n` over gRPC from",
        "  the load-test harness (2 worker processes) on the same 2 cores, with the repository's",
        f"  defaults ({_server_ort_settings()['network_instances']} network instances, dynamic batching).",
        "- (7): FLOPs counted by PyTorch's FlopCounterMode (2 per multiply-add) on one frame; the",
        "  matmul peak is the fastest single numpy or PyTorch fp32 matmul (n = 512, 1024, 2048) seen at",
        "  the start and after the sweep. On a shared host neither side is clean: a ratio above 1 means",
        "  the matmul never caught a quiet moment that the network run did.",
        "- (4): one unit = a frame sent to cam_n_det, cam_n_seg and cam_n_depth in turn (one slot of",
        "  the units in flight), against cam_n carrying all three heads.",
        "- (5): `percept video` through the `perception` ensemble (decode, letterbox, network,",
        "  postprocess, annotated MP4, JSONL) with its default window of requests in flight, over a",
        f"  {f.get('video_frames', '?')}-frame drive (world scenes repeated {VIDEO_REPEATS} times).",
        "- Weights: shipped checkpoints where present, else seeded random init (timing depends on the",
        "  weights only through the number of boxes NMS keeps); this run: "
        + ", ".join(f"{k} {v}" for k, v in f.get("weights", {}).items())
        + ".",
    ]
    if "wire" in f:
        raw = ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in f["wire"]["raw_fp32"].items())
        lines += [
            "- (6): the response protobuf of one 384x640 world frame (boxes, uint8 class map, FP16 depth)",
            f"  against the FP32 raw heads the spec's shapes imply ({raw}); the raw network's own",
            f"  response is {f['wire']['raw_network'] / 1e3:.0f} kB.",
        ]
    if bench.errors:
        lines += ["", "Stages that failed in this run:", ""]
        lines += [f"- {k}: {v}" for k, v in bench.errors.items()]
    lines += ["", "## Concurrency sweeps (load-test harness)", ""]
    keys = ("raw", "single_task", "batching_on", "no_batching", "ensemble")
    results = [bench.sweeps[k] for k in keys if k in bench.sweeps]
    if results:
        lines += [
            "`cam_n` (dynamic batching) and the single-task trio, their steps alternated; then `cam_n`",
            f"with batching on and off alternated at concurrency {C}; then the `perception` ensemble:",
            "",
            _sweep_table(*results),
        ]
    lines += ["", "## In-process", ""]
    if "ort" in f:
        lines.append("ONNX Runtime frames/s by batch: " + _by_batch(f["ort"]) + ".")
    if "torch" in f:
        lines.append("PyTorch eager frames/s by batch: " + _by_batch(f["torch"]) + ".")
    if "gflops_per_frame" in f:
        lines.append(f"Model: {f['gflops_per_frame']:.2f} GFLOP per {FUSED} 384x640 frame.")
    if "matmul" in f:
        mm = f["matmul"]
        lines.append(f"Matmul peak: {mm['gflops']:.1f} GFLOP/s ({mm['library']}, n={mm['n']}, fp32).")
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in bench.seconds.items()) + ".", ""]
    return "\n".join(lines)


def _describe(settings: dict) -> str:
    spin = "spinning on" if settings["allow_spinning"] else "spinning off"
    return f"{settings['intra_op_threads']} intra-op threads, 1 inter-op thread, {spin}"


def _spread(history: list[dict], key: str) -> str:
    values = [r["ratios"][key] for r in history if r.get("ratios", {}).get(key) is not None]
    if not values:
        return "-"
    return f"{min(values):.2f}-{max(values):.2f} ({len(values)})"


def append_history(path: Path, bench: Bench) -> None:
    """One line per run: the date, the load and every ratio, for the spread column of later runs."""
    ratios = {f.key: (f.ratio if f.ratio == f.ratio else None) for f in bench.figures}
    entry = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": bench.facts["machine_start"]["load_avg_1m"],
        "ratios": ratios,
    }
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def _by_batch(res: dict) -> str:
    return ", ".join(f"batch {b}: {v:.1f}" for b, v in res["batch_fps"].items())


def _cells(fig: Figure) -> list[str]:
    num, den = fig.numerator, fig.denominator
    if fig.ratio != fig.ratio:  # NaN: not measured
        return [fig.key, fig.title, "-", "-", "-", fig.goal or "-", "not measured"]
    met = {True: "yes", False: "**no**", None: "-"}[fig.met]
    return [
        fig.key,
        fig.title,
        f"{num[0]}: {_fmt(num[1])} {num[2]}",
        f"{den[0]}: {_fmt(den[1])} {den[2]}",
        f"{fig.ratio:.2f}",
        fig.goal or "-",
        met,
    ]


def _sweep_table(*results: LoadTestResult) -> str:
    head: tuple[str, ...] = (
        "models",
        "concurrency",
        "frames/s",
        "p50 ms",
        "p99 ms",
        "avg batch",
        "queue ms",
        "infer ms",
    )
    head += ("errors", "stable")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result in results:
        for s in result.steps:
            split = s.network_split()
            cells = [
                "+".join(result.models),
                str(s.concurrency),
                f"{s.throughput:.1f}",
                f"{s.latency.p50:.1f}",
            ]
            cells += [f"{s.latency.p99:.1f}", f"{_batch(s):.2f}", f"{split.queue_ms if split else 0:.1f}"]
            cells += [
                f"{split.compute_infer_ms if split else 0:.1f}",
                str(s.error_count),
                "yes" if s.stable else "no",
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m percept.bench", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=Path("artifacts/bench"), help="work folder (exports, JSON)"
    )
    parser.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"), help="file to rewrite")
    parser.add_argument("--fresh", action="store_true", help="re-export the networks even if present")
    parser.add_argument("--quick", action="store_true", help="shorter windows (a smoke run, noisier)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # PyTorch's OpenMP threads busy-wait by default; the served ONNX Runtime has spinning off, and on
    # a crowded host spinning threads slowed eager PyTorch ~20x here. Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    bench = run(args.out, args.fresh, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "figures": [{**fig.__dict__, "ratio": fig.ratio, "met": fig.met} for fig in bench.figures],
        "facts": {k: v for k, v in bench.facts.items() if not k.startswith("server_start")},
        "seconds": bench.seconds,
        "sweeps": {k: v.to_dict() for k, v in bench.sweeps.items()},
    }
    (args.out / "bench.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    history = args.out / "history.jsonl"
    bench.history = read_history(history)
    args.markdown.write_text(markdown(bench))
    append_history(history, bench)
    for fig in bench.figures:
        status = {True: "met", False: "MISSED", None: "no goal"}[fig.met]
        print(f"({fig.key}) {fig.title}: {fig.ratio:.2f} {fig.goal} {status}")
    print(f"wrote {args.markdown} and {args.out / 'bench.json'}")
    if bench.errors:
        print("failed stages: " + ", ".join(bench.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
