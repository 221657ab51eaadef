"""Imported models of sizes and head sets of their own, served through their own ensembles next to
cam-n and fusion-n in one repository.

A TwinLiteNet-style file (float RGB / 255 at 360x640, two 2-channel logit maps) goes through
`import-onnx`, the repository builder and the real tritonserver; JPEG bytes sent to its ensemble
come back as the class map ONNX Runtime gives on the original file for the same letterboxed input.
A YOLOP-layout file (yolo-format detection plus drivable / lane maps, no depth) is served the same
way and driven by `percept video` and the load-test harness.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from serving import spec as S
from serving.letterbox import network_image
from tests.clients.conftest import write_video
from tests.exporters.export.import_fixtures import TWIN_HW, write_heads, write_layout
from tests.serving.triton_helpers import check_pipelines_answer_with_their_heads
from tests.tiny_onnx import gradient_rgb

pytest.importorskip("onnx", reason="import-onnx needs the export extra (onnx)")
pytestmark = pytest.mark.triton

PERCEPT = str(Path(sys.executable).parent / "percept")
PIPELINES = {  # network -> the ensemble serving.model_config.pipeline_names gives it
    "cam-n": S.ENSEMBLE_CAMERA,
    "fusion-n": S.ENSEMBLE_FUSION,
    "twinlite-tiny": "twinlite_tiny_pipeline",
    "yolop-tiny": "yolop_tiny_pipeline",
}
YOLOP = PIPELINES["yolop-tiny"]


def _import(layout: str, folder: Path) -> tuple[Path, Path, Path]:
    from exporters.export.import_onnx import ImportOptions, run_import
    from exporters.export.options import VerifyOptions

    original, heads = write_layout(layout, folder)
    heads_path = write_heads(folder, heads)
    options = ImportOptions(original, heads_path, folder / "out", verify=VerifyOptions(scenes=4, batch=1))
    return original, heads_path, run_import(options).onnx


@pytest.fixture(scope="module")
def imported_twin(tmp_path_factory):
    return _import("two-map", tmp_path_factory.mktemp("twin"))


@pytest.fixture(scope="module")
def imported_yolop(tmp_path_factory):
    return _import("yolop", tmp_path_factory.mktemp("yolop"))


@pytest.fixture(scope="module")
def twin_server(exported_onnx, imported_twin, imported_yolop, tmp_path_factory):
    """One repository: cam-n and fusion-n (the session's exports) and the two imported models."""
    from serving.launcher import ServerOptions, TritonServer
    from serving.model_config import RepositoryOptions
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("twin_repo")
    files = [exported_onnx["cam-n"], exported_onnx["fusion-n"], imported_twin[2], imported_yolop[2]]
    build_repository(files, repo, RepositoryOptions(network_instances=1, intra_op_threads=1))
    server = TritonServer(ServerOptions(repo, startup_timeout_s=240))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _road_scene(hw=(720, 1280)) -> np.ndarray:
    return gradient_rgb(hw, blue=60)


def test_a_360x640_two_map_model_is_imported_at_its_own_size(imported_twin):
    from serving.onnx_meta import read_spec

    spec = read_spec(imported_twin[2])
    assert spec.input_hw == TWIN_HW and spec.tasks == ("segmentation",)


def test_imported_360x640_model_served_from_jpeg_equals_the_original_file(imported_twin, twin_server):
    from clients import PerceptionClient
    from exporters.export.head_spec import load_head_spec
    from exporters.export.import_reference import reference_runner
    from serving.onnx_meta import read_spec

    original, heads_path, composed = imported_twin
    spec = read_spec(composed)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(_road_scene(), cv2.COLOR_RGB2BGR))
    assert ok
    with PerceptionClient(twin_server.grpc_url, model="twinlite_tiny_pipeline") as client:
        assert client.spec == spec  # heads, size and classes read from the server
        result = client.infer(image=jpeg.tobytes())
    assert result.detections is None and result.depth is None
    from serving.ensemble import FrameLimits
    from serving.processing import decode_encoded

    # decoded as the server's decode step does: a 720p JPEG for a 360x640 model at half DCT scale
    rgb = decode_encoded(jpeg.tobytes(), FrameLimits(), spec.input_hw)
    assert rgb.shape == (360, 640, 3)
    image, lb = network_image(rgb, spec.input_hw, spec.letterbox)
    expected = reference_runner(original, load_head_spec(heads_path), spec)({S.IMAGES: image[None]})
    expected_seg = lb.crop_dense(expected[S.SEG_MASK][0], 1, False)
    assert expected_seg.shape == (360, 640) and len(np.unique(expected_seg)) == 3
    np.testing.assert_array_equal(result.seg, expected_seg)


def test_one_repository_serves_cam_n_fusion_n_and_two_imported_models(twin_server):
    from serving.repository import read_repository_specs

    specs = {s.name: s for s in read_repository_specs(twin_server.options.repository)}
    assert set(specs) == set(PIPELINES)
    assert specs["yolop-tiny"].tasks == ("detection", "segmentation")
    check_pipelines_answer_with_their_heads(twin_server.grpc_url, PIPELINES, specs, _road_scene((120, 200)))


def test_percept_video_on_the_yolop_pipeline_has_detections_and_no_depth(tmp_path, twin_server):
    from clients.video.journal import read_records

    video = write_video(tmp_path / "drive.mp4", 6)
    args = ["video", str(video), "--out", str(tmp_path / "out"), "--url", twin_server.grpc_url]
    done = subprocess.run([PERCEPT, *args, "--model", YOLOP, "--no-progress"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = read_records(tmp_path / "out" / "drive" / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    for r in records:
        assert "error" not in r and "detections" in r and "seg_fraction" in r
        assert not any(k.startswith("depth") for k in r)


def test_loadtest_drives_the_yolop_pipeline_without_errors(twin_server):
    from clients.loadtest import LoadTest, LoadTestOptions, load_frames

    quick = dict(warmup_s=0.5, window_s=1.0, max_windows=2, stable_windows=2, tolerance=0.9, workers=1)
    options = LoadTestOptions(url=twin_server.grpc_url, models=(YOLOP,), concurrency=(1,), **quick)
    with LoadTest(options, load_frames(2, seed=3), "world") as test:
        step = test.run().steps[0]
    assert step.client_errors_total == 0, step.errors
    assert step.successes > 0 and step.server_successes_total[YOLOP] == step.client_successes_total
