"""What the serving side reads from an export's folder without the exporters: the precision files
beside model.onnx and the accuracy deltas its report recorded."""

from __future__ import annotations

import json

import pytest

from serving.errors import ServingError
from serving.onnx_meta import (
    EXPORT_REPORT_NAME,
    accuracy_deltas,
    file_precision,
    precision_variants,
    reduced_name,
    verification_label,
)
from tests.tiny_onnx import make_tiny_onnx, tiny_spec


def test_reduced_precision_files_beside_the_model_are_found_by_name_and_provenance(tmp_path):
    fp32 = make_tiny_onnx(tiny_spec(), tmp_path / "model.onnx")
    assert precision_variants(fp32) == {"fp32": fp32}
    fp16 = make_tiny_onnx(tiny_spec(), tmp_path / reduced_name("fp16"), {"precision": "fp16"})
    assert file_precision(fp16) == "fp16" and file_precision(fp32) == "fp32"
    assert precision_variants(fp32) == {"fp32": fp32, "fp16": fp16}
    make_tiny_onnx(tiny_spec(), tmp_path / "model.int8.onnx", {"precision": "fp16"})
    with pytest.raises(ServingError, match="model.int8.onnx is named int8 but its provenance records fp16"):
        precision_variants(fp32)


def test_accuracy_deltas_come_from_the_export_report_by_precision(tmp_path):
    onnx = make_tiny_onnx(tiny_spec(), tmp_path / "model.onnx")
    assert accuracy_deltas(onnx) == {}
    entry = {"delta": {"map50": -0.0002, "miou": 0.0, "abs_rel": None}, "delta_map": -0.0006}
    report = {
        "verification": [
            {"label": verification_label(), "metrics": {"delta": {"map50": 0.0, "miou": 0.0}}},
            {"label": verification_label("fp16"), "metrics": entry},
            {"label": verification_label("fp16", "tensorrt"), "metrics": {"delta": {"map50": 0.5}}},
        ]
    }
    (tmp_path / EXPORT_REPORT_NAME).write_text(json.dumps(report))
    assert accuracy_deltas(onnx) == {
        "fp32": {"map50": 0.0, "miou": 0.0},
        "fp16": {"map50": -0.0002, "miou": 0.0, "map": -0.0006},  # the TensorRT entry is not ORT's
    }
