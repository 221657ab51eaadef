"""`percept video` options, exit codes and the names of the files it writes per input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clients.errors import (
    CancelledError,
    DeadlineExceededError,
    ModelNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerUnavailableError,
)
from clients.options import ClientOptions, RetryPolicy
from clients.video.sources import DEFAULT_IMAGE_FPS
from serving.errors import SpecError
from serving.spec import ENSEMBLE_FUSION


class ModelWentAwayError(ServerUnavailableError):
    """NOT_FOUND for a model that answered earlier in the same run: the server is going down
    (Triton unloads every model on SIGTERM and answers "has no available versions" until it exits).
    The input stops resumably, like any other "server went away"."""


# errors that stop an input (every later frame would fail the same way), unlike a bad frame:
# "the server is not there / not able now" stops it resumably, the others fail it
RESUMABLE_ERRORS = (ServerUnavailableError, DeadlineExceededError, ResourceExhaustedError, CancelledError)
STOP_ERRORS = (*RESUMABLE_ERRORS, ModelNotFoundError, PermissionDeniedError)
# exit codes of `percept video`: 4 = every input complete, but some frames failed (each recorded
# with its error in results.jsonl; an input whose every frame failed is failed: 1)
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_FRAME_ERRORS = 0, 1, 3, 4
RESULTS, SUMMARY, VIDEO, DENSE = "results.jsonl", "summary.json", "annotated.mp4", "dense"
FRAMES = "frames"  # --save-frames: the annotated frames as PNGs
VIDEO_RETRY = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=8.0)
ENGINES = ("local", "ray")
RESUME_HINT = "stopped cleanly: run again with --resume"  # after an input stopped by RESUMABLE_ERRORS


@dataclass(frozen=True)
class RayOptions:
    """`--engine ray`: where the cluster is, the pool of worker actors, how inputs are cut.

    ``address`` None starts a local Ray runtime on this machine with ``workers * num_cpus`` CPUs
    (the pool, nothing more); "auto", "host:port" or "ray://host:10001" joins an existing cluster.
    ``shard_frames`` cuts inputs into frame ranges of that many frames (None: one unit per input).
    ``num_cpus`` / ``num_gpus``: what each worker actor reserves. A unit is tried at most
    ``max_attempts`` times in a run (a worker that died, a unit that failed), then reported failed.
    """

    address: str | None = None
    workers: int = 2
    shard_frames: int | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_attempts < 1:
            raise SpecError("workers and max_attempts must be >= 1")
        if self.shard_frames is not None and self.shard_frames < 1:
            raise SpecError(f"shard_frames must be >= 1, got {self.shard_frames}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise SpecError("num_cpus and num_gpus must be >= 0")


@dataclass(frozen=True)
class VideoOptions:
    out_dir: Path
    backend: str = "triton"  # "triton" | "local"
    client: ClientOptions = field(default_factory=lambda: ClientOptions(timeout_s=60.0, retry=VIDEO_RETRY))
    fusion_model: str = ENSEMBLE_FUSION
    onnx: Path | None = None  # --backend local: the camera model
    fusion_onnx: Path | None = None  # --backend local: the fusion model
    window: int = 8
    parallel_inputs: int = 2
    resume: bool = False
    write_video: bool = True
    save_dense: bool = False
    save_frames: bool = False  # each annotated frame as a PNG too (FRAMES)
    image_fps: float = DEFAULT_IMAGE_FPS  # frame rate of an image folder (its timestamps, its video)
    save_maps: bool = False  # lossless class map and depth PNGs per frame (clients.video.maps)
    segment_frames: int = 300
    max_frames: int | None = None
    progress: bool = True
    # OpenCV's own worker threads while the run lasts: its per-call thread pool (resize, blend,
    # colour maps) costs more CPU than it saves on frames this size, CPU taken from a server on the
    # same cores (measured: 1.7 ms per 384x640 frame with 2 threads, clients.stagecpu "other")
    opencv_threads: int = 1
    engine: str = "local"  # "local" (this process) | "ray" (a pool of Ray actors, clients.video.ray_engine)
    ray: RayOptions = field(default_factory=RayOptions)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise SpecError(f"engine must be 'local' or 'ray', got {self.engine!r}")
        if self.window < 1 or self.parallel_inputs < 1 or self.opencv_threads < 1:
            raise SpecError("window, parallel_inputs and opencv_threads must be >= 1")
        if self.image_fps <= 0:
            raise SpecError(f"the frame rate of image folders must be > 0, got {self.image_fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise SpecError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.backend not in ("triton", "local"):
            raise SpecError(f"backend must be 'triton' or 'local', got {self.backend!r}")
