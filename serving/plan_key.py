"""The key a TensorRT plan is valid for, and the Triton-side check that refuses a plan built for another.

A serialized engine is valid for one (ONNX sha256, TensorRT version, GPU compute capability and name,
precision, batch profile): another ONNX means other weights, another TensorRT cannot deserialize it,
another GPU may lack its kernels or tactics. The export stage records :class:`PlanKey` in the plan's
sidecar (``plan_key``); the cluster's plan builder (exporters.export.plan_build, a Kubernetes Job in
the NGC TensorRT image, deploy/k8s/tensorrt-plans.yaml) builds a plan whose key is missing or stale;
``python -m serving.plan_key check`` in the Triton pod refuses, with one line, a plan whose key does
not match the node before Triton loads it. Torch- and TensorRT-free.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from serving.errors import ServingError
from serving.tensorrt_pin import version_key

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class PlanKey:
    onnx_sha256: str
    tensorrt_version: str  # major.minor.patch: what deserialization needs to match
    compute_capability: str  # "9.0"
    gpu_name: str
    precision: str
    profile: tuple[int, int, int]  # min, opt, max batch

    def __post_init__(self) -> None:
        if len(self.onnx_sha256) != 64:
            raise ServingError(f"onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}")
        if self.precision not in PRECISIONS:
            raise ServingError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        lo, opt, hi = self.profile
        if not 1 <= lo <= opt <= hi:
            raise ServingError(f"profile must be 1 <= min <= opt <= max, got {self.profile}")

    def as_dict(self) -> dict:
        return {**asdict(self), "profile": list(self.profile)}

    @classmethod
    def from_dict(cls, doc: dict) -> PlanKey:
        return cls(**{**doc, "profile": tuple(int(b) for b in doc["profile"])})

    def digest(self) -> str:
        """sha256 of the key: a cache file name or label for one valid plan."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def mismatches(self, other: PlanKey) -> list[str]:
        """``field: recorded -> expected`` for each field where ``other`` differs from this key."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [f"{k}: {mine[k]} -> {theirs[k]}" for k in mine if mine[k] != theirs[k]]


def plan_key(
    onnx_sha256: str,
    tensorrt_version: str,
    compute_capability: tuple[int, int],
    gpu_name: str,
    precision: str,
    profile: tuple[int, int, int],
) -> PlanKey:
    """The key, normalised: TensorRT as major.minor.patch, the GPU name stripped."""
    return PlanKey(
        onnx_sha256=onnx_sha256,
        tensorrt_version=".".join(str(v) for v in version_key(tensorrt_version)),
        compute_capability=f"{compute_capability[0]}.{compute_capability[1]}",
        gpu_name=gpu_name.strip(),
        precision=precision,
        profile=(int(profile[0]), int(profile[1]), int(profile[2])),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_key(plan: Path) -> PlanKey | None:
    """The key in the plan's sidecar (``<plan>.json``), or None where there is none."""
    sidecar = Path(plan).with_name(Path(plan).name + ".json")
    if not sidecar.is_file():
        return None
    doc = json.loads(sidecar.read_text()).get("plan_key")
    return PlanKey.from_dict(doc) if doc else None


def stale_reason(plan: Path, expected: PlanKey) -> str | None:
    """Why ``plan`` is not the plan for ``expected`` (missing, no key, which fields differ), or None."""
    if not Path(plan).is_file():
        return f"{plan} does not exist"
    recorded = recorded_key(plan)
    if recorded is None:
        return f"{plan} has no plan_key in its sidecar"
    diff = recorded.mismatches(expected)
    return f"{Path(plan).name} was built for another target ({'; '.join(diff)})" if diff else None


def check_plan_key(plan: Path, expected: PlanKey) -> None:
    reason = stale_reason(plan, expected)
    if reason:
        raise ServingError(
            f"{reason}: rebuild it on this node (the plan builder, deploy/k8s/tensorrt-plans.yaml)"
        )


def node_gpu(index: int = 0) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of the node's GPU from nvidia-smi (in every NGC container)."""
    query = ["nvidia-smi", f"--id={index}", "--query-gpu=name,compute_cap", "--format=csv,noheader"]
    try:
        out = subprocess.run(query, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServingError(f"cannot ask nvidia-smi for the GPU: {exc}") from exc
    return parse_gpu_line(out)


def parse_gpu_line(line: str) -> tuple[str, tuple[int, int]]:
    """``"NVIDIA H100 80GB HBM3, 9.0"`` -> ("NVIDIA H100 80GB HBM3", (9, 0))."""
    name, _, cc = line.strip().splitlines()[0].rpartition(",")
    major, _, minor = cc.strip().partition(".")
    if not name or not major.isdigit() or not minor.isdigit():
        raise ServingError(f"unexpected nvidia-smi answer {line.strip()!r}")
    return name.strip(), (int(major), int(minor))


def main(argv: list[str] | None = None) -> int:
    """``check PLAN_DIR --onnx ONNX --precision P --profile MIN,OPT,MAX [--tensorrt-version V]``:
    exit 1 with one line where the plan for this node's GPU is missing or stale."""
    import argparse

    from serving.tensorrt_pin import target_tensorrt

    parser = argparse.ArgumentParser(prog="python -m serving.plan_key")
    parser.add_argument("command", choices=["check"])
    parser.add_argument("plan_dir", type=Path)
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--precision", choices=PRECISIONS, required=True)
    parser.add_argument("--profile", required=True, help="min,opt,max batch")
    parser.add_argument("--plan-name", default="model.plan")
    parser.add_argument("--tensorrt-version", default=None, help="default: serving.ngc's target")
    args = parser.parse_args(argv)
    try:
        name, cc = node_gpu()
        profile = tuple(int(b) for b in args.profile.split(","))
        trt_version = args.tensorrt_version or target_tensorrt()
        expected = plan_key(file_sha256(args.onnx), trt_version, cc, name, args.precision, profile)  # type: ignore[arg-type]
        stem = args.plan_name.removesuffix(".plan")
        check_plan_key(args.plan_dir / f"{stem}_sm{cc[0]}{cc[1]}.plan", expected)
    except (ServingError, ValueError, OSError) as exc:
        message = f"error: {exc}"
        print(message, file=sys.stderr)
        termination_log = Path("/dev/termination-log")  # what `kubectl describe pod` shows
        if termination_log.parent.is_dir() and termination_log.exists():
            termination_log.write_text(message + "\n")
        return 1
    print(f"plan for {name} (sm{cc[0]}{cc[1]}) matches {args.onnx.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
