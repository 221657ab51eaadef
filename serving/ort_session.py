"""The one ONNX Runtime session factory: every place that runs an ONNX file builds its session here.

Torch-free (the served python-backend model, the local client and the export stages all use it).
Options: execution providers (CPU unless given), intra-op threads (0: ONNX Runtime's choice), one
inter-op thread, whether idle worker threads spin (spinning steals the CPU from other instances and
processes on a busy host) and the graph optimisation level. ``None`` keeps ONNX Runtime's default,
so a caller that does not ask gets what a bare ``InferenceSession`` would give it.

The served network model's settings travel in its config.pbtxt parameters (:class:`OrtSettings`):
the python-backend model builds its session from them with :func:`network_session`, and so does the
bench's in-process measurement after reading the same parameters back from the repository it built,
so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.errors import MissingDependencyError, PerceptionError, ServingError

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def _ort(extra: str):
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", extra) from exc
    return ort


def session_options(
    intra_op_threads: int = 0,
    inter_op_threads: int | None = None,
    allow_spinning: bool | None = None,
    optimization: str | None = None,
    log_severity: int | None = None,
    extra: str = "server",
):
    """``onnxruntime.SessionOptions`` from the factory's options (see the module docstring)."""
    ort = _ort(extra)
    if optimization is not None and optimization not in OPTIMIZATION_LEVELS:
        raise ServingError(
            f"graph optimisation must be one of {', '.join(OPTIMIZATION_LEVELS)}, got {optimization!r}"
        )
    opts = ort.SessionOptions()
    if intra_op_threads:
        opts.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads is not None:
        opts.inter_op_num_threads = int(inter_op_threads)
    if allow_spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if optimization is not None:
        level = ort.GraphOptimizationLevel
        opts.graph_optimization_level = {
            "disable": level.ORT_DISABLE_ALL,
            "basic": level.ORT_ENABLE_BASIC,
            "extended": level.ORT_ENABLE_EXTENDED,
            "all": level.ORT_ENABLE_ALL,
        }[optimization]
    if log_severity is not None:
        opts.log_severity_level = int(log_severity)
    return opts


def create_session(
    path: str | Path,
    *,
    providers: list[str] | None = None,
    intra_op_threads: int = 0,
    inter_op_threads: int | None = None,
    allow_spinning: bool | None = None,
    optimization: str | None = None,
    log_severity: int | None = None,
    error: type[PerceptionError] = ServingError,
    extra: str = "server",
):
    """An ``onnxruntime.InferenceSession`` on ``path``.

    A file ONNX Runtime cannot load raises ``error`` (one line naming the file); a missing
    onnxruntime raises MissingDependencyError with the install hint of ``extra``.
    """
    ort = _ort(extra)
    opts = session_options(
        intra_op_threads, inter_op_threads, allow_spinning, optimization, log_severity, extra
    )
    try:
        return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise error(f"{path}: ONNX Runtime cannot load it: {type(exc).__name__}: {exc}") from exc


PROVIDERS = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class OrtSettings:
    """ONNX Runtime threading of one network instance."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1  # one request batch runs its ops in order; parallelism is intra-op
    allow_spinning: bool = True  # ONNX Runtime's own default where the config says nothing

    def to_parameters(self) -> dict[str, str]:
        """The python-backend network model's config parameters that carry these settings."""
        return {
            "intra_op_threads": str(self.intra_op_threads),
            "allow_spinning": str(int(self.allow_spinning)),
        }

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> OrtSettings:
        """From a network model's config parameters (``key -> string_value``), as written above."""
        return cls(
            intra_op_threads=int(params.get("intra_op_threads", "1")),
            allow_spinning=params.get("allow_spinning", "1") != "0",
        )

    def describe(self) -> str:
        spin = "spinning on" if self.allow_spinning else "spinning off"
        return f"{self.intra_op_threads} intra-op threads, {self.inter_op_threads} inter-op thread, {spin}"


def network_session(onnx_path: str | Path, settings: OrtSettings):
    """An ``onnxruntime.InferenceSession`` on the CPU with ``settings``."""
    # spinning worker threads steal the CPU from other instances and processes on a busy host
    return create_session(
        onnx_path,
        providers=list(PROVIDERS),
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        allow_spinning=settings.allow_spinning,
    )
