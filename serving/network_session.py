"""The served network model's ONNX Runtime session, configured from its config.pbtxt parameters.

The python-backend network model builds its session here, and so does the bench's in-process
measurement after reading the same parameters back from the repository it built: the two cannot
drift apart, and no setting is written down twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    """An ``onnxruntime.InferenceSession`` on the CPU with ``settings``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings.intra_op_threads
    opts.inter_op_num_threads = settings.inter_op_threads
    # spinning worker threads steal the CPU from other instances and processes on a busy host
    opts.add_session_config_entry("session.intra_op.allow_spinning", str(int(settings.allow_spinning)))
    return ort.InferenceSession(str(onnx_path), opts, providers=list(PROVIDERS))
