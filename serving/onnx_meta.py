"""Read the spec (and provenance) an exported ONNX file carries in its ``metadata_props``.

The serving side must not import ``exporters``; the export stage writes ``ModelSpec.to_json()``
under :data:`serving.spec.SPEC_KEY` and its provenance under :data:`serving.spec.PROVENANCE_KEY`, and
this module is the one reader of both (the exporters use it too), with ``onnx`` when installed and
ONNX Runtime otherwise (the ``server`` extra has ONNX Runtime but not ``onnx``).
"""

from __future__ import annotations

import json
from pathlib import Path

from serving.errors import ServingError, SpecError
from serving.spec import PROVENANCE_KEY, SPEC_KEY, ModelSpec


def read_metadata(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file as a dict."""
    path = Path(path)
    if not path.is_file():
        raise ServingError(f"ONNX file {path} does not exist")
    try:
        import onnx
    except ImportError:
        return _read_metadata_ort(path)
    else:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ServingError(f"{path} is not a readable ONNX file: {exc}") from exc
        return {p.key: p.value for p in model.metadata_props}


def _read_metadata_ort(path: Path) -> dict[str, str]:
    from serving.ort_session import create_session

    session = create_session(path)
    return dict(session.get_modelmeta().custom_metadata_map)


def read_spec(path: str | Path) -> ModelSpec:
    """The ModelSpec stored in an exported ONNX file (key :data:`~serving.spec.SPEC_KEY`)."""
    meta = read_metadata(path)
    if SPEC_KEY not in meta:
        raise ServingError(
            f"{path}: no {SPEC_KEY!r} in the ONNX metadata; export it with `percept export` "
            "or `percept import-onnx`"
        )
    try:
        return ModelSpec.from_dict(json.loads(meta[SPEC_KEY]))
    except (ValueError, SpecError) as exc:
        raise ServingError(f"{path}: unreadable {SPEC_KEY!r} metadata: {exc}") from exc


def read_provenance(path: str | Path) -> dict:
    """The export provenance an ONNX file carries (``{}`` when it has none)."""
    text = read_metadata(path).get(PROVENANCE_KEY)
    return json.loads(text) if text else {}


# --- the files an export leaves beside model.onnx ---------------------------------------------------
# `percept export` writes these (exporters.export.staging and .precision_stage); the serving side reads
# them without importing the exporters, so the names live here and the exporters import them.
EXPORT_REPORT_NAME = "report.json"
REDUCED_PRECISIONS = ("fp16", "int8")


def reduced_name(precision: str) -> str:
    """The file name of a reduced-precision ONNX next to ``model.onnx``."""
    return f"model.{precision}.onnx"


def verification_label(precision: str = "fp32", engine: str = "onnxruntime") -> str:
    """The label of an export report's verification entry for ``precision`` run by ``engine``."""
    return f"{engine} vs pytorch" if precision == "fp32" else f"{engine} {precision} vs pytorch"


def file_precision(path: str | Path) -> str:
    """The precision an exported ONNX file records in its provenance (``fp32`` when it says none)."""
    return str(read_provenance(path).get("precision", "fp32"))


def precision_variants(onnx: str | Path) -> dict[str, Path]:
    """Precision -> ONNX file: ``onnx`` itself under its own precision, and the reduced-precision
    files an export wrote beside it (``model.fp16.onnx``, ``model.int8.onnx``), each checked to
    record the precision its name says."""
    onnx = Path(onnx)
    found = {file_precision(onnx): onnx}
    for precision in REDUCED_PRECISIONS:
        path = onnx.with_name(reduced_name(precision))
        if precision in found or not path.is_file() or path.resolve() == onnx.resolve():
            continue
        recorded = file_precision(path)
        if recorded != precision:
            raise ServingError(f"{path} is named {precision} but its provenance records {recorded}")
        found[precision] = path
    return found


def accuracy_deltas(onnx: str | Path) -> dict[str, dict[str, float]]:
    """Precision -> the metric deltas (candidate - PyTorch: ``map50``, ``miou``, ``abs_rel``, and
    ``map`` = mAP@0.5:0.95) that the export report beside ``onnx`` recorded for ONNX Runtime; only
    the precisions the report verified (``{}`` without a report)."""
    report = Path(onnx).with_name(EXPORT_REPORT_NAME)
    if not report.is_file():
        return {}
    try:
        entries = json.loads(report.read_text()).get("verification", [])
    except (ValueError, AttributeError) as exc:
        raise ServingError(f"{report}: unreadable export report: {exc}") from exc
    labels = {verification_label(p): p for p in ("fp32", *REDUCED_PRECISIONS)}
    out: dict[str, dict[str, float]] = {}
    for entry in entries:
        precision = labels.get(entry.get("label"))
        metrics = entry.get("metrics") or {}
        if precision is None or "delta" not in metrics:
            continue
        delta = {k: float(v) for k, v in metrics["delta"].items() if v is not None}
        if metrics.get("delta_map") is not None:
            delta["map"] = float(metrics["delta_map"])
        out[precision] = delta
    return out
