"""What the machine and the server are, measured or read where the bench runs; never typed in."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from serving.ort_session import OrtSettings

PACKAGES = ("onnxruntime", "torch", "numpy", "tritonclient", "nvidia-pytriton", "onnx")

# what a network model's config says it runs on, in the report's words
_ENGINE_WORDS = {
    "python": "python backend running ONNX Runtime",
    "onnxruntime_onnx": "onnxruntime backend",
    "tensorrt_plan": "TensorRT",
}


@dataclass(frozen=True)
class MachineFacts:
    cpu: str
    cores: int  # usable by this process (its CPU affinity), not the host's count
    avx512: bool
    gpu: str | None  # the first GPU's name, None without one
    load_avg_1m: float

    def describe(self) -> str:
        simd = "AVX-512" if self.avx512 else "no AVX-512"
        return f"{self.cpu}, {self.cores} cores ({simd}), {self.gpu or 'no GPU'}"


def measure_machine() -> MachineFacts:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    names = [v for k, v in fields if k == "model name"]
    flags = next((set(v.split()) for k, v in fields if k == "flags"), set())
    cpu = names[0] if names else platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return MachineFacts(cpu, cores, "avx512f" in flags, _gpu_name(), os.getloadavg()[0])


def _gpu_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        proc = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
    return names[0].strip() if names else None


@dataclass(frozen=True)
class ServedModelFacts:
    """The served network model as the repository builder wrote its config.pbtxt."""

    name: str
    engine: str  # the config's backend or platform
    ort: OrtSettings
    instances: int
    dynamic_batching: bool
    max_batch_size: int

    @property
    def engine_words(self) -> str:
        return _ENGINE_WORDS.get(self.engine, self.engine)


def read_served_model(repository: Path, model: str) -> ServedModelFacts:
    from serving.model_config import parse_config

    cfg = parse_config((repository / model / "config.pbtxt").read_text())
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    return ServedModelFacts(
        name=cfg.name,
        engine=cfg.backend or cfg.platform,
        ort=OrtSettings.from_parameters(params),
        instances=sum(g.count for g in cfg.instance_group),
        dynamic_batching=cfg.HasField("dynamic_batching"),
        max_batch_size=cfg.max_batch_size,
    )


@dataclass(frozen=True)
class ServerFacts:
    """The running tritonserver, as it describes itself."""

    name: str
    version: str
    binary: str  # where the binary came from, e.g. "inside nvidia-pytriton 0.7.0"


def read_server(url: str, binary: Path | None) -> ServerFacts:
    """``binary``: the tritonserver the launcher ran; None means the nvidia-pytriton wheel's."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(url) as client:
        meta = client.get_server_metadata()
    where = str(binary) if binary else f"inside nvidia-pytriton {_version('nvidia-pytriton')}"
    return ServerFacts(meta.name, meta.version, where)


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{pkg: _version(pkg) for pkg in PACKAGES}}


def _version(pkg: str) -> str:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"
