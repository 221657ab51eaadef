"""Stage 4 (bring your own ONNX): a YOLOP/HybridNets/TwinLiteNet-style file + a YAML head spec ->
an ONNX with the spec's network tensors, verified and ready for the same repository machinery.

The head spec (YAML) says what the file's tensors are; its schema and one worked example per
layout (YOLOP/YOLOv5 rows, YOLOv8 channel-first, HybridNets anchor deltas, two 2-channel maps, one
softmax or sigmoid map, metric or relative depth) are in README.md ("Bring your own ONNX") and
docs/examples/head_specs/, the facts each layout rests on in head_spec.py, the validation in
import_validate.py, the preview on the user's own images (``--images``) in import_preview.py.

In front of the file: uint8 NCHW ``images`` -> float -> (x - mean) / std (-> NHWC). Behind it:
box decoding per format, class-aware ``NonMaxSuppression`` and the fixed top-K
(the same algorithm as exported networks, see nms.py), argmax to a uint8 class map (lane over
drivable over background), depth squeezed and cast to FP16. Verification compares the result with
the original file run through ONNX Runtime plus numpy post-processing of the same algorithm.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from exporters.export.head_spec import DRIVABLE_LANE_CLASSES, WORLD_DET_CLASSES, HeadSpec, load_head_spec
from exporters.export.import_compose import compose
from exporters.export.import_preview import (
    PREVIEW_MD,
    Draw,
    Preview,
    PreviewOptions,
    clear_preview,
    fail_on_findings,
    run_preview,
)
from exporters.export.import_reference import postprocess_numpy, reference_runner
from exporters.export.import_validate import (
    is_symbolic,
    model_spec,
    probe_output_shapes,
    validate,
    validate_input,
)
from exporters.export.options import BatchProfile, VerifyOptions
from exporters.export.staging import ExportResult
from serving.errors import ExportError, SpecError
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

__all__ = [
    "ImportOptions",
    "ImportResult",
    "PreviewOptions",
    "compose",
    "import_onnx",
    "load_head_spec",
    "postprocess_numpy",
    "reference_runner",
    "run_import",
]


@dataclass(frozen=True)
class ImportOptions:
    model: Path
    heads: Path
    out_dir: Path
    profile: BatchProfile = field(default_factory=lambda: BatchProfile(1, 1, 8))
    verify: VerifyOptions = field(default_factory=lambda: VerifyOptions(scenes=20, batch=1))
    opset: int = 17
    preview: PreviewOptions | None = None  # --images: the heads on the user's own images

    def __post_init__(self) -> None:
        if not Path(self.model).is_file():
            raise SpecError(f"ONNX file {str(self.model)!r} does not exist")
        if not Path(self.heads).is_file():
            raise SpecError(f"heads file {str(self.heads)!r} does not exist")
        if self.opset < 17:
            raise SpecError(f"opset must be >= 17, got {self.opset}")


# --- the stage --------------------------------------------------------------------------------------
def import_onnx(
    model: Path, heads: HeadSpec, path: Path, profile: BatchProfile, opset: int = 17
) -> ModelSpec:
    """Validate ``model`` against ``heads``, compose the in-graph steps, write ``path``; the spec."""
    import onnx

    from exporters.export.onnx_export import file_sha256, save_checked, set_metadata

    try:
        proto = onnx.load(str(model))
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise ExportError(f"{model}: not a valid ONNX file ({type(exc).__name__}: {exc})") from exc
    probed = None
    if any(is_symbolic(o) for o in proto.graph.output):
        probed = probe_output_shapes(model, heads, validate_input(proto, heads)[0])
    layout = validate(proto, heads, probed)
    if layout.batch_fixed is not None and profile.max > layout.batch_fixed:
        raise SpecError(
            f"{model} has a fixed batch of {layout.batch_fixed}; use --max-batch {layout.batch_fixed} "
            "or re-export it with a dynamic batch axis"
        )
    spec = model_spec(heads, layout)
    default = [o for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    version = default[0].version if default else 1
    if version < opset:
        try:
            proto = onnx.version_converter.convert_version(proto, opset)
        except Exception as exc:
            raise ExportError(f"{model}: cannot convert opset {version} to {opset}: {exc}") from exc
    proto = compose(proto, heads, spec, layout)
    prov = {
        "network": spec.name,
        "imported_from": str(model),
        "source_sha256": file_sha256(Path(model)),
        "source_opset": version,
        "heads": json.loads(json.dumps(heads, default=lambda o: o.__dict__)),
        "input_hw": list(spec.input_hw),
        "det_classes": list(spec.det_classes),
        "batch_profile": profile.as_dict(),
        "onnx": onnx.__version__,
        "spec_hash": spec.spec_hash(),
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    set_metadata(proto, spec, prov)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
        save_checked(proto, path, spec)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"composing {model} failed: {type(exc).__name__}: {exc}") from exc
    return spec


def run_import(options: ImportOptions, progress: bool = False, draw: Draw | None = None):
    """`percept import-onnx`: import, verify against the original, [preview on the user's images,]
    write model.onnx + report.json. ``draw``: how a preview image is annotated (the CLI passes the
    video client's drawing; None writes the numbers only). A failure leaves report.failed.json."""
    from exporters.export.staging import FAILED_REPORT_NAME, stage_onnx, write_report
    from exporters.export.trt_compat import compat_stage
    from exporters.export.verify import ort_runner, verify

    heads = load_head_spec(options.heads)
    out = Path(options.out_dir)

    def write(staging: Path) -> ModelSpec:
        return import_onnx(Path(options.model), heads, staging, options.profile, options.opset)

    def check(staging: Path, spec: ModelSpec):
        world_gt = spec.det_classes == WORLD_DET_CLASSES and spec.seg_classes == DRIVABLE_LANE_CLASSES
        vopts = (
            options.verify
            if world_gt
            else VerifyOptions(options.verify.scenes, options.verify.batch, metrics=False)
        )
        if not world_gt:
            log.warning(
                "%s: classes differ from the world's; metric parity skipped, per-head comparison kept",
                spec.name,
            )
        report = verify(
            ort_runner(staging),
            reference_runner(Path(options.model), heads, spec),
            spec,
            vopts,
            "imported vs original+numpy",
            progress=progress,
        )
        if report.passed and options.preview is not None:
            found = run_preview(staging, spec, heads, options.preview, out, draw)
            previews.append(found)
            if options.preview.strict:
                fail_on_findings(found, out, spec.name, FAILED_REPORT_NAME)
        return report

    previews: list[Preview] = []
    clear_preview(out)  # an earlier run's preview must not pass for this run's
    final, spec, report = stage_onnx(out, write, check, name=heads.name)
    compat_stage(final, "onnx")
    result = write_report(out, spec, final, [report])
    return ImportResult(
        result.onnx, result.report, result.verification, preview=previews[0] if previews else None
    )


@dataclass
class ImportResult(ExportResult):
    preview: Preview | None = None

    def lines(self) -> list[str]:
        return super().lines() + (self.preview.lines() if self.preview else [])

    @property
    def preview_md(self) -> Path:
        return self.onnx.parent / PREVIEW_MD
