"""The orchestrator of `percept export`: network -> ONNX -> verify -> [FP16/INT8 ONNX -> verify]
[TensorRT -> verify] -> report.

Every artifact is written under a temporary name, verified, and only then renamed to its final
name (``model.onnx``, ``model.<precision>.onnx``, ``model_sm<cc>.plan``); a failed stage removes
its partial file, writes ``report.failed.json`` and raises :class:`ExportError` (staging.py, shared
with import-onnx).
"""

from __future__ import annotations

import logging
from pathlib import Path

from exporters.export.options import ExportOptions
from exporters.export.staging import FAILED_REPORT_NAME, ONNX_NAME, REPORT_NAME, ExportResult, fail_if
from serving.errors import ExportError, SpecError
from serving.onnx_meta import verification_label
from serving.spec import DEFAULT_INPUT_HW

log = logging.getLogger(__name__)

__all__ = ["FAILED_REPORT_NAME", "ONNX_NAME", "REPORT_NAME", "ExportResult", "load_network", "run_export"]


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
    return build_network(network, input_hw or DEFAULT_INPUT_HW).eval()


def run_export(options: ExportOptions, progress: bool = False) -> ExportResult:
    """Run every stage ``options`` asks for; returns the artifacts and verification reports."""
    from exporters.export import onnx_export
    from exporters.export.freshness import KEY, export_key
    from exporters.export.graph import build_export_graph, run_eager
    from exporters.export.staging import stage_onnx, write_report
    from exporters.export.trt_compat import compat_stage
    from exporters.export.verify import ort_runner, verify

    if options.engine == "tensorrt":
        from exporters.export.tensorrt import import_tensorrt

        import_tensorrt()  # fail before minutes of ONNX work, not after
    onnx_opts = options.onnx
    assert onnx_opts is not None  # built by ExportOptions
    model = load_network(options.network, options.checkpoint, options.input_hw, options.seed)
    spec = model.spec
    out = Path(options.out_dir)
    extra: dict[str, object] = {"seed": options.seed} if options.checkpoint is None else {}
    extra[KEY] = export_key(options.network, onnx_opts, options.input_hw, options.seed)
    graph = build_export_graph(model, spec)

    def reference(inputs):
        return run_eager(graph, inputs)

    def write(staging: Path):
        onnx_export.export_onnx(model, staging, onnx_opts, provenance_extra=extra)
        return spec

    def check(staging: Path, spec):
        return verify(
            ort_runner(staging), reference, spec, options.verify, verification_label(), progress=progress
        )

    final, _, onnx_report = stage_onnx(out, write, check, name=options.network)
    reports = [onnx_report]
    if options.engine == "onnx":  # the TensorRT build runs the stage on the file it parses
        compat_stage(final, "onnx")
    engine = reduced = None
    if options.engine == "onnx" and options.precision != "fp32":
        from exporters.export.precision_stage import precision_stage

        reduced, reduced_report = precision_stage(final, out, spec, options, reference, progress)
        reports.append(reduced_report)
        fail_if(reports, out, spec)
    if options.engine == "tensorrt":
        from exporters.export.tensorrt import build_and_verify

        assert options.tensorrt is not None  # checked by ExportOptions
        engine, trt_report = build_and_verify(
            final, out, options.tensorrt, reference, spec, options.verify, progress
        )
        reports.append(trt_report)
        fail_if(reports, out, spec)
    return write_report(out, spec, final, reports, engine, reduced)
