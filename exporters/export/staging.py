"""Staging of verified artifacts, shared by `percept export` (run.py) and `percept import-onnx`.

An ONNX file is written under ``model.onnx.unverified``, verified, and only then renamed to
``model.onnx``; a failed verification removes the staged file, writes ``report.failed.json`` and
raises :class:`ExportError`. Outputs of an earlier run are removed first so that they cannot pass
for this run's. ``report.json`` is written last, atomically, once every stage has passed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from exporters.export.verify import VerifyReport
from serving.errors import ExportError, PerceptionError
from serving.onnx_meta import EXPORT_REPORT_NAME
from serving.spec import ModelSpec

ONNX_NAME = "model.onnx"
REPORT_NAME = EXPORT_REPORT_NAME  # serving.onnx_meta reads it too
FAILED_REPORT_NAME = "report.failed.json"
STAGING_SUFFIX = ".unverified"


@dataclass
class ExportResult:
    onnx: Path
    report: Path
    verification: list[VerifyReport] = field(default_factory=list)
    engine: Path | None = None
    reduced: Path | None = None  # model.<precision>.onnx (--engine onnx --precision fp16|int8)

    def lines(self) -> list[str]:
        out = []
        for r in self.verification:
            out += [f"[{r.label}] {line}" for line in r.lines()]
            kept = (r.notes or {}).get("fp32_layers")
            if kept:  # the INT8 sensitivity fallback: which layers stayed in FP32
                out.append(f"[{r.label}] kept in FP32 ({len(kept)} layers): {', '.join(kept)}")
        return out


def stage_onnx(
    out: Path,
    write: Callable[[Path], ModelSpec],
    check: Callable[[Path, ModelSpec], VerifyReport],
    name: str | None = None,
) -> tuple[Path, ModelSpec, VerifyReport]:
    """Clear ``out`` of earlier outputs, ``write`` the ONNX to the staging path (returning its spec),
    ``check`` it, and rename it to ``out/model.onnx`` when the check passed.

    Returns (final path, spec, report); a failed write or check raises (see :func:`fail_if`),
    leaves no ONNX file behind and leaves ``report.failed.json`` saying why, never an empty folder
    that could pass for a result. ``name``: the network, for that report.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    final = out / ONNX_NAME
    for stale in (final, out / REPORT_NAME, out / FAILED_REPORT_NAME):
        stale.unlink(missing_ok=True)  # an earlier run's outputs must not pass for this run's
    staging = out / (ONNX_NAME + STAGING_SUFFIX)
    stage = "write"
    try:
        spec = write(staging)
        stage = "verify"
        report = check(staging, spec)
        fail_if([report], out, spec)
        os.replace(staging, final)
    except PerceptionError as exc:
        if not (out / FAILED_REPORT_NAME).exists():  # fail_if and the checks write their own
            write_failed(out, name, {"stage": stage, "error": str(exc), "error_type": type(exc).__name__})
        raise
    finally:
        staging.unlink(missing_ok=True)
    return final, spec, report


def write_failed(out: Path, name: str | None, details: dict) -> Path:
    """``out/report.failed.json``: the run failed, and why."""
    path = Path(out) / FAILED_REPORT_NAME
    document = {"network": name, "passed": False, **details}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return path


def fail_if(reports: list[VerifyReport], out: Path, spec: ModelSpec) -> None:
    """Raise ExportError (after writing ``report.failed.json``) when the last report failed."""
    last = reports[-1]
    if last.passed:
        return
    write_failed(out, spec.name, {"verification": [r.to_dict() for r in reports]})
    failing = "; ".join(h.head + ": " + _why(h.numbers) for h in last.heads if not h.passed)
    raise ExportError(f"verification ({last.label}) failed for {failing}; see {out / FAILED_REPORT_NAME}")


def _why(numbers: dict) -> str:
    shown = {k: v for k, v in numbers.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())


def write_report(
    out: Path,
    spec: ModelSpec,
    onnx: Path,
    reports: list[VerifyReport],
    engine: Path | None = None,
    reduced: Path | None = None,
) -> ExportResult:
    """``out/report.json`` (atomically) for artifacts that passed every verification."""
    from serving.onnx_meta import read_provenance

    report_path = Path(out) / REPORT_NAME
    document = {
        "network": spec.name,
        "spec": spec.to_dict(),
        "spec_hash": spec.spec_hash(),
        "provenance": read_provenance(onnx),
        "artifacts": {
            "onnx": onnx.name,
            **({"engine": engine.name} if engine else {}),
            **({"reduced_onnx": reduced.name} if reduced else {}),
        },
        "verification": [r.to_dict() for r in reports],
        "passed": True,
    }
    tmp = report_path.with_name(report_path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, report_path)
    return ExportResult(onnx, report_path, reports, engine, reduced)
