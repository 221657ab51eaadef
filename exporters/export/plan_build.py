"""The cluster's plan builder: a missing or stale TensorRT plan built from a verified ONNX, on the node.

Runs in the NGC TensorRT image of the target release (deploy/Dockerfile.builder, the Job in
deploy/k8s/tensorrt-plans.yaml) with TensorRT, cuda-python and ONNX Runtime only: no torch. The plan
in ``out_dir`` is kept where its sidecar's key (serving.plan_key) equals the one of this ONNX, this
TensorRT and this GPU; otherwise it is built strongly typed from the FP16/INT8-typed ONNX (or FP32),
verified against ONNX Runtime on the same file with the precision's bounds, and written with its key.

    python -m exporters.export.plan_build ONNX OUT_DIR --profile 1,4,8 [--scenes 16]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from exporters.export.options import BatchProfile, TensorRTOptions, VerifyOptions
from serving.errors import PerceptionError
from serving.plan_key import PlanKey, file_sha256, plan_key, stale_reason

log = logging.getLogger(__name__)


def expected_key(onnx: Path, precision: str, profile: BatchProfile, trt_version: str, gpu) -> PlanKey:
    name, cc = gpu
    return plan_key(
        file_sha256(onnx), trt_version, cc, name, precision, (profile.min, profile.opt, profile.max)
    )


def options_for(provenance: dict, profile: BatchProfile) -> TensorRTOptions:
    """Strongly typed from a typed ONNX (its precision); FP32 as FP32: never the weak-typing path,
    which needs calibration on the GPU and which TensorRT 11 removed."""
    precision = provenance.get("precision", "fp32")
    return TensorRTOptions(profile=profile, precision=precision, strongly_typed=precision != "fp32")


def ensure_plan(onnx: Path, out_dir: Path, profile: BatchProfile, scenes: int = 16) -> tuple[Path, bool]:
    """(plan, built): the plan for this node, built only when missing or stale."""
    from exporters.export.cuda_buffers import device
    from exporters.export.onnx_export import read_provenance
    from exporters.export.tensorrt import build_and_verify, import_tensorrt
    from exporters.export.tensorrt_plan import plan_filename
    from exporters.export.verify import ort_runner
    from serving.errors import ExportError
    from serving.onnx_meta import read_spec

    trt = import_tensorrt()
    gpu = device(0)
    options = options_for(read_provenance(onnx), profile)
    key = expected_key(onnx, options.precision, profile, str(trt.__version__), gpu)
    plan = Path(out_dir) / plan_filename(options.plan_name, gpu[1])
    reason = stale_reason(plan, key)
    if reason is None:
        log.info("%s is current for %s", plan, gpu[0])
        return plan, False
    log.info("building: %s", reason)
    spec = read_spec(onnx)
    verify = VerifyOptions(scenes=scenes, batch=profile.opt, metrics=False)
    built, report = build_and_verify(onnx, Path(out_dir), options, ort_runner(onnx), spec, verify)
    if not report.passed:
        raise ExportError(f"the {options.precision} plan of {onnx} failed verification against ONNX Runtime")
    return built, True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m exporters.export.plan_build")
    parser.add_argument("onnx", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--profile", default="1,4,8", help="min,opt,max batch")
    parser.add_argument("--scenes", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        lo, opt, hi = (int(b) for b in args.profile.split(","))
        plan, built = ensure_plan(args.onnx, args.out_dir, BatchProfile(lo, opt, hi), args.scenes)
    except (PerceptionError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{plan} {'built' if built else 'current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
