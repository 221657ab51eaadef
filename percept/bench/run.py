"""One bench run: export, measure in process, serve and sweep, then the figures and the files.

Both servers are up from the start (an idle one costs no CPU), so the batching on/off steps can
alternate like every other pair of numbers here; in-process ONNX Runtime alternates with the served
side (the servers idle meanwhile), so both sides of ratios 1 and 2 see the same machine load as far
as possible.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from clients.loadtest.frames import world_frames
from percept.bench import facts, measure, networks, served, tuned
from percept.bench.around import around_figure
from percept.bench.figures import figures
from percept.bench.history import append_history, read_history
from percept.bench.networks import FUSED, FUSION, SINGLE_TASK
from percept.bench.plan import (
    BATCHING_CONCURRENCY,
    OVERHEAD_ROUNDS,
    SINGLE_TASK_SWEEP,
    SWEEP,
    VIDEO_RAW,
    VIDEO_REPEATS,
    VIDEO_SCENES,
)
from percept.bench.precision import precision_accuracy
from percept.bench.report import markdown
from percept.bench.results import Bench
from serving.model_config import ensemble_name, network_model_name
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchOptions:
    out: Path = Path("artifacts/bench")  # work folder: exports, bench.json, history.jsonl
    markdown: Path = Path("BENCHMARKS.md")
    fresh: bool = False  # re-export the networks even if present
    quick: bool = False  # shorter windows: a smoke run, noisier


def run_bench(options: BenchOptions) -> Bench:
    """Measure everything, then write bench.json, the Markdown and one more history line."""
    bench = measure_all(options.out, options.fresh, options.quick)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "bench.json").write_text(json.dumps(record(bench), indent=2, default=str) + "\n")
    history = options.out / "history.jsonl"
    bench.history = read_history(history)
    options.markdown.write_text(markdown(bench))
    append_history(history, bench.figures, bench.machine_start.load_avg_1m if bench.machine_start else None)
    return bench


def measure_all(out: Path, fresh: bool, quick: bool) -> Bench:
    bench = Bench(out, machine_start=facts.measure_machine())
    t_all = time.perf_counter()
    names = (FUSED, *SINGLE_TASK)
    onnx = bench.stage(
        "export", lambda: networks.export_networks(out / "onnx", (*names, FUSION), fresh), True
    )
    assert onnx is not None  # a required stage raises instead
    from serving.onnx_meta import read_spec

    spec = read_spec(onnx[FUSED])
    bench.input_hw = spec.input_hw
    bench.weights = networks.weights_used(onnx)
    frames = world_frames(4 if quick else 8, seed=0, hw=spec.input_hw)
    images = measure.letterboxed(frames, spec)
    with tempfile.TemporaryDirectory(prefix="percept-bench-") as tmp:
        work = Path(tmp)
        # fusion-n only for its streams figure: on the default repository's server alone
        repo_on = served.build_repository([onnx[n] for n in (*names, FUSION)], work / "repo_batching", True)
        served.add_replay_model(repo_on, network_model_name(spec))  # figure (1)'s fixed cost
        repo_off = served.build_repository([onnx[n] for n in names], work / "repo_no_batching", False)
        bench.served = facts.read_served_model(repo_on, network_model_name(spec))
        threads = bench.served.ort.intra_op_threads
        min_time = 1.5 if quick else 3.0
        bench.torch = bench.stage(
            "torch",
            lambda: measure.torch_eager(networks.load_export_graph(FUSED), images, threads, min_time),
        )
        matmuls = [bench.stage("matmul_before", measure.matmul_peak)]
        bench.gflops_per_frame = bench.stage(
            "gflops_per_frame", lambda: measure.gflops_per_frame(FUSED, spec.input_hw)
        )
        ort = measure.OrtInProcess(onnx[FUSED], images, bench.served.ort)
        with contextlib.ExitStack() as servers:
            on = servers.enter_context(_start(bench, "server_start", repo_on))
            off = servers.enter_context(_start(bench, "server_start_no_batching", repo_off))
            bench.server = bench.stage(
                "server_metadata", lambda: facts.read_server(on.grpc_url, on.options.tritonserver)
            )
            singles = tuple(network_model_name(read_spec(onnx[n])) for n in SINGLE_TASK)
            urls = (on.grpc_url, off.grpc_url)
            matmuls.append(_sweeps(bench, spec, singles, frames, ort, urls, quick))
            _streams(bench, on.grpc_url, (spec, read_spec(onnx[FUSION])), frames, quick)
            _video(bench, on.grpc_url, spec, work, quick)
            bench.wire = bench.stage(
                "wire",
                lambda: served.wire_bytes(
                    on.grpc_url, ensemble_name(spec), network_model_name(spec), frames[0], spec
                ),
            )
        # the tune restarts a server of its own per candidate: after the others have stopped
        bench.tune = bench.stage(
            "tune", lambda: tuned.tune_best(onnx[FUSED], frames, work / "tune", out / "tune", quick)
        )
        # a server of its own, alone on the machine: CPU per frame is what it measures
        bench.around = bench.stage("around", lambda: around_figure(onnx[FUSED], work, quick))
    # after the servers stopped: minutes of CPU that must not share the machine with a timing
    bench.precision = bench.stage(
        "precision", lambda: precision_accuracy(FUSED, onnx[FUSED], out / "precision", quick)
    )
    peaks = [m for m in matmuls if m is not None]
    if peaks:  # the best seen: a crowded moment must not pass for the machine's peak
        bench.matmul = max(peaks, key=lambda m: m.gflops)
    bench.figures = figures(bench)
    bench.machine_end = facts.measure_machine()
    bench.seconds["total"] = time.perf_counter() - t_all
    return bench


def _start(bench: Bench, key: str, repository: Path):
    server = bench.stage(key, lambda: served.start_server(repository), True)
    assert server is not None  # a required stage raises instead
    return server


def _sweeps(
    bench: Bench,
    spec: ModelSpec,
    singles: tuple[str, ...],
    frames,
    ort: measure.OrtInProcess,
    urls: tuple[str, str],
    quick: bool,
) -> measure.MatmulPeak | None:
    """Overhead rounds, ORT by batch before and after the main sweeps, the batching on/off steps
    and the ensemble step; returns the matmul peak measured after the sweep."""
    url, url_off = urls
    raw = network_model_name(spec)
    min_time = 1.5 if quick else 3.0
    bench.overhead = bench.stage(
        "overhead", lambda: served.overhead_rounds(url, raw, frames, ort, OVERHEAD_ROUNDS, quick)
    )
    before = bench.stage("ort_before", lambda: ort.batches(min_time))
    schedule = [(k, c) for c in SWEEP for k in ("raw", "single_task") if k == "raw" or c in SINGLE_TASK_SWEEP]
    plans = {"raw": (url, (raw,)), "single_task": (url, singles)}
    bench.sweeps.update(
        bench.stage("sweeps_main", lambda: served.alternate(plans, schedule, frames, quick)) or {}
    )
    after = bench.stage("ort_after", lambda: ort.batches(min_time))
    if before is not None and after is not None:
        bench.ort = measure.best_of(before, after)
    matmul_after = bench.stage("matmul_after", measure.matmul_peak)
    plans = {"batching_on": (url, (raw,)), "no_batching": (url_off, (raw,))}
    schedule = [("batching_on", BATCHING_CONCURRENCY), ("no_batching", BATCHING_CONCURRENCY)] * 2
    bench.sweeps.update(
        bench.stage("sweeps_batching", lambda: served.alternate(plans, schedule, frames, quick)) or {}
    )
    ensemble = bench.stage(
        "sweep_ensemble",
        lambda: served.sweep(url, (ensemble_name(spec),), (BATCHING_CONCURRENCY,), frames, quick),
    )
    if ensemble is not None:
        bench.sweeps["ensemble"] = ensemble
    return matmul_after


def _streams(bench: Bench, url: str, specs: tuple[ModelSpec, ModelSpec], frames, quick: bool) -> None:
    """The camera-streams capacity of the camera and the fusion ensemble (world frames with LiDAR,
    at the networks' own input size: 384x640 raw frames by default)."""
    for network, spec in zip((FUSED, FUSION), specs, strict=True):
        model = ensemble_name(spec)
        found = bench.stage(f"streams_{network}", partial(served.streams_capacity, url, model, frames, quick))
        if found is not None:
            bench.streams[network] = found


def _video(bench: Bench, url: str, spec: ModelSpec, work: Path, quick: bool) -> None:
    """`percept video` over a drive long enough (a 40 s drive at 10 fps) that start-up and the final
    MP4 join are not the figure: raw (plan.VIDEO_RAW) with and without the annotated MP4, and
    through the ensemble (the default path)."""
    drive = world_frames(VIDEO_SCENES // 2 if quick else VIDEO_SCENES, seed=100, hw=spec.input_hw)
    video = served.write_video(drive * VIDEO_REPEATS, work / "drive.mp4")
    bench.video_frames = len(drive) * VIDEO_REPEATS
    flags = ("--raw", "--model", network_model_name(spec)) if VIDEO_RAW else ()
    bench.video = bench.stage("video", lambda: served.video_fps(url, video, work / "video_out", True, flags))
    bench.video_ensemble = bench.stage(
        "video_ensemble", lambda: served.video_fps(url, video, work / "video_out_ensemble")
    )
    bench.video_no_mp4 = bench.stage(
        "video_no_mp4", lambda: served.video_fps(url, video, work / "video_out_no_mp4", False, flags)
    )
    copy = work / "drive_2.mp4"  # the same drive twice: two inputs, so the local engine runs both at once
    copy.write_bytes(video.read_bytes())
    bench.engines = bench.stage("video_engines", lambda: served.engines(url, [video, copy], work / "engines"))


def record(bench: Bench) -> dict:
    """bench.json: the figures, every measurement and fact, the stage times and the sweeps."""
    skip = {"out", "figures", "sweeps", "streams", "seconds", "errors", "history"}
    measured = {f.name: getattr(bench, f.name) for f in dataclasses.fields(bench) if f.name not in skip}
    return {
        "figures": [{**dataclasses.asdict(fig), "ratio": fig.ratio, "met": fig.met} for fig in bench.figures],
        "facts": {k: _plain(v) for k, v in measured.items()},
        "seconds": bench.seconds,
        "errors": bench.errors,
        "sweeps": {k: v.to_dict() for k, v in bench.sweeps.items()},
        "streams": {k: v.result.to_dict() for k, v in bench.streams.items()},
    }


def _plain(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
