"""The reduced-precision ONNX stage of `percept export --engine onnx --precision fp16|int8`.

The verified FP32 ``model.onnx`` is converted (exporters.export.precision), checked against the
pinned TensorRT's ONNX parser (Q/DQ and FP16 must be accepted: the file is what a strongly typed
TensorRT build reads), and verified in ONNX Runtime against PyTorch by the same per-head
verification and metric parity as FP32, with the precision's bounds (exporters.export.tolerances).
Only a passing file gets its final name ``model.<precision>.onnx``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from exporters.export.options import ExportOptions
from exporters.export.precision import to_fp16, to_int8
from exporters.export.staging import STAGING_SUFFIX
from exporters.export.tolerances import TOLERANCES
from exporters.export.verify import VerifyReport
from serving.onnx_meta import reduced_name, verification_label
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


# INT8 missing a bound: keep this many of the most sensitive layers in FP32, then more (measured on
# cam-n at 384x640: 8 bring every head within its INT8 bounds, see sensitivity.py)
FALLBACK_STEPS = (8, 16, 32)


def precision_stage(
    fp32: Path, out: Path, spec: ModelSpec, options: ExportOptions, reference, progress: bool = False
) -> tuple[Path, VerifyReport]:
    """Write, check and verify ``out/model.<precision>.onnx``; returns (final path, report).

    INT8 that misses a bound gets its most sensitive layers (exporters.export.sensitivity) kept in
    FP32, :data:`FALLBACK_STEPS` at a time, on the one calibration; the report's ``notes`` name them
    with every attempt. A failed verification leaves no file under the final name (the caller
    fails on the report)."""
    from exporters.export.verify import ort_runner, verify

    precision = options.precision
    final = Path(out) / reduced_name(precision)
    final.unlink(missing_ok=True)  # an earlier run's file must not pass for this run's
    staging = final.with_name(final.name + STAGING_SUFFIX)
    vopts = replace(options.verify, tolerances=options.bounds or TOLERANCES[precision])
    reference = memoized(reference)
    label = verification_label(precision)

    def check() -> VerifyReport:
        from exporters.export.trt_compat import check_file, enforce

        enforce(check_file(staging), "tensorrt", final.name)
        return verify(ort_runner(staging), reference, spec, vopts, label, progress=progress)

    try:
        if precision == "fp16":
            to_fp16(fp32, staging, spec)
            report = check()
        else:
            report = _int8_with_fallback(fp32, staging, spec, options, check)
        if report.passed:
            os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)
    return final, report


def _int8_with_fallback(fp32: Path, staging: Path, spec: ModelSpec, options: ExportOptions, check):
    """Calibrate once, verify; on a missed bound keep the most sensitive layers in FP32 by editing
    the calibrated graph (precision.keep_fp32: no recalibration per step) and verify again."""
    from exporters.export.precision import exclude_layers, quantizable_nodes
    from exporters.export.sensitivity import layer_sensitivity, scope_name

    calibration = options.calibration
    assert calibration is not None  # checked by ExportOptions
    full = staging.with_name(staging.name + ".all")
    try:
        to_int8(fp32, full, spec, calibration)
        shutil.copyfile(full, staging)
        report = check()
        if report.passed:
            return report
        import onnx

        proto = onnx.load(str(fp32), load_external_data=False)
        scopes = {n.name: scope_name(n) for n in proto.graph.node}
        ranked = layer_sensitivity(fp32, full, spec, quantizable_nodes(proto), calibration)
        failing = [h.head for h in report.heads if not h.passed]
        order = [name for name, _ in ranked]  # most sensitive first, whichever head missed
        score = dict(ranked)
        attempts = [{"fp32_layers": 0, "passed": False, "failing": failing, "heads": report.lines()}]
        for count in FALLBACK_STEPS:
            kept = order[:count]
            log.warning(
                "int8 missed a bound (%s): keeping %d layers in FP32: %s",
                ", ".join(failing),
                len(kept),
                ", ".join(scopes[n] for n in kept),
            )
            exclude_layers(full, fp32, staging, spec, kept)
            report = check()
            failing = [h.head for h in report.heads if not h.passed]
            attempts.append(
                {
                    "fp32_layers": len(kept),
                    "passed": report.passed,
                    "failing": failing,
                    "heads": report.lines(),
                }
            )
            report.notes = {
                "fp32_layers": {scopes[n]: round(score[n], 5) for n in kept},  # module: local error
                "attempts": list(attempts),
            }
            if report.passed:
                break
        return report
    finally:
        full.unlink(missing_ok=True)


def memoized(runner):
    """``runner`` answering each distinct input batch once: every fallback attempt is compared
    with the same PyTorch outputs, computed on the first attempt only."""
    import hashlib

    import numpy as np

    seen: dict[str, dict] = {}

    def run(inputs: dict) -> dict:
        digest = hashlib.sha256()
        for name in sorted(inputs):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(inputs[name]).tobytes())
        key = digest.hexdigest()
        if key not in seen:
            seen[key] = runner(inputs)
        return seen[key]

    return run
