"""An imported model of a size and head set of its own, served through its own ensemble.

A TwinLiteNet-style file (float RGB / 255 at 360x640, two 2-channel logit maps) goes through
`import-onnx`, the repository builder and the real tritonserver; JPEG bytes sent to its ensemble
come back as the class map ONNX Runtime gives on the original file for the same letterboxed input.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving import spec as S
from serving.letterbox import network_image
from tests.exporters.export.import_fixtures import TWIN_HW, write_heads, write_layout

pytest.importorskip("onnx", reason="import-onnx needs the export extra (onnx)")
pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def imported_twin(tmp_path_factory):
    from exporters.export.import_onnx import ImportOptions, run_import
    from exporters.export.options import VerifyOptions

    folder = tmp_path_factory.mktemp("twin")
    original, heads = write_layout("two-map", folder)
    heads_path = write_heads(folder, heads)
    options = ImportOptions(original, heads_path, folder / "out", verify=VerifyOptions(scenes=4, batch=1))
    result = run_import(options)
    return original, heads_path, result.onnx


@pytest.fixture(scope="module")
def twin_server(imported_twin, tmp_path_factory):
    from serving.launcher import ServerOptions, TritonServer
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("twin_repo")
    build_repository([imported_twin[2]], repo)
    server = TritonServer(ServerOptions(repo))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _road_scene(hw=(720, 1280)) -> np.ndarray:
    h, w = hw
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, h)[:, None].astype(np.uint8)
    rgb[..., 1] = np.linspace(0, 255, w)[None].astype(np.uint8)
    rgb[..., 2] = 60
    return rgb


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
    rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    image, lb = network_image(rgb, spec.input_hw, spec.letterbox)
    expected = reference_runner(original, load_head_spec(heads_path), spec)({S.IMAGES: image[None]})
    expected_seg = lb.crop_dense(expected[S.SEG_MASK][0], 1, False)
    assert expected_seg.shape == (360, 640) and len(np.unique(expected_seg)) == 3
    np.testing.assert_array_equal(result.seg, expected_seg)
