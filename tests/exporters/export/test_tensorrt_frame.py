"""The frame engine (exporters.export.tensorrt_frame): its profile and the check it must pass, with
ONNX Runtime standing in for TensorRT (which cannot run here)."""

from __future__ import annotations

import numpy as np
import pytest

from exporters.export.options import BatchProfile
from serving.spec import LIDAR_DEPTH, ModelSpec

FUSION = ModelSpec("fusion-n", input_hw=(128, 224), fusion=True)


def test_the_frame_engine_profile_spans_frame_sizes_and_the_batch_profile():
    from exporters.export.tensorrt_plan import FRAME_PROFILE_HW, frame_profile_shapes
    from serving.spec import IMAGE, SOURCE_HW

    shapes = frame_profile_shapes(FUSION, BatchProfile(1, 4, 8))
    assert list(shapes) == [IMAGE, SOURCE_HW, LIDAR_DEPTH]
    assert shapes[IMAGE] == tuple((b, h, w, 3) for b, (h, w) in zip((1, 4, 8), FRAME_PROFILE_HW, strict=True))
    assert shapes[SOURCE_HW] == ((1, 2), (4, 2), (8, 2))
    assert shapes[LIDAR_DEPTH] == ((1, 1, 128, 224), (4, 1, 128, 224), (8, 1, 128, 224))


@pytest.mark.parametrize("network", ["cam-n", "fusion-n"])
def test_the_frame_engine_check_passes_the_frame_graph_and_names_a_wrong_head(exported_onnx, network):
    """The check a frame engine must pass before it is renamed into place, run here with ONNX Runtime
    standing in for the engine: the frame graph itself agrees; a depth head off by 10 % does not."""
    from exporters.export.tensorrt_frame import frame_engine_differences
    from serving.frame_graph import write_frame_onnx
    from serving.onnx_meta import read_spec
    from serving.ort_session import create_session
    from serving.spec import DEPTH

    onnx_path = exported_onnx[network]
    spec = read_spec(onnx_path)
    session = create_session(write_frame_onnx(onnx_path, onnx_path.with_name("frame.copy.onnx"), spec))
    names = [o.name for o in session.get_outputs()]

    def runner(feeds, scale=1.0):
        out = dict(zip(names, session.run(names, feeds), strict=True))
        return {**out, DEPTH: (out[DEPTH].astype(np.float32) * scale).astype(np.float16)}

    assert frame_engine_differences(runner, onnx_path, spec, "fp16") == []
    problems = frame_engine_differences(lambda f: runner(f, 1.1), onnx_path, spec, "fp16")
    assert problems and all("depth relative error" in p for p in problems)
