"""The path around the engine: what the server spends per frame outside the network.

On a GPU host the engine is fast and the host CPU around it decides throughput: frames/s <= cores /
(server CPU per frame). This measures that CPU with the network answering from memory (replay
models: the same models, the network's ONNX Runtime run done once per batch size and then answered
from memory), for three requests: a model-size letterboxed frame to the raw network, a raw 720p
frame to the frame model (one model: letterbox and postprocess around the replayed network), and a
720p JPEG to the pipeline (decode step -> frame model). The load is the project's own load test;
the CPU is tritonserver's and its stubs' (``/proc``), idle to idle, divided by the requests the
server answered over the same span.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from clients.loadtest import LoadTest
from clients.loadtest.frames import Frame

AROUND_CONCURRENCY = 4
HOST_CORES = 16  # the GPU host the figure speaks of (the 16-core host)
JPEG_720P_GOAL_MS, RAW_720P_GOAL_MS = 3.0, 2.5  # server CPU per frame outside the network


@dataclass(frozen=True)
class AroundRow:
    request: str  # what was sent
    model: str
    frames_per_s: float  # on this machine, at AROUND_CONCURRENCY
    server_cpu_ms: float  # tritonserver + stubs, per answered request

    @property
    def host_fps(self) -> float:
        """Frames/s a HOST_CORES-core host could feed at this CPU per frame."""
        return HOST_CORES * 1000.0 / self.server_cpu_ms if self.server_cpu_ms else float("nan")


@dataclass(frozen=True)
class Around:
    rows: tuple[AroundRow, ...]

    def row(self, request: str) -> AroundRow:
        return next(r for r in self.rows if r.request == request)


MODEL_SIZE, RAW_720P, JPEG_720P = "model-size raw (letterboxed)", "720p raw frame", "720p JPEG"


def add_frame_replay(repository: Path, frame_model: str, ensemble: str) -> tuple[str, str]:
    """``<frame>_replay`` (the frame model with its network's run replayed) and ``<ensemble>_replay``
    (decode step -> that model) in a built repository."""
    from percept.bench.served import REPLAY_SUFFIX, add_replay_model
    from serving.model_config import config_text, parse_config

    frame = add_replay_model(repository, frame_model, "FrameReplay")
    name = ensemble + REPLAY_SUFFIX
    ens = parse_config((repository / ensemble / "config.pbtxt").read_text())
    ens.name = name
    for step in ens.ensemble_scheduling.step:
        if step.model_name == frame_model:
            step.model_name = frame
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(config_text(ens))
    return frame, name


def measure_around(
    url: str, pid: int, models: dict[str, str], frames_720p: list[Frame], quick: bool
) -> Around:
    """One load-test step per request kind; ``models``: request kind -> the replay model it goes to."""
    from percept.bench.served import sweep_options
    from serving.stubs import server_cpu_seconds

    rows = []
    for request, model in models.items():
        options = replace(
            sweep_options(url, (model,), (AROUND_CONCURRENCY,), quick),
            encoding="jpeg" if request == JPEG_720P else "raw",
        )
        with LoadTest(options, frames_720p, "720p world frames") as test:
            before = server_cpu_seconds(pid)
            step = test.run_step(AROUND_CONCURRENCY)
            spent = server_cpu_seconds(pid) - before
        answered = max(1, step.server_successes_total.get(model, step.client_successes_total))
        rows.append(AroundRow(request, model, step.throughput, 1000.0 * spent / answered))
    return Around(tuple(rows))


def around_figure(onnx: Path, work: Path, quick: bool) -> Around:
    """Build the repository of ``onnx`` (the fused camera network) with its replays, serve it, measure."""
    from clients.loadtest.frames import world_frames
    from percept.bench import served
    from serving.model_config import ensemble_name, frame_model_name, network_model_name
    from serving.onnx_meta import read_spec

    spec = read_spec(onnx)
    repo = served.build_repository([onnx], work / "repo_around", True)
    raw = served.add_replay_model(repo, network_model_name(spec))
    frame, pipeline = add_frame_replay(repo, frame_model_name(spec), ensemble_name(spec))
    frames = world_frames(4 if quick else 8, seed=0, hw=(720, 1280))
    with served.start_server(repo) as server:
        assert server.pid is not None
        models = {MODEL_SIZE: raw, RAW_720P: frame, JPEG_720P: pipeline}
        return measure_around(server.grpc_url, server.pid, models, frames, quick)
