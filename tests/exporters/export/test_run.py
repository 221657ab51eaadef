"""`percept export` end to end: verified artifacts, a verification that fails when it must, bad input."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters.export.options import BatchProfile, ExportOptions, VerifyOptions
from serving.errors import ExportError, SpecError
from tests.exporters.export.fixtures import SMALL_HW, lively_network

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

CLI = [sys.executable, "-c", "from percept.cli import main; main()"]
SIZE = f"{SMALL_HW[0]}x{SMALL_HW[1]}"


def _percept(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from exporters.networks import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "cam-n.pt"
    return save_checkpoint(lively_network("cam-n"), path, {"note": "lively random init for tests"})


@pytest.fixture(scope="module")
def cli_export(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "cam-n"
    args = ["export", "cam-n", "--checkpoint", str(checkpoint), "--out", str(out), "--size", SIZE]
    args += [
        "--min-batch",
        "1",
        "--opt-batch",
        "2",
        "--max-batch",
        "4",
        "--verify-scenes",
        "4",
        "--verify-batch",
        "2",
    ]
    proc = _percept(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_cli_export_writes_verified_onnx_and_report(cli_export, checkpoint):
    from exporters.export import read_onnx_spec, read_provenance
    from exporters.export.onnx_export import file_sha256

    out, proc = cli_export
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    lines = proc.stdout.strip().splitlines()
    heads = [line.split("] ", 1)[1].split()[:2] for line in lines[:3]]
    assert all(line.startswith("[onnxruntime vs pytorch] ") for line in lines[:3])
    assert heads == [["detection", "PASS"], ["segmentation", "PASS"], ["depth", "PASS"]]
    assert lines[-1].startswith("wrote ")
    spec = read_onnx_spec(out / "model.onnx")
    assert spec.name == "cam-n" and spec.input_hw == SMALL_HW
    assert read_provenance(out / "model.onnx")["checkpoint_sha256"] == file_sha256(checkpoint)
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["spec_hash"] == spec.spec_hash()
    (onnx_report,) = report["verification"]
    assert onnx_report["scenes"] == 4
    det = onnx_report["heads"]["detection"]
    assert det["matched"] > 0 and det["unmatched"] == 0 and det["min_iou"] >= 0.99
    assert onnx_report["heads"]["segmentation"]["worst_agreement"] >= 0.999
    assert onnx_report["heads"]["depth"]["rel_error"] <= 1e-3
    assert set(onnx_report["metrics"]["delta"]) == {"map50", "miou", "abs_rel"}
    assert all(abs(v) <= 0.005 for v in onnx_report["metrics"]["delta"].values())


def _perturb(src: Path, dst: Path, factor: float = 1.5) -> None:
    """Scale the largest float weight of the file: a small, real corruption of the model."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    target = max(weights, key=lambda t: int(np.prod(t.dims)))
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * np.float32(factor), target.name))
    onnx.save(proto, str(dst))


def test_verification_fails_for_a_perturbed_onnx(cli_export, checkpoint, tmp_path):
    from exporters.export.graph import build_export_graph, run_eager
    from exporters.export.verify import ort_runner, verify
    from exporters.networks import load_checkpoint

    out, _ = cli_export
    _perturb(out / "model.onnx", tmp_path / "bad.onnx")
    net, _ = load_checkpoint(checkpoint, input_hw=SMALL_HW)
    deploy = build_export_graph(net, net.spec)
    report = verify(
        ort_runner(tmp_path / "bad.onnx"),
        lambda x: run_eager(deploy, x),
        net.spec,
        VerifyOptions(scenes=2, batch=2),
    )
    assert not report.passed
    failed = {h.head for h in report.heads if not h.passed}
    assert failed, report.lines()
    assert any("FAIL" in line for line in report.lines())


def test_failed_verification_leaves_no_complete_looking_artifact(checkpoint, tmp_path, monkeypatch):
    import exporters.export.run as pipeline
    from exporters.export.onnx_export import export_onnx

    def export_then_corrupt(model, path, options, provenance_extra=None):
        export_onnx(model, path, options, provenance_extra)
        _perturb(path, path)
        return path

    monkeypatch.setattr("exporters.export.onnx_export.export_onnx", export_then_corrupt)
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"an earlier run's file")
    options = ExportOptions(
        network="cam-n",
        out_dir=out,
        checkpoint=checkpoint,
        input_hw=(64, 96),
        profile=BatchProfile(1, 2, 4),
        verify=VerifyOptions(scenes=2, batch=2),
    )
    with pytest.raises(ExportError, match=r"verification \(onnxruntime vs pytorch\) failed for "):
        pipeline.run_export(options)
    assert sorted(p.name for p in out.iterdir()) == ["report.failed.json"]
    assert json.loads((out / "report.failed.json").read_text())["passed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cam-x"], "error: unknown network 'cam-x'; registered: cam-n, "),
        (["cam-n", "--size", "100x224"], "error: input size 100x224 must be positive multiples of 32"),
        (["cam-n", "--size", "big"], "error: input size must look like HEIGHTxWIDTH"),
        (
            ["cam-n", "--min-batch", "4", "--max-batch", "2", "--opt-batch", "2"],
            "error: max batch 2 < min batch 4",
        ),
        (["cam-n", "--engine", "tensorrt", "--precision", "int8"], "error: INT8 needs calibration data"),
        (["cam-n", "--precision", "fp16"], "error: precision fp16 needs --engine tensorrt"),
        (["cam-n", "--checkpoint", "missing.pt"], "error: checkpoint 'missing.pt' does not exist"),
        (["cam-n", "--opset", "13"], "error: opset must be >= 17, got 13"),
        (["cam-n", "--random-init", "--checkpoint", "x.pt"], "error: --checkpoint and --random-init exclude"),
        pytest.param(
            ["cam-n", "--engine", "tensorrt", "--precision", "fp16"],
            "error: tensorrt is not installed: build engines inside the NGC TensorRT image",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is here"
            ),
        ),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    proc = _percept("export", *args, "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip().splitlines()[-1]]  # one line
    assert proc.stderr.strip().startswith(message), proc.stderr
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_bad_checkpoints_are_refused(tmp_path, checkpoint):
    from exporters.networks import save_checkpoint

    other = save_checkpoint(lively_network("cam-n-det", (64, 96)), tmp_path / "det.pt", {})
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x04 definitely not a checkpoint")
    for path, message in (
        (other, f"error: checkpoint {other} was trained for cam-n-det, not cam-n"),
        (corrupt, f"error: checkpoint {corrupt} cannot be read"),
    ):
        proc = _percept("export", "cam-n", "--checkpoint", str(path), "--out", str(tmp_path / "out"))
        assert proc.returncode == 1
        assert proc.stderr.strip().splitlines()[-1].startswith(message), proc.stderr
        assert not (tmp_path / "out" / "model.onnx").exists()


def test_options_are_frozen_and_checked():
    options = ExportOptions(network="cam-n", out_dir=Path("x"))
    with pytest.raises(AttributeError):
        options.engine = "tensorrt"  # type: ignore[misc]
    with pytest.raises(SpecError, match="engine must be one of onnx, tensorrt"):
        ExportOptions(network="cam-n", out_dir=Path("x"), engine="openvino")
    with pytest.raises(SpecError, match="engine tensorrt needs TensorRT options"):
        ExportOptions(network="cam-n", out_dir=Path("x"), engine="tensorrt")
