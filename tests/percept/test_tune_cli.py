"""`percept tune` end to end: a real tritonserver restarted per candidate, on the tiny model.

Three candidates (the defaults, 1 instance x 1 thread in FP32 and in "FP16") with one-second
windows, then one infeasible run: about 45 s on an idle 2-core machine.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from serving.model_config import network_model_name, parse_config
from serving.onnx_meta import EXPORT_REPORT_NAME, reduced_name, verification_label
from serving.ort_session import OrtSettings
from tests.tiny_onnx import make_tiny_onnx, tiny_spec

pytestmark = pytest.mark.triton

FAST = ("--target", "network", "--concurrency", "2", "--window", "1", "--warmup", "0.5")
FAST += ("--workers", "1", "--frames", "2", "--budget-s", "300")
SLO_MS = 2000.0


def percept_tune(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "tune", *args, *FAST]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory) -> Path:
    """A tiny model.onnx with a second file named and marked FP16 beside it, and the export report
    that gives that precision's accuracy delta."""
    folder = tmp_path_factory.mktemp("export")
    profile = {"batch_profile": {"min": 1, "opt": 2, "max": 8}}
    make_tiny_onnx(tiny_spec(), folder / "model.onnx", profile)
    make_tiny_onnx(tiny_spec(), folder / reduced_name("fp16"), {**profile, "precision": "fp16"})
    delta = {"delta": {"map50": -0.0125, "miou": 0.0, "abs_rel": 0.002}}
    report = {"verification": [{"label": verification_label("fp16"), "metrics": delta}]}
    (folder / EXPORT_REPORT_NAME).write_text(json.dumps(report))
    return folder


@pytest.fixture(scope="module")
def tuned(export_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    args = ("--instances", "1", "--threads", "1", "--max-batch", "4", "--queue-delay-us", "0")
    run = percept_tune(
        str(export_folder / "model.onnx"), *args, "--slo-p99-ms", str(SLO_MS), "--out", str(out)
    )
    return run, out


def test_every_candidate_is_measured_and_the_best_meets_the_slo(tuned):
    run, out = tuned
    assert run.returncode == 0, run.stderr[-3000:]
    rows = list(csv.DictReader((out / "tune.csv").open()))
    assert sorted(r["candidate"] for r in rows) == [
        "1x1t b4 d0us fp16",
        "1x1t b4 d0us fp32",
        "2x2t b8 d0us fp32",  # the defaults, always measured
    ]
    for row in rows:  # real numbers: answers came back, and Triton's own statistics saw batches
        assert float(row["throughput"]) > 1 and 0 < float(row["p99_ms"]) < 60_000, row
        assert float(row["avg_batch"]) >= 1 and row["error"] == "", row
    summary = json.loads((out / "tune.json").read_text())
    best = summary["best"]
    assert best["feasible"] and best["point"]["p99_ms"] <= SLO_MS and best["point"]["errors"] == 0
    (chosen,) = [r for r in summary["rows"] if r["best"]]
    assert chosen["candidate"] == best["candidate"]
    assert chosen["throughput"] == max(r["throughput"] for r in summary["rows"] if r["feasible"])
    assert summary["accuracy_delta_vs_pytorch"] == {"fp16": {"map50": -0.0125, "miou": 0.0, "abs_rel": 0.002}}
    assert "best:" in run.stdout and "percept repo build" in run.stdout
    assert "accuracy of fp16 vs PyTorch (its export report): d mAP50 -0.0125, d mIoU +0.0000" in run.stdout
    image = cv2.imread(str(out / "pareto.png"))
    assert image is not None and image.shape[0] > 100


def test_the_written_repository_has_the_best_values(tuned, export_folder):
    _, out = tuned
    knobs = json.loads((out / "tune.json").read_text())["best"]["knobs"]
    net = out / "best_repository" / network_model_name(tiny_spec())
    cfg = parse_config((net / "config.pbtxt").read_text())
    assert cfg.max_batch_size == knobs["max_batch"]
    assert cfg.instance_group[0].count == knobs["instances"]
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert OrtSettings.from_parameters(params).intra_op_threads == knobs["threads"]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == knobs["queue_delay_us"]
    assert list(cfg.dynamic_batching.preferred_batch_size) == (
        [knobs["preferred_batch"]] if knobs["preferred_batch"] else []
    )
    chosen = export_folder / (
        "model.onnx" if knobs["precision"] == "fp32" else reduced_name(knobs["precision"])
    )
    assert (net / "1" / "model.onnx").read_bytes() == chosen.read_bytes()
    assert (out / "best_repository" / "perception" / "config.pbtxt").exists()  # the whole pipeline
    command = (out / "best_repo_build.sh").read_text()
    assert command.startswith("percept repo build --onnx") and str(chosen) in command


def test_an_infeasible_constraint_exits_3_naming_it(export_folder, tmp_path):
    args = ("--instances", "2", "--threads", "2", "--max-batch", "8", "--queue-delay-us", "0")
    run = percept_tune(str(export_folder / "model.onnx"), *args, "--precision", "fp32", "--min-throughput",
                       "1e9", "--out", str(tmp_path))  # fmt: skip
    assert run.returncode == 3, run.stderr[-3000:]
    assert "no candidate met the constraint throughput >= 1e+09/s and no failed requests" in run.stderr
    assert "closest: 2x2t b8 d0us fp32" in run.stderr
    assert (tmp_path / "tune.csv").exists() and not (tmp_path / "best_repository").exists()
