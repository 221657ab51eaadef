"""`percept repo build`: a pipeline per network, `--name NET=ENSEMBLE` names one."""

import subprocess
import sys

from tests.tiny_onnx import byom_specs, make_tiny_onnx


def percept(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "repo", "build", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_build_names_each_pipeline_and_takes_a_given_name(tmp_path):
    seg, det_seg = byom_specs()
    onnx = [make_tiny_onnx(s, tmp_path / f"{s.name}.onnx") for s in (seg, det_seg)]
    repo = tmp_path / "repo"
    r = percept("--onnx", str(onnx[0]), "--onnx", str(onnx[1]), "--out", str(repo), "--name", "seg360=roads")
    assert r.returncode == 0, r.stderr
    assert (repo / "roads" / "config.pbtxt").exists() and (repo / "detseg_pipeline" / "config.pbtxt").exists()
    bad = percept("--onnx", str(onnx[0]), "--out", str(repo), "--name", "seg360")
    assert bad.returncode == 1 and "error: --name takes NET=ENSEMBLE" in bad.stderr
