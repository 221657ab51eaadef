"""Accuracy of the reduced-precision ONNX files beside FP32, on the bench's fused network.

What `percept export --engine onnx --precision fp16|int8` writes, made and verified by the same
stage (exporters.export.precision_stage: conversion, TensorRT parser check, ONNX Runtime against
PyTorch with the precision's bounds, INT8's per-layer FP32 fallback), and the FP32 ONNX verified
against the same PyTorch outputs. Per precision: the metrics on the validation scenes (ground truth
of the world), their deltas to PyTorch FP32, and whether every bound held. Accuracy, not speed:
on CPU, reduced precision is for assurance of what a GPU will run (DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PRECISION_SCENES = 100  # the export's default verification
QUICK_SCENES = 20
QUICK_CALIBRATION_IMAGES = 32
METRICS = ("map50", "map50_95", "miou", "abs_rel")


@dataclass
class PrecisionRow:
    precision: str
    passed: bool
    metrics: dict[str, float]  # on the world's ground truth
    delta: dict[str, float]  # metrics minus PyTorch FP32's on the same scenes
    failing: list[str] = field(default_factory=list)  # heads that missed a bound
    fp32_layers: list[str] = field(default_factory=list)  # INT8 layers kept in FP32 (fallback)


@dataclass
class PrecisionAccuracy:
    scenes: int
    calibration_images: int
    rows: list[PrecisionRow]


def _row(precision: str, report) -> PrecisionRow:
    ref, cand = report.metrics.get("reference", {}), report.metrics.get("candidate", {})
    keys = [k for k in METRICS if k in cand]
    return PrecisionRow(
        precision=precision,
        passed=report.passed,
        metrics={k: float(cand[k]) for k in keys},
        delta={k: float(cand[k]) - float(ref[k]) for k in keys if k in ref},
        failing=[h.head for h in report.heads if not h.passed],
        fp32_layers=sorted((report.notes or {}).get("fp32_layers", {})),
    )


def precision_accuracy(network: str, fp32_onnx: Path, out: Path, quick: bool) -> PrecisionAccuracy:
    """FP32, FP16 and INT8 ONNX of ``network`` (exported at ``fp32_onnx``), verified on the same
    validation scenes against one PyTorch run (memoized); the reduced files land in ``out``."""
    from exporters.export.graph import build_export_graph, run_eager
    from exporters.export.options import (
        ONNX_CALIBRATION_IMAGES,
        CalibrationOptions,
        ExportOptions,
        VerifyOptions,
    )
    from exporters.export.precision_stage import memoized, precision_stage
    from exporters.export.run import load_network
    from exporters.export.verify import ort_runner, verify
    from exporters.weights import shipped_checkpoint
    from serving.onnx_meta import read_spec

    scenes = QUICK_SCENES if quick else PRECISION_SCENES
    images = QUICK_CALIBRATION_IMAGES if quick else ONNX_CALIBRATION_IMAGES  # the export's default
    spec = read_spec(fp32_onnx)
    model = load_network(network, shipped_checkpoint(network), spec.input_hw)  # the ONNX's size
    graph = build_export_graph(model, model.spec).eval()
    reference = memoized(lambda inputs: run_eager(graph, inputs))
    vopts = VerifyOptions(scenes=scenes)
    fp32 = verify(ort_runner(fp32_onnx), reference, spec, vopts, "onnxruntime fp32 vs pytorch")
    rows = [_row("fp32", fp32)]
    out.mkdir(parents=True, exist_ok=True)
    for precision in ("fp16", "int8"):
        calibration = CalibrationOptions(images=images, method="percentile") if precision == "int8" else None
        options = ExportOptions(
            network=network,
            out_dir=out,
            checkpoint=shipped_checkpoint(network),
            input_hw=spec.input_hw,
            precision=precision,
            verify=vopts,
            calibration=calibration,
        )
        _, report = precision_stage(fp32_onnx, out, spec, options, reference)
        rows.append(_row(precision, report))
    return PrecisionAccuracy(scenes, images, rows)


def markdown(acc: PrecisionAccuracy | None, network: str) -> list[str]:
    """The BENCHMARKS.md section: one row per precision."""
    lines = ["", "## Reduced precision: accuracy (ONNX Runtime, CPU)", ""]
    if acc is None:
        return [*lines, "Not measured in this run (see the failed stages above)."]
    lines += [
        f"`{network}` as FP32, FP16-typed and QDQ INT8 ONNX (INT8: {acc.calibration_images} percentile",
        "calibration frames), each verified by `percept export`'s stage against PyTorch FP32 on",
        f"{acc.scenes} validation scenes; metrics on the world's ground truth, d = minus PyTorch FP32's",
        "on the same scenes.",
        "",
        "| precision | bounds | mAP50 | mAP | mIoU | AbsRel | d mAP50 | d mAP | d mIoU | d AbsRel "
        "| kept FP32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in acc.rows:
        bounds = "all met" if row.passed else "missed: " + ", ".join(row.failing)
        values = [f"{row.metrics[k]:.4f}" if k in row.metrics else "-" for k in METRICS]
        deltas = [f"{row.delta[k]:+.4f}" if k in row.delta else "-" for k in METRICS]
        n = len(row.fp32_layers)
        count = f"{n} layer{'s' if n != 1 else ''}" if n else "-"
        lines.append("| " + " | ".join([row.precision, bounds, *values, *deltas, count]) + " |")
    for row in (r for r in acc.rows if r.fp32_layers):
        lines += [
            "",
            f"{row.precision} layers kept in FP32 by the sensitivity fallback: " + ", ".join(row.fp32_layers),
        ]
    return lines
