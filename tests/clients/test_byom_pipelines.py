"""Models of any size and heads served side by side, each through its own ensemble, in one server
(tests/clients/conftest.py's tiny_server: tiny, tiny-fusion, seg360 and detseg)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clients import PerceptionClient
from serving import spec as S
from serving.letterbox import network_image
from serving.ort_session import create_session
from serving.repository import read_repository_specs
from tests.serving.triton_helpers import check_pipelines_answer_with_their_heads, infer
from tests.tiny_onnx import gradient_rgb

pytestmark = pytest.mark.triton

PIPELINES = {  # the names serving.model_config.pipeline_names gives them, in the builder's order
    "tiny": S.ENSEMBLE_CAMERA,
    "tiny-fusion": S.ENSEMBLE_FUSION,
    "seg360": "seg360_pipeline",
    "detseg": "detseg_pipeline",
}


def _scene(hw=(480, 800)) -> np.ndarray:
    return gradient_rgb(hw)


def test_segmentation_only_360x640_from_jpeg_equals_onnx_runtime_in_process(tiny_server, byom_onnx):
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(_scene(), cv2.COLOR_RGB2BGR))
    assert ok
    out = infer(tiny_server.grpc_url, "seg360_pipeline", {S.IMAGE_ENCODED: jpeg.reshape(1, -1)})
    assert set(out) == {S.SEG_MASK, S.LETTERBOX}  # no detection or depth outputs
    # the same bytes decoded and letterboxed here, the same ONNX run by ONNX Runtime in-process
    rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    spec = next(s for s in read_repository_specs(tiny_server.options.repository) if s.name == "seg360")
    image, lb = network_image(rgb, (360, 640), spec.letterbox)
    (seg,) = create_session(byom_onnx["seg360"]).run([S.SEG_MASK], {S.IMAGES: image[None]})
    expected = lb.crop_dense(seg[0], 1, False)
    assert expected.shape == (360, 600) and len(np.unique(expected)) == 3
    np.testing.assert_array_equal(out[S.SEG_MASK][0], expected)


def test_every_pipeline_of_the_repository_is_ready_and_answers_with_its_heads(tiny_server):
    specs = {s.name: s for s in read_repository_specs(tiny_server.options.repository)}
    assert set(specs) == set(PIPELINES)
    check_pipelines_answer_with_their_heads(tiny_server.grpc_url, PIPELINES, specs, _scene((120, 200)))


def test_detection_segmentation_model_through_the_client_has_no_depth(tiny_server):
    with PerceptionClient(tiny_server.grpc_url, model="detseg_pipeline") as client:
        result = client.infer(frame=_scene((120, 200)))
    assert result.depth is None and result.depth_at_source() is None
    assert result.seg is not None and len(result.detections or ()) == 2
    line = result.to_dict()
    assert "depth_m" not in line and "seg_fraction" in line and len(line["detections"]) == 2


def test_loadtest_drives_pipelines_of_other_heads(tiny_server):
    from clients.loadtest import LoadTest, LoadTestOptions, load_frames

    models = ("seg360_pipeline", "detseg_pipeline")
    quick = dict(warmup_s=0.5, window_s=1.0, max_windows=2, stable_windows=2, tolerance=0.9, workers=1)
    options = LoadTestOptions(url=tiny_server.grpc_url, models=models, concurrency=(1,), **quick)
    with LoadTest(options, load_frames(2, seed=3), "world") as test:
        step = test.run().steps[0]
    assert step.client_errors_total == 0, step.errors
    assert step.successes > 0
    assert {m: step.server_successes_total[m] for m in models} == dict.fromkeys(
        models, step.client_successes_total
    )
