"""The orchestrator of `percept export`: network -> ONNX -> verify -> [TensorRT -> verify] -> report.

Every artifact is written under a temporary name, verified, and only then renamed to its final
name (``model.onnx``, ``model_sm<cc>.plan``); a failed stage removes its partial file, writes
``report.failed.json`` and raises :class:`ExportError`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from exporters.export.options import ExportOptions, OnnxOptions
from exporters.export.verify import VerifyReport
from serving.errors import ExportError, SpecError

log = logging.getLogger(__name__)

ONNX_NAME = "model.onnx"
REPORT_NAME = "report.json"
FAILED_REPORT_NAME = "report.failed.json"


@dataclass
class ExportResult:
    onnx: Path
    report: Path
    verification: list[VerifyReport] = field(default_factory=list)
    engine: Path | None = None

    def lines(self) -> list[str]:
        return [f"[{r.label}] {line}" for r in self.verification for line in r.lines()]


def load_network(network: str, checkpoint: Path | None, input_hw: tuple[int, int] | None, seed: int = 0):
    """The registered network with the checkpoint's weights (random init from ``seed`` without one)."""
    from exporters.networks import NETWORKS

    if network not in NETWORKS:
        raise SpecError(f"unknown network {network!r}; registered: {', '.join(NETWORKS)}")
    import torch

    from exporters.networks import build_network, load_checkpoint

    if checkpoint is not None:
        try:
            model, _ = load_checkpoint(checkpoint, network=network, input_hw=input_hw)
        except (ExportError, SpecError) as exc:  # torch's unpickling errors run over many lines
            raise type(exc)(str(exc).strip().splitlines()[0]) from exc
        return model.eval()
    log.warning("no checkpoint for %s: exporting a random init (seed %d)", network, seed)
    torch.manual_seed(seed)
    return build_network(network, input_hw or (384, 640)).eval()


def run_export(options: ExportOptions, progress: bool = False) -> ExportResult:
    """Run every stage ``options`` asks for; returns the artifacts and verification reports."""
    from exporters.export.graph import build_deploy_model, run_eager
    from exporters.export.onnx_export import export_onnx, read_provenance
    from exporters.export.trt_compat import compat_stage
    from exporters.export.verify import ort_runner, verify

    if options.engine == "tensorrt":
        from exporters.export.tensorrt import import_tensorrt

        import_tensorrt()  # fail before minutes of ONNX work, not after
    model = load_network(options.network, options.checkpoint, options.input_hw, options.seed)
    spec = model.spec
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final, report_path, failed_path = out / ONNX_NAME, out / REPORT_NAME, out / FAILED_REPORT_NAME
    for stale in (final, report_path, failed_path):
        stale.unlink(missing_ok=True)  # an earlier run's outputs must not pass for this run's
    onnx_opts = options.onnx or OnnxOptions(profile=options.profile, checkpoint=options.checkpoint)
    extra = {"seed": options.seed} if options.checkpoint is None else {}
    staging = out / (ONNX_NAME + ".unverified")
    export_onnx(model, staging, onnx_opts, provenance_extra=extra)
    deploy = build_deploy_model(model, spec)

    def reference(inputs):
        return run_eager(deploy, inputs)

    reports = []
    try:
        reports.append(
            verify(
                ort_runner(staging),
                reference,
                spec,
                options.verify,
                "onnxruntime vs pytorch",
                progress=progress,
            )
        )
        fail_if(reports, out, spec)
        os.replace(staging, final)
    finally:
        staging.unlink(missing_ok=True)
    compat_stage(final, options.engine)
    engine = None
    if options.engine == "tensorrt":
        from exporters.export.tensorrt import build_and_verify

        assert options.tensorrt is not None  # checked by ExportOptions
        engine, trt_report = build_and_verify(
            final, out, options.tensorrt, reference, spec, options.verify, progress
        )
        reports.append(trt_report)
        fail_if(reports, out, spec)
    document = {
        "network": spec.name,
        "spec": spec.to_dict(),
        "spec_hash": spec.spec_hash(),
        "provenance": read_provenance(final),
        "artifacts": {"onnx": final.name, **({"engine": engine.name} if engine else {})},
        "verification": [r.to_dict() for r in reports],
        "passed": True,
    }
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, report_path)
    return ExportResult(final, report_path, reports, engine)


def fail_if(reports: list[VerifyReport], out: Path, spec) -> None:
    last = reports[-1]
    if last.passed:
        return
    document = {"network": spec.name, "passed": False, "verification": [r.to_dict() for r in reports]}
    (out / FAILED_REPORT_NAME).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    failing = "; ".join(h.head + ": " + _why(h.numbers) for h in last.heads if not h.passed)
    raise ExportError(f"verification ({last.label}) failed for {failing}; see {out / FAILED_REPORT_NAME}")


def _why(numbers: dict) -> str:
    shown = {k: v for k, v in numbers.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
