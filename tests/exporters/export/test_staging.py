"""Export and import share one staging helper: stage, verify, rename or fail, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporters.export.options import BatchProfile, ExportOptions, OnnxOptions
from exporters.export.staging import FAILED_REPORT_NAME, ONNX_NAME, REPORT_NAME, stage_onnx
from exporters.export.verify import HeadResult, VerifyReport
from serving.errors import ExportError, SpecError
from serving.spec import ModelSpec

SPEC = ModelSpec("cam-n", input_hw=(64, 96))


def _report(passed: bool) -> VerifyReport:
    return VerifyReport(
        "fake vs reference", 1, [HeadResult("depth", passed, "depth line", {"rel_error": 0.5})]
    )


def _write(staging):
    staging.write_bytes(b"onnx bytes")
    return SPEC


def test_a_passing_artifact_is_renamed_into_place_and_earlier_outputs_are_cleared(tmp_path):
    for stale in (REPORT_NAME, FAILED_REPORT_NAME):
        (tmp_path / stale).write_text("{}")
    seen = []
    final, spec, report = stage_onnx(tmp_path, _write, lambda p, s: seen.append(p.name) or _report(True))
    assert final == tmp_path / ONNX_NAME and final.read_bytes() == b"onnx bytes"
    assert spec == SPEC and report.passed and seen == [ONNX_NAME + ".unverified"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [ONNX_NAME]


def test_a_failing_artifact_leaves_only_the_failed_report(tmp_path):
    (tmp_path / ONNX_NAME).write_bytes(b"an earlier run's file")
    with pytest.raises(
        ExportError, match=r"verification \(fake vs reference\) failed for depth: rel_error=0.5"
    ):
        stage_onnx(tmp_path, _write, lambda p, s: _report(False))
    assert sorted(p.name for p in tmp_path.iterdir()) == [FAILED_REPORT_NAME]
    assert json.loads((tmp_path / FAILED_REPORT_NAME).read_text())["passed"] is False


def test_a_writer_that_raises_leaves_no_staged_file_only_report_failed(tmp_path):
    def broken(staging):
        staging.write_bytes(b"half")
        raise ExportError("export broke")

    with pytest.raises(ExportError, match="export broke"):
        stage_onnx(tmp_path, broken, lambda p, s: _report(True), name="net")
    assert [p.name for p in tmp_path.iterdir()] == ["report.failed.json"]  # not an empty folder
    failed = json.loads((tmp_path / "report.failed.json").read_text())
    assert failed == {
        "network": "net",
        "passed": False,
        "stage": "write",
        "error": "export broke",
        "error_type": "ExportError",
    }


def test_the_batch_profile_is_given_once_and_the_onnx_stage_inherits_it():
    profile = BatchProfile(1, 2, 4)
    options = ExportOptions(network="cam-n", out_dir=Path("x"), profile=profile, onnx=OnnxOptions(opset=17))
    assert options.onnx is not None and options.onnx.profile == profile and options.onnx.opset == 17
    assert ExportOptions(network="cam-n", out_dir=Path("x")).onnx == OnnxOptions(profile=BatchProfile())
    assert OnnxOptions().batch_profile == BatchProfile()
    with pytest.raises(SpecError, match="the ONNX profile must be the export's batch profile"):
        ExportOptions(
            network="cam-n", out_dir=Path("x"), profile=profile, onnx=OnnxOptions(profile=BatchProfile())
        )
