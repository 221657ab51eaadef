"""Served measurements: repositories, tritonserver, load-test sweeps, `percept video`, wire bytes."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from clients.loadtest import LoadTest, LoadTestOptions, LoadTestResult
from clients.loadtest.capacity import Capacity, capacity_result, find_capacity
from clients.loadtest.frames import Frame
from clients.loadtest.server_stats import ServerSplit
from percept.bench.measure import OrtInProcess
from percept.bench.plan import STREAMS_FPS, STREAMS_LIMIT, STREAMS_QUEUE, STREAMS_SLO_P99_MS
from serving.spec import ModelSpec

LOAD_WORKERS = 2  # load-generating processes of every sweep

# key -> (url, models) of a load test; a schedule runs their steps as (key, concurrency) pairs
Plans = dict[str, tuple[str, tuple[str, ...]]]


@dataclass(frozen=True)
class AtOne:
    """One concurrency-1 step: the client's p50 and Triton's own split of the same requests."""

    p50_ms: float
    avg_ms: float
    server: ServerSplit | None  # the network model's queue, input, infer, output (averages)

    @classmethod
    def of(cls, step) -> AtOne:
        return cls(step.latency.p50, step.latency.avg, step.network_split())

    @property
    def outside_ms(self) -> float:
        """Client and wire: the client's mean latency less Triton's mean time for a request."""
        return self.avg_ms - self.server.avg_request_ms if self.server else float("nan")


@dataclass(frozen=True)
class Overhead:
    """Served concurrency-1 p50s, each step between two in-process batch-1 p50s, and the steps of
    the replay model (the same served model answering from memory: the fixed cost of serving)."""

    served: list[AtOne]
    ort_p50_ms: list[float]
    replay: list[AtOne] = field(default_factory=list)

    @property
    def served_p50_ms(self) -> list[float]:
        return [s.p50_ms for s in self.served]


@dataclass(frozen=True)
class VideoRun:
    fps: float  # from the command's own summary.json
    command_wall_s: float
    summary: dict
    flags: tuple[str, ...] = ()  # added to `percept video INPUT --out --url --no-progress`


@dataclass(frozen=True)
class EngineRuns:
    """`percept video` over the same inputs and server, --engine local then --engine ray, each
    read from its own run.json (seconds, frames/s; the Ray run's timing: where its seconds went)."""

    local: dict
    ray: dict
    local_wall_s: float
    ray_wall_s: float
    workers: int
    shard_frames: int

    @property
    def ray_startup_s(self) -> float:
        """ray.init (a local runtime here) until the first worker actor answered."""
        return float(self.ray["timing"]["workers_ready"])

    @property
    def ray_steady_fps(self) -> float:
        """Frames over the seconds after start-up (the units and the joins)."""
        busy = float(self.ray["timing"]["joined"]) - self.ray_startup_s
        return self.ray["frames_processed"] / busy if busy > 0 else float("nan")


@dataclass(frozen=True)
class WireBytes:
    """One frame's response sizes (output tensors on the wire, gRPC framing aside)."""

    ensemble: int
    raw_network: int
    raw_fp32: dict[str, int]  # what shipping the heads' raw FP32 tensors would cost

    @property
    def raw_fp32_total(self) -> int:
        return sum(self.raw_fp32.values())


def build_repository(onnx: list[str | Path], out: Path, dynamic_batching: bool) -> Path:
    """The repository as `percept repo build` writes it, with or without the dynamic batcher on
    the network models (without it Triton runs each request on its own)."""
    from serving.model_config import BatchingOptions, RepositoryOptions
    from serving.repository import build_repository as build

    if out.exists():
        shutil.rmtree(out)
    build(onnx, out, RepositoryOptions(batching=BatchingOptions(dynamic=dynamic_batching)))
    return out


REPLAY_SUFFIX = "_replay"


def add_replay_model(repository: Path, model: str, replay: str = "TritonPythonModel") -> str:
    """Adds ``<model>_replay`` to a built repository: ``model``'s own folder and config under a new
    name, its model.py the bench's replay of it (``replay``: a class of
    :mod:`percept.bench.replay_model`, the network's by default)."""
    from serving.model_config import config_text, parse_config

    name = model + REPLAY_SUFFIX
    folder = repository / name
    shutil.copytree(repository / model, folder)
    cfg = parse_config((folder / "config.pbtxt").read_text())
    cfg.name = name
    (folder / "config.pbtxt").write_text(config_text(cfg))
    (folder / "1" / "model.py").write_text(
        f'"""The bench\'s replay of {model}."""\n\n'
        f"from percept.bench.replay_model import {replay} as TritonPythonModel  # noqa: F401\n"
    )
    return name


def start_server(repository: Path):
    from serving.launcher import ServerOptions, TritonServer

    return TritonServer(ServerOptions(repository=repository, startup_timeout_s=300)).start()


def sweep_options(url: str, models: tuple[str, ...], concurrency: tuple[int, ...], quick: bool):
    return LoadTestOptions(
        url=url,
        models=models,
        concurrency=concurrency,
        workers=LOAD_WORKERS,
        warmup_s=1.0 if quick else 2.0,
        window_s=1.5 if quick else 2.5,
        max_windows=3 if quick else 5,
        stable_windows=2 if quick else 3,
        tolerance=0.15,
        min_window_requests=12,
    )


def overhead_rounds(
    url: str, model: str, frames: list[Frame], ort: OrtInProcess, rounds: int, quick: bool
) -> Overhead:
    """Served latency at concurrency 1 and in-process latency at batch 1, alternated ``rounds``
    times (ORT before every served step and after the last). A step of ``model``'s replay (which
    :func:`add_replay_model` put in the same repository) follows each served step, so the fixed cost
    of serving is measured in the same minutes."""
    min_time = 1.0 if quick else 2.0
    ort_p50 = [ort.p50_ms(1, min_time)]
    served: list[AtOne] = []
    replayed: list[AtOne] = []
    with contextlib.ExitStack() as stack:
        tests = [
            stack.enter_context(LoadTest(_overhead_options(url, name, rounds, quick), frames, _label(frames)))
            for name in (model, model + REPLAY_SUFFIX)
        ]
        for _ in range(rounds):
            served.append(AtOne.of(tests[0].run_step(1)))
            replayed.append(AtOne.of(tests[1].run_step(1)))
            ort_p50.append(ort.p50_ms(1, min_time))
    return Overhead(served, ort_p50, replayed)


def _overhead_options(url: str, model: str, rounds: int, quick: bool) -> LoadTestOptions:
    return replace(
        sweep_options(url, (model,), (1,) * rounds, quick),
        warmup_s=1.0,
        window_s=1.5,
        stable_windows=2,
        max_windows=3,
    )


def alternate(plans: Plans, schedule: list[tuple[str, int]], frames: list[Frame], quick: bool):
    """Several load tests open side by side, their steps run in ``schedule`` order, so that a drift
    of the machine's load spreads over all of them."""
    with contextlib.ExitStack() as stack:
        tests, results = {}, {}
        for key, (url, models) in plans.items():
            levels = tuple(c for k, c in schedule if k == key)
            options = sweep_options(url, models, levels, quick)
            tests[key] = stack.enter_context(LoadTest(options, frames, _label(frames)))
            results[key] = tests[key].new_result()
        for key, concurrency in schedule:
            results[key].steps.append(tests[key].run_step(concurrency))
    return results


def sweep(
    url: str, models: tuple[str, ...], concurrency: tuple[int, ...], frames: list[Frame], quick: bool
) -> LoadTestResult:
    with LoadTest(sweep_options(url, models, concurrency, quick), frames, _label(frames)) as test:
        return test.run()


@dataclass(frozen=True)
class StreamsCapacity:
    """The capacity search of one model: how many camera streams it held, and the curve."""

    model: str
    capacity: Capacity
    result: LoadTestResult  # the search's steps in load order

    @property
    def best(self) -> int:
        return self.capacity.best


def streams_capacity(url: str, model: str, frames: list[Frame], quick: bool) -> StreamsCapacity:
    """The largest number of STREAMS_FPS camera streams ``model`` holds at p99 <= STREAMS_SLO_P99_MS
    (nothing failed or dropped), frames sent raw at their own size."""
    options = replace(
        sweep_options(url, (model,), (1,), quick),
        streams=(1,),
        fps=STREAMS_FPS,
        max_outstanding=STREAMS_QUEUE,
        min_window_requests=0,  # a step's length is its windows: 1 stream sends 10 frames/s
    )
    with LoadTest(options, frames, _label(frames)) as test:
        capacity = find_capacity(test, STREAMS_SLO_P99_MS, start=1, limit=STREAMS_LIMIT)
        return StreamsCapacity(model, capacity, capacity_result(test, capacity))


def _label(frames: list[Frame]) -> str:
    return f"{len(frames)} world frames"


def _payload(client, model: str, frame: Frame) -> list:
    """The one place the bench builds request tensors: those the load test would send ``model``."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    from clients.loadtest.payload import build_payload, fetch_model_info

    info = fetch_model_info(lambda m: client.get_model_config(m, as_json=True)["config"], model)
    inputs = []
    for name, array in build_payload(info, frame):
        inp = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(inp.set_data_from_numpy(array))
    return inputs


def response_bytes(url: str, model: str, frame: Frame) -> int:
    """Size of one ModelInferResponse for ``frame`` (the output tensors on the wire, gRPC framing
    aside), with the inputs the load test would send that model."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        return client.infer(model, _payload(client, model, frame)).get_response().ByteSize()


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


def wire_bytes(url: str, ensemble: str, raw_model: str, frame: Frame, spec: ModelSpec) -> WireBytes:
    return WireBytes(
        response_bytes(url, ensemble, frame), response_bytes(url, raw_model, frame), raw_fp32_bytes(spec)
    )


def write_video(frames: list[Frame], path: Path) -> Path:
    import cv2

    h, w = frames[0].image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def video_fps(
    url: str, video: Path, out: Path, annotate: bool = True, flags: tuple[str, ...] = ()
) -> VideoRun:
    """`percept video` as a user runs it (annotated MP4, JSONL, summary), with ``flags`` added; its
    summary's frames/s and CPU per frame."""
    args = [str(video), "--out", str(out), "--url", url, "--no-progress", *flags]
    wall = _percept_video([*args, *([] if annotate else ["--no-video"])])
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    return VideoRun(float(summary["fps"]), wall, summary, flags)


def _percept_video(args: list[str]) -> float:
    """`percept video ARGS` in a process of its own, as a user runs it; its wall seconds."""
    entry = "from percept.cli import main; main()"
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", entry, "video", *args], capture_output=True, text=True, timeout=600
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"percept video failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def _video_run(args: list[str], out: Path) -> tuple[dict, float]:
    wall = _percept_video(args)
    return json.loads((out / "run.json").read_text()), wall


def engines(
    url: str, videos: list[Path], work: Path, workers: int = 2, shard_frames: int = 100
) -> EngineRuns:
    """The local engine (``workers`` inputs at once) and the Ray engine (a local runtime, ``workers``
    actors, inputs cut into ``shard_frames`` units) on the same inputs, one after the other."""
    base = [*map(str, videos), "--url", url, "--no-progress"]
    local, local_wall = _video_run(
        [*base, "--out", str(work / "local"), "--parallel", str(workers)], work / "local"
    )
    ray_cmd = [*base, "--out", str(work / "ray"), "--engine", "ray", "--workers", str(workers)]
    ray, ray_wall = _video_run([*ray_cmd, "--shard-frames", str(shard_frames)], work / "ray")
    return EngineRuns(local, ray, local_wall, ray_wall, workers, shard_frames)
