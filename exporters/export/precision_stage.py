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
from dataclasses import replace
from pathlib import Path

from exporters.export.options import ExportOptions
from exporters.export.precision import reduced_name, to_fp16, to_int8
from exporters.export.staging import STAGING_SUFFIX
from exporters.export.tolerances import TOLERANCES
from exporters.export.verify import VerifyReport
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


def precision_stage(
    fp32: Path, out: Path, spec: ModelSpec, options: ExportOptions, reference, progress: bool = False
) -> tuple[Path, VerifyReport]:
    """Write, check and verify ``out/model.<precision>.onnx``; returns (final path, report).

    A failed verification leaves no file under the final name (the caller fails on the report)."""
    from exporters.export.trt_compat import check_file, enforce
    from exporters.export.verify import ort_runner, verify

    precision = options.precision
    final = Path(out) / reduced_name(precision)
    final.unlink(missing_ok=True)  # an earlier run's file must not pass for this run's
    staging = final.with_name(final.name + STAGING_SUFFIX)
    bounds = options.bounds or TOLERANCES[precision]
    vopts = replace(options.verify, tolerances=bounds)
    try:
        if precision == "fp16":
            to_fp16(fp32, staging, spec)
        else:
            assert options.calibration is not None  # checked by ExportOptions
            to_int8(fp32, staging, spec, options.calibration)
        enforce(check_file(staging), "tensorrt", final.name)
        label = f"onnxruntime {precision} vs pytorch"
        report = verify(ort_runner(staging), reference, spec, vopts, label, progress=progress)
        if report.passed:
            os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)
    return final, report
