"""The served network model's ONNX Runtime session, configured from its config.pbtxt parameters.

The python-backend network model builds its session here, and so does the bench's in-process
measurement after reading the same parameters back from the repository it built: the two cannot
drift apart, and no setting is written down twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from serving.ort_session import create_session

PROVIDERS = ("CPUExecutionProvider",)


@dataclass(frozen=True)
class OrtSettings:
    """ONNX Runtime threading of one network instance."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1  # one request batch runs its ops in order; parallelism is intra-op
    allow_spinning: bool = True  # ONNX Runtime's own default where the config says nothing

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> OrtSettings:
        """From a network model's config parameters (``key -> string_value``)."""
        return cls(
            intra_op_threads=int(params.get("intra_op_threads", "1")),
            allow_spinning=params.get("allow_spinning", "1") != "0",
        )

    def describe(self) -> str:
        spin = "spinning on" if self.allow_spinning else "spinning off"
        return f"{self.intra_op_threads} intra-op threads, {self.inter_op_threads} inter-op thread, {spin}"


def network_session(onnx_path: str | Path, settings: OrtSettings):
    """An ``onnxruntime.InferenceSession`` on the CPU with ``settings`` (serving.ort_session's factory)."""
    # spinning worker threads steal the CPU from other instances and processes on a busy host
    return create_session(
        onnx_path,
        providers=list(PROVIDERS),
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        allow_spinning=settings.allow_spinning,
    )
