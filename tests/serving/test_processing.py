"""The pure functions the python-backend models call: the decode step, the CPU reference of the
frame graph, the network model's batching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving import spec as S
from serving.ensemble import FrameLimits
from serving.errors import SpecError
from serving.letterbox import Letterbox
from serving.processing import (
    concat_batches,
    decode_encoded,
    decode_factor,
    decode_step,
    encoded_size,
    postprocess,
    preprocess,
    request_frames,
    split_batches,
)
from serving.spec import ModelSpec

SPEC = ModelSpec(name="cam-n", input_hw=(192, 320), top_k=5)
FUSION = ModelSpec(name="fusion-n", input_hw=(192, 320), top_k=5, fusion=True)
LIMITS = FrameLimits(max_pixels=2_000_000, min_side=16)


def _frame(h=72, w=128, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encode(frame: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_encoded_size_reads_the_header(ext):
    assert encoded_size(_encode(_frame(72, 128), ext)) == (72, 128)


def test_png_decodes_losslessly_to_rgb():
    frame = _frame()
    np.testing.assert_array_equal(decode_encoded(_encode(frame, ".png"), LIMITS), frame)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"GIF89a" + bytes(100), "not a JPEG or PNG"),
        (np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8).tobytes(), "not a JPEG or PNG"),
        (_encode(_frame(), ".jpg")[:-300], "truncated"),
        (_encode(_frame(), ".png")[:-300], "truncated"),
        (_encode(_frame(), ".jpg")[:20], "truncated or corrupt"),
        (_encode(np.zeros((1, 1, 3), np.uint8), ".png"), "too small"),
        (_encode(np.zeros((1500, 1500, 3), np.uint8), ".jpg"), "exceeds the limit of 2000000 pixels"),
    ],
    ids=["empty", "gif", "random", "truncated-jpeg", "truncated-png", "header-only", "1x1", "too-large"],
)
def test_bad_encoded_images_are_named(data, message):
    with pytest.raises(SpecError, match=message):
        decode_encoded(data, LIMITS)


@pytest.mark.parametrize(
    ("src", "factor"),
    [
        ((720, 1280), 2),
        ((1080, 1920), 2),
        ((2160, 3840), 4),
        ((4320, 7680), 8),
        ((384, 640), 1),
        ((300, 400), 1),
    ],
)
def test_decode_factor_is_the_largest_dct_reduction_that_keeps_the_letterboxed_size(src, factor):
    assert decode_factor(src, (384, 640)) == factor


def test_a_large_jpeg_is_decoded_once_at_the_reduced_scale_and_keeps_its_source_size():
    big = cv2.resize(_frame(90, 160), (1280, 720), interpolation=cv2.INTER_LINEAR)
    jpeg, png = _encode(big, ".jpg"), _encode(big, ".png")
    limits = FrameLimits()
    [(frame, src)] = request_frames(None, np.frombuffer(jpeg, np.uint8)[None], limits, (384, 640))
    assert frame.shape == (360, 640, 3) and src == (720, 1280)
    full = decode_encoded(jpeg, limits)
    half = cv2.resize(full, (640, 360), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.astype(int) - half.astype(int)).mean() < 3  # the same picture, at half size
    [(frame, src)] = request_frames(None, np.frombuffer(png, np.uint8)[None], limits, (384, 640))
    assert frame.shape == (720, 1280, 3) and src == (720, 1280)  # PNG has no DCT scaling
    out = decode_step(SPEC, [(frame, src)])
    assert out[S.IMAGE].shape == (1, 720, 1280, 3) and out[S.SOURCE_HW].tolist() == [[720, 1280]]


def test_fusion_decode_step_projects_points_into_the_letterbox_of_the_source():
    """A reduced decode changes the frame, not where a LiDAR return lands in the model input."""
    proj = np.array([[[100, 0, 640, 0], [0, 100, 360, 0], [0, 0, 1, 0]]], np.float32)
    points = np.array([[[0, 0, 10, 1], [2.0, 1.0, 20, 1]]], np.float32)
    src = (720, 1280)
    full = decode_step(FUSION, [(_frame(720, 1280), src)], points, proj)[S.LIDAR_DEPTH]
    half = decode_step(FUSION, [(_frame(360, 640), src)], points, proj)[S.LIDAR_DEPTH]
    np.testing.assert_array_equal(full, half)
    assert np.count_nonzero(full) == 2
    with pytest.raises(SpecError, match="required"):
        decode_step(FUSION, [(_frame(360, 640), src)])


def test_request_frames_needs_exactly_one_image_input():
    with pytest.raises(SpecError, match="exactly one"):
        request_frames(None, None, LIMITS)
    with pytest.raises(SpecError, match="exactly one"):
        request_frames(_frame()[None], np.zeros((1, 10), np.uint8), LIMITS)
    with pytest.raises(SpecError, match="empty"):
        request_frames(np.zeros((1, 0, 0, 3), np.uint8), None, LIMITS)
    with pytest.raises(SpecError, match="too small"):
        request_frames(np.zeros((1, 1, 1, 3), np.uint8), None, LIMITS)


def test_preprocess_letterboxes_into_the_network_input():
    out = preprocess(SPEC, [_frame(72, 128)])
    assert out[S.IMAGES].shape == (1, 3, 192, 320) and out[S.IMAGES].dtype == np.uint8
    lb = Letterbox.from_tensor(out[S.LETTERBOX][0])
    assert (lb.src_h, lb.src_w) == (72, 128) and lb.scale == pytest.approx(2.5)
    assert (out[S.IMAGES][0, :, : lb.pad_y] == SPEC.letterbox.pad_value).all()


def test_fusion_preprocess_projects_points_with_the_same_letterbox():
    proj = np.array([[[100, 0, 64, 0], [0, 100, 36, 0], [0, 0, 1, 0]]], np.float32)
    points = np.array([[[0, 0, 10, 1], [0.5, 0.2, 20, 1]]], np.float32)
    out = preprocess(FUSION, [_frame(72, 128)], points, proj)
    depth = out[S.LIDAR_DEPTH]
    assert depth.shape == (1, 1, 192, 320)
    lb = Letterbox.from_tensor(out[S.LETTERBOX][0])
    u, v = lb.points_to_model(np.array([64.0, 36.0]))
    assert depth[0, 0, int(v), int(u)] == pytest.approx(10.0)
    assert np.count_nonzero(depth) == 2
    with pytest.raises(SpecError, match="NaN or Inf"):
        preprocess(FUSION, [_frame()], np.full((1, 3, 4), np.inf, np.float32), proj)
    with pytest.raises(SpecError, match="required"):
        preprocess(FUSION, [_frame()])


def test_postprocess_maps_boxes_to_source_pixels():
    lb = Letterbox.fit((72, 128), SPEC.input_hw)
    src_box = np.array([10.0, 20.0, 50.0, 60.0], np.float32)
    model_box = np.concatenate([lb.points_to_model(src_box[:2]), lb.points_to_model(src_box[2:])])
    boxes = np.zeros((1, 5, 4), np.float32)
    boxes[0, 0] = model_box
    boxes[0, 1] = 999  # past num_dets: must come back zero
    outputs = {
        S.NUM_DETS: np.array([1], np.int32),
        S.DET_BOXES: boxes,
        S.DET_SCORES: np.array([[0.9, 0.1, 0, 0, 0]], np.float32),
        S.DET_CLASSES: np.array([[2, 1, 0, 0, 0]], np.int32),
        S.SEG_MASK: np.ones((1, 192, 320), np.uint8),
        S.DEPTH: np.full((1, 96, 160), 7.0, np.float16),
    }
    out = postprocess(SPEC, outputs, lb.to_tensor()[None])
    np.testing.assert_allclose(out[S.DET_BOXES][0, 0], src_box, atol=1e-4)
    assert (out[S.DET_BOXES][0, 1:] == 0).all()
    assert out[S.SEG_MASK].shape == (1, *lb.resized_hw)
    full = postprocess(SPEC, outputs, lb.to_tensor()[None], resize_to_source=True)
    assert full[S.SEG_MASK].shape == (1, 72, 128) and full[S.DEPTH].shape == (1, 72, 128)
    assert full[S.DEPTH].dtype == np.float16 and (full[S.DEPTH] == 7.0).all()


def test_concat_and_split_are_inverse_over_requests_of_different_batch_sizes():
    reqs = [{S.IMAGES: np.full((n, 3, 4, 4), n, np.uint8)} for n in (1, 3, 2)]
    batch, sizes = concat_batches(reqs)
    assert batch[S.IMAGES].shape == (6, 3, 4, 4) and sizes == [1, 3, 2]
    back = split_batches({"y": batch[S.IMAGES] * 2}, sizes)
    for r, b in zip(reqs, back, strict=True):
        np.testing.assert_array_equal(b["y"], r[S.IMAGES] * 2)


def test_a_lone_request_is_passed_through_without_a_copy():
    image = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    batch, sizes = concat_batches([{S.IMAGES: image}])
    assert sizes == [2] and batch[S.IMAGES] is image
    strided = np.zeros((2, 8), np.float32)[:, ::2]  # not contiguous: Triton needs a contiguous buffer
    (back,) = split_batches({"y": strided}, sizes)
    assert back["y"].flags.c_contiguous and back["y"].shape == (2, 4)
