"""`percept tune` end to end: a real tritonserver restarted per candidate, on the tiny model.

Three candidates (the defaults, 1 instance x 1 thread in FP32 and in "FP16"), two repeats of a
one-second window each, then one infeasible run: about 45 s on an idle 2-core machine. The first
run asks for a significance level no real difference reaches, so that its decision, on real and
noisy repeats, is certain: keep the defaults (the decision rule itself is tested on synthetic
repeats in tests/clients/tune/).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from serving.onnx_meta import EXPORT_REPORT_NAME, reduced_name, verification_label
from tests.tiny_onnx import make_tiny_onnx, tiny_spec

pytestmark = pytest.mark.triton

FAST = ("--target", "network", "--concurrency", "2", "--window", "1", "--warmup", "0.5")
FAST += ("--workers", "1", "--frames", "2", "--budget-s", "300", "--repeats", "2")
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
    (out / "best_repository" / "stale").mkdir(parents=True)  # an earlier tune's recommendation
    (out / "best_repo_build.sh").write_text("percept repo build --onnx stale.onnx\n")
    args = ("--instances", "1", "--threads", "1", "--max-batch", "4", "--queue-delay-us", "0")
    run = percept_tune(
        str(export_folder / "model.onnx"),
        *args,
        "--slo-p99-ms",
        str(SLO_MS),
        "--alpha",
        "1e-6",
        "--out",
        str(out),
    )
    return run, out


def test_every_candidate_is_measured_with_intervals_over_its_repeats(tuned):
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
        assert row["repeats"] == "2" and float(row["throughput_ci"]) >= 0 and float(row["p99_ci"]) >= 0, row
    summary = json.loads((out / "tune.json").read_text())
    point = summary["defaults"]["point"]  # two repeats: mean ± t(0.975, 1) * |a - b| / 2
    (row,) = [r for r in summary["rows"] if r["defaults"]]
    a, b = point["throughput_samples"]
    assert point["throughput"] == pytest.approx((a + b) / 2)
    assert row["throughput_ci"] == pytest.approx(12.7062 * abs(a - b) / 2, abs=2e-3)
    assert summary["accuracy_delta_vs_pytorch"] == {"fp16": {"map50": -0.0125, "miou": 0.0, "abs_rel": 0.002}}
    assert " ± " in run.stdout  # the console table carries the intervals
    assert "repeats: 2 per level" in run.stdout
    assert "accuracy of fp16 vs PyTorch (its export report): d mAP50 -0.0125, d mIoU +0.0000" in run.stdout
    image = cv2.imread(str(out / "pareto.png"))
    assert image is not None and image.shape[0] > 100


def test_keeping_the_defaults_writes_no_repository_and_says_so(tuned):
    run, out = tuned
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "tune.json").read_text())
    decision = summary["recommendation"]
    assert decision["change"] is False and decision["candidate"] is None
    assert decision["reason"].startswith("keep the defaults") and decision["repeats"] == 2
    assert summary["best"]["candidate"] == summary["defaults"]["candidate"] == "2x2t b8 d0us fp32"
    assert "keep the defaults" in run.stdout and "no repository written" in run.stdout
    assert "percept repo build" not in run.stdout
    # the earlier tune's recommendation is gone, not left to pass for this one's
    assert not (out / "best_repository").exists() and not (out / "best_repo_build.sh").exists()


def test_an_infeasible_constraint_exits_3_naming_it(export_folder, tmp_path):
    args = ("--instances", "2", "--threads", "2", "--max-batch", "8", "--queue-delay-us", "0")
    run = percept_tune(str(export_folder / "model.onnx"), *args, "--precision", "fp32", "--min-throughput",
                       "1e9", "--out", str(tmp_path))  # fmt: skip
    assert run.returncode == 3, run.stderr[-3000:]
    assert "no candidate met the constraint throughput >= 1e+09/s and no failed requests" in run.stderr
    assert "closest: 2x2t b8 d0us fp32" in run.stderr
    assert (tmp_path / "tune.csv").exists() and not (tmp_path / "best_repository").exists()
