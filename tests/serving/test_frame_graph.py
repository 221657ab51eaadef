"""The frame graph (serving.frame_graph) against its CPU reference (serving.processing, serving.letterbox).

The tiny spec-following network stands in for any network: what is checked is the graph built around
it. Geometry (content size, pads, crops, the letterbox row) must be identical for every frame size;
pixel values may differ by OpenCV's fixed-point rounding, one level at most.
"""

from __future__ import annotations

import numpy as np
import pytest

from serving import spec as S
from serving.letterbox import Letterbox, fit_size, network_image
from serving.processing import postprocess, preprocess
from serving.spec import LetterboxRule, ModelSpec
from tests.tiny_onnx import make_tiny_onnx, tiny_spec

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# model size, 2x and 3x it, odd sizes, portrait, smaller than the model (upscaled), one row short
SIZES = [(64, 96), (128, 192), (192, 288), (33, 47), (200, 120), (31, 96), (720, 1280)]


def _sessions(spec: ModelSpec, tmp_path):
    from serving.frame_graph import write_frame_onnx

    net = make_tiny_onnx(spec, tmp_path / "net.onnx")
    frame = write_frame_onnx(net, tmp_path / "frame.onnx", spec)
    return ort.InferenceSession(str(net)), ort.InferenceSession(str(frame)), frame


def _run(session, feeds) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _reference(spec, net, frames, source_hw=None):
    pre = preprocess(spec, list(frames))
    raw = _run(net, {S.IMAGES: pre[S.IMAGES]})
    return postprocess(spec, raw, pre[S.LETTERBOX], source_hw=source_hw)


@pytest.mark.parametrize("upscale", [True, False])
def test_frame_graph_geometry_equals_the_letterbox_rule_for_any_frame_size(tmp_path, upscale):
    spec = ModelSpec(name="tiny", input_hw=(64, 96), top_k=4, letterbox=LetterboxRule(allow_upscale=upscale))
    net, frame, _ = _sessions(spec, tmp_path)
    rng = np.random.default_rng(0)
    for hw in SIZES:
        images = rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8)
        got = _run(frame, {S.IMAGE: images, S.SOURCE_HW: np.array([hw, hw], np.int32)})
        ref = _reference(spec, net, images)
        np.testing.assert_array_equal(got[S.LETTERBOX], ref[S.LETTERBOX], err_msg=str(hw))
        for name in (S.SEG_MASK, S.DEPTH):
            assert got[name].shape == ref[name].shape, (hw, name)
        resized = fit_size(hw, spec.input_hw, upscale) != hw
        for name in (S.NUM_DETS, S.DET_CLASSES):
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{hw} {name}")
        # rounding of one level moves the tiny network's brightness-driven boxes a little
        np.testing.assert_allclose(got[S.DET_BOXES], ref[S.DET_BOXES], atol=0.5 if resized else 1e-4)
        if not resized:
            np.testing.assert_array_equal(got[S.SEG_MASK], ref[S.SEG_MASK], err_msg=str(hw))
        else:
            assert (got[S.SEG_MASK] == ref[S.SEG_MASK]).mean() > 0.99, hw


def test_the_network_input_is_opencvs_letterbox_within_one_level(tmp_path):
    from serving.frame_graph import frame_model

    spec = tiny_spec()
    proto = frame_model(onnx.load(str(make_tiny_onnx(spec, tmp_path / "net.onnx"))), spec)
    proto.graph.output.append(
        onnx.helper.make_tensor_value_info("network/images", onnx.TensorProto.UINT8, None)
    )
    session = ort.InferenceSession(proto.SerializeToString())
    rng = np.random.default_rng(1)
    for hw in SIZES:
        image = rng.integers(0, 256, (1, *hw, 3), dtype=np.uint8)
        feeds = {S.IMAGE: image, S.SOURCE_HW: np.array([hw], np.int32)}
        got = session.run(["network/images"], feeds)[0][0].astype(int)
        want = network_image(image[0], spec.input_hw, spec.letterbox)[0].astype(int)
        assert got.shape == want.shape and np.abs(got - want).max() <= 1, hw


def test_boxes_and_letterbox_come_back_in_the_pixels_of_the_source_a_frame_was_decoded_from(tmp_path):
    """A 720p JPEG decoded at half scale is a 360x640 frame of a 720x1280 source."""
    spec = tiny_spec()
    net, frame, _ = _sessions(spec, tmp_path)
    half = np.random.default_rng(2).integers(0, 256, (1, 360, 640, 3), dtype=np.uint8)
    as_is = _run(frame, {S.IMAGE: half, S.SOURCE_HW: np.array([[360, 640]], np.int32)})
    of_720p = _run(frame, {S.IMAGE: half, S.SOURCE_HW: np.array([[720, 1280]], np.int32)})
    np.testing.assert_allclose(of_720p[S.DET_BOXES], 2 * as_is[S.DET_BOXES], rtol=1e-6)
    np.testing.assert_array_equal(of_720p[S.SEG_MASK], as_is[S.SEG_MASK])
    row = Letterbox.from_tensor(of_720p[S.LETTERBOX][0])
    assert (row.src_h, row.src_w) == (720, 1280)
    assert row.scale == pytest.approx(Letterbox.fit((720, 1280), spec.input_hw).scale)
    ref = _reference(spec, net, half, source_hw=np.array([[720, 1280]]))
    np.testing.assert_allclose(of_720p[S.DET_BOXES], ref[S.DET_BOXES], atol=0.5)  # rounding, as above
    np.testing.assert_allclose(of_720p[S.LETTERBOX], ref[S.LETTERBOX], rtol=1e-6)


def test_fusion_frame_graph_passes_lidar_depth_through(tmp_path):
    spec = tiny_spec(fusion=True)
    net, frame, _ = _sessions(spec, tmp_path)
    image = np.random.default_rng(3).integers(0, 256, (1, 64, 96, 3), dtype=np.uint8)
    for depth_value in (0.0, 30.0):
        lidar = np.full((1, 1, *spec.input_hw), depth_value, np.float32)
        feeds = {S.IMAGE: image, S.SOURCE_HW: np.array([[64, 96]], np.int32), S.LIDAR_DEPTH: lidar}
        got = _run(frame, feeds)
        ref = _run(net, {S.IMAGES: image.transpose(0, 3, 1, 2).copy(), S.LIDAR_DEPTH: lidar})
        np.testing.assert_array_equal(got[S.DEPTH], ref[S.DEPTH])


def test_the_frame_graph_of_every_head_subset_serves_only_its_heads(tmp_path):
    from tests.tiny_onnx import byom_specs

    for spec in byom_specs():
        net, frame, _ = _sessions(spec, tmp_path / spec.name)
        outputs = {o.name for o in frame.get_outputs()}
        assert outputs == {t.name for t in spec.network_outputs} | {S.LETTERBOX}
        image = np.zeros((1, 100, 150, 3), np.uint8)
        got = _run(frame, {S.IMAGE: image, S.SOURCE_HW: np.array([[100, 150]], np.int32)})
        ref = _reference(spec, net, image)
        assert got[S.SEG_MASK].shape == ref[S.SEG_MASK].shape


def test_a_network_without_the_contracts_tensors_is_refused(tmp_path):
    from serving.errors import ServingError
    from serving.frame_graph import write_frame_onnx

    net = make_tiny_onnx(tiny_spec(), tmp_path / "net.onnx")
    with pytest.raises(ServingError, match=r"lacks the contract's tensors \['lidar_depth'\]"):
        write_frame_onnx(net, tmp_path / "frame.onnx", tiny_spec(fusion=True))
