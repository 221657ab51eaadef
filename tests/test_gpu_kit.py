"""The GPU smoke kit (tests/gpu, `make gpu-smoke`) imports and collects on every machine, and
where TensorRT or a GPU is missing every one of its tests skips and says why."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_kit(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "tests/gpu", "-m", "gpu or trt", "-p", "no:cacheprovider"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_kit_collects_every_check():
    proc = _run_kit("--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    names = {i.split("::")[1].split("[")[0] for i in ids}
    assert names == {
        "test_tensorrt_is_the_pinned_version",
        "test_the_parser_reads_the_tensorrt_variant",
        "test_engine_builds_with_the_profile_and_has_the_contract_io",
        "test_engine_matches_onnxruntime_on_empty_and_cluttered_scenes",
        "test_tensorrt_plan_repository_answers_like_the_python_engine",
        "test_fp16_heads_on_the_gpu_match_cpu_fp32_within_the_fp16_bounds",
        "test_network_throughput_on_the_gpu_in_fp16",
    }
    for kind in ("fp32", "fp16", "int8", "fp16-typed", "int8-typed"):
        for batch in (1, 3, 8):
            assert any(f"[{kind}-{batch}]" in i or f"[{batch}-{kind}]" in i for i in ids), (kind, batch)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed: the kit runs for real"
)
def test_without_tensorrt_every_kit_test_skips_with_its_reason():
    proc = _run_kit("-rs", "-q")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    summary = out.strip().splitlines()[-1]
    assert re.fullmatch(r"=* ?\d+ skipped(, \d+ deselected)? in [\d.]+s.*", summary), summary
    reasons = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    known = (
        "TensorRT is not installed here (import tensorrt fails)",
        "no NVIDIA GPU",
        "torch is not installed",
    )
    assert reasons and all(any(k in r for k in known) for r in reasons), reasons


def test_the_results_file_collects_each_checks_numbers(tmp_path, monkeypatch):
    import json

    from tests.gpu.results import RESULTS_ENV, add_result, frames_per_second, results_path

    monkeypatch.setenv(RESULTS_ENV, str(tmp_path / "r.json"))
    assert results_path() == tmp_path / "r.json"
    add_result("throughput", {"network": "cam-n", "batch": 8, "frames_per_s": frames_per_second(8, 10, 0.5)})
    add_result("throughput", {"network": "cam-n", "batch": 16, "frames_per_s": 1.0})
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [r["batch"] for r in doc["throughput"]] == [8, 16] and doc["throughput"][0]["frames_per_s"] == 160
