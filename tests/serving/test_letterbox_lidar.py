import numpy as np
import pytest

from serving.errors import SpecError
from serving.letterbox import Letterbox, letterbox_image
from serving.lidar import project_to_depth_image


def test_letterbox_of_720p_into_384x640_pads_rows_only():
    img = np.full((720, 1280, 3), 200, np.uint8)
    out, lb = letterbox_image(img, (384, 640))
    assert out.shape == (384, 640, 3)
    assert lb.scale == pytest.approx(0.5) and lb.pad_x == 0 and lb.pad_y == 12
    assert (out[:12] == 114).all() and (out[12:372] == 200).all() and (out[372:] == 114).all()


def test_boxes_round_trip_to_source_pixels():
    lb = Letterbox.fit((720, 1280), (384, 640))
    src = np.array([[100.0, 50.0, 300.0, 400.0]], np.float32)
    model = np.concatenate([lb.points_to_model(src[:, :2]), lb.points_to_model(src[:, 2:])], axis=1)
    np.testing.assert_allclose(lb.boxes_to_source(model), src, atol=1e-4)


def test_crop_dense_removes_padding_and_resizes_classes_nearest():
    lb = Letterbox.fit((720, 1280), (384, 640))
    seg = np.zeros((384, 640), np.uint8)
    seg[12:372] = 2
    crop = lb.crop_dense(seg)
    assert crop.shape == (360, 640) and (crop == 2).all()
    full = lb.crop_dense(seg, resize_to_source=True)
    assert full.shape == (720, 1280) and set(np.unique(full)) == {2}
    depth = np.ones((192, 320), np.float16)
    assert lb.crop_dense(depth, stride=2).shape == (180, 320)


def test_lidar_projection_keeps_nearest_return_per_pixel():
    # identity-like camera: u = x/z * 100 + 320, v = y/z * 100 + 192
    proj = np.array([[100, 0, 320, 0], [0, 100, 192, 0], [0, 0, 1, 0]], np.float32)
    pts = np.array([[0, 0, 10, 1], [0, 0, 5, 1], [0, 0, -3, 1], [1000, 0, 1, 1]], np.float32)
    depth = project_to_depth_image(pts, proj, (384, 640))
    assert depth.shape == (1, 384, 640)
    assert depth[0, 192, 320] == pytest.approx(5.0)
    assert np.count_nonzero(depth) == 1  # behind-camera and off-image points dropped


def test_lidar_projection_rejects_nan_and_bad_shapes():
    proj = np.eye(3, 4, dtype=np.float32)
    with pytest.raises(SpecError, match="NaN"):
        project_to_depth_image(np.array([[np.nan, 0, 1, 0]], np.float32), proj, (32, 32))
    with pytest.raises(SpecError, match="3x4"):
        project_to_depth_image(np.zeros((1, 4), np.float32), np.eye(3, dtype=np.float32), (32, 32))


@pytest.mark.parametrize("hw", [(384, 640), (720, 1280), (375, 1242), (384, 600), (100, 90)])
@pytest.mark.parametrize("upscale", [True, False])
def test_network_image_is_the_letterboxed_image_transposed(hw, upscale):
    from serving.letterbox import network_image
    from serving.spec import LetterboxRule

    img = np.random.default_rng(hw[1]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    rule = LetterboxRule(pad_value=114, allow_upscale=upscale)
    chw, lb = network_image(img, (384, 640), rule)
    boxed, expected_lb = letterbox_image(img, (384, 640), 114, upscale)
    assert lb == expected_lb and chw.flags.c_contiguous and chw.shape == (3, 384, 640)
    np.testing.assert_array_equal(chw, boxed.transpose(2, 0, 1))
