"""`percept eval --backend triton` scores a served ensemble with the in-process evaluator: on the
same validation scenes its metrics equal those of ONNX Runtime on the exported file it serves."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clients.evaluation import prediction_from_result
from clients.results import Detection, PerceptionResult
from serving import spec as S
from serving.errors import SpecError
from serving.letterbox import Letterbox
from serving.spec import ModelSpec

PERCEPT = str(Path(sys.executable).parent / "percept")
SCENES = 12
TOLERANCE = 0.002  # issue 12's bound per metric


def _eval(tmp_path: Path, name: str, *args: str) -> dict[str, float]:
    out = tmp_path / f"{name}.json"
    cmd = [PERCEPT, "eval", *args, "--scenes", str(SCENES), "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


@pytest.mark.triton
@pytest.mark.parametrize(
    ("network", "ensemble"), [("cam-n", S.ENSEMBLE_CAMERA), ("fusion-n", S.ENSEMBLE_FUSION)]
)
def test_served_metrics_equal_onnx_runtime_on_the_same_scenes(tmp_path, triton_server, network, ensemble):
    served = _eval(tmp_path, "triton", "--backend", "triton", "--url", triton_server.url, "--model", ensemble)
    local = _eval(tmp_path, "onnx", "--backend", "onnx", "--onnx", str(triton_server.onnx[network]))
    assert served["network"] == local["network"] == network
    assert served["backend"] == f"triton {ensemble}" and local["backend"] == "onnx"
    metrics = set(local) - {"network", "backend", "seconds"}
    assert set(served) - {"network", "backend", "seconds"} == metrics
    assert served["images"] == local["images"] == SCENES
    assert {"map50", "miou", "abs_rel"} <= metrics
    for key in sorted(metrics):
        a, b = served[key], local[key]
        assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE, (key, a, b)


def test_a_served_result_becomes_a_prediction_in_the_spec_names():
    spec = ModelSpec(name="t", input_hw=(64, 96), tasks=("detection", "segmentation"))
    lb = Letterbox.fit((64, 96), (64, 96))
    dets = (Detection((1, 2, 3, 4), 0.9, 1, "car"),)
    result = PerceptionResult(dets, np.zeros((64, 96), np.uint8), None, lb)
    pred = prediction_from_result(result, spec)
    assert set(pred) == {S.NUM_DETS, S.DET_BOXES, S.DET_SCORES, S.DET_CLASSES, S.SEG_MASK}
    assert pred[S.NUM_DETS].tolist() == [1] and pred[S.DET_BOXES].shape == (1, 4)
    empty = prediction_from_result(PerceptionResult((), result.seg, None, lb), spec)
    assert empty[S.DET_BOXES].shape == (0, 4) and empty[S.NUM_DETS].tolist() == [0]
    with pytest.raises(SpecError, match="segmentation"):
        prediction_from_result(PerceptionResult(dets, None, None, lb), spec)
