"""Bad requests against the real tritonserver: each gets its own clear error, its batch-mates succeed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from serving import spec as S
from tests.serving.triton_helpers import (
    concurrently,
    first,
    infer,
    pipeline_inputs,
    scenes,
)

pytestmark = pytest.mark.triton

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


def _jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def test_each_bad_request_gets_its_own_clear_error_while_the_batch_succeeds(triton_server):
    from tests.conftest import TEST_MAX_PIXELS

    scene = scenes([400], lidar=True)[0]
    good_jpeg = _jpeg(scene.image)
    big = np.zeros((2000, 2500, 3), np.uint8)  # 5 Mpx > TEST_MAX_PIXELS, a few kB as JPEG
    assert big.shape[0] * big.shape[1] > TEST_MAX_PIXELS
    rng = np.random.default_rng(3)
    bad_points = scene.points[:100].copy()
    bad_points[5, 1] = np.nan
    bad_points[7, 2] = np.inf
    cam, fusion = S.ENSEMBLE_CAMERA, S.ENSEMBLE_FUSION
    bad = {
        "wrong dtype": (cam, {S.IMAGE: scene.image[None].astype(np.float32)}, r"unexpected datatype|FP32"),
        "wrong rank": (cam, {S.IMAGE: scene.image[None, :, :, 0].copy()}, r"unexpected shape"),
        "empty tensor": (cam, {S.IMAGE: np.zeros((1, 0, 0, 3), np.uint8)}, r"empty"),
        "truncated jpeg": (
            cam,
            {S.IMAGE_ENCODED: np.frombuffer(good_jpeg[: len(good_jpeg) // 2], np.uint8)[None]},
            r"truncated",
        ),
        "random bytes": (
            cam,
            {S.IMAGE_ENCODED: rng.integers(0, 256, (1, 5000), dtype=np.uint8)},
            r"not a JPEG or PNG",
        ),
        "too many pixels": (
            cam,
            {S.IMAGE_ENCODED: np.frombuffer(_jpeg(big), np.uint8)[None]},
            rf"2000x2500 = 5000000 pixels exceeds the limit of {TEST_MAX_PIXELS}",
        ),
        "1x1 image": (cam, {S.IMAGE: np.zeros((1, 1, 1, 3), np.uint8)}, r"1x1 pixels is too small"),
        "nan points": (
            fusion,
            {S.IMAGE: scene.image[None], S.POINTS: bad_points[None], S.PROJECTION: scene.projection[None]},
            r"NaN or Inf",
        ),
        "projection shape": (
            fusion,
            {
                S.IMAGE: scene.image[None],
                S.POINTS: scene.points[None],
                S.PROJECTION: np.eye(3, dtype=np.float32)[None],
            },
            r"unexpected shape for input 'projection'",
        ),
    }
    good = [
        (cam, pipeline_inputs(scene)),
        (cam, {S.IMAGE_ENCODED: np.frombuffer(good_jpeg, np.uint8)[None]}),
        (fusion, pipeline_inputs(scene, fusion=True)),
    ]
    expected_good = [first(infer(triton_server.url, m, i)) for m, i in good]
    calls = [lambda m=m, i=i: first(infer(triton_server.url, m, i)) for m, i, _ in bad.values()]
    calls += [lambda m=m, i=i: first(infer(triton_server.url, m, i)) for m, i in good] * 2
    results = concurrently(calls)
    for (label, (_, _, pattern)), got in zip(bad.items(), results[: len(bad)], strict=True):
        assert isinstance(got, InferenceServerException), f"{label}: no error"
        assert got.status() == "StatusCode.INVALID_ARGUMENT", f"{label}: {got.status()} {got.message()}"
        assert __import__("re").search(pattern, got.message()), f"{label}: {got.message()}"
    for i, got in enumerate(results[len(bad) :]):
        assert not isinstance(got, Exception), got
        want = expected_good[i % len(good)]
        np.testing.assert_array_equal(got[S.SEG_MASK], want[S.SEG_MASK])  # type: ignore[index]
        np.testing.assert_array_equal(got[S.NUM_DETS], want[S.NUM_DETS])  # type: ignore[index]
    client = grpcclient.InferenceServerClient(triton_server.url)
    try:
        assert client.is_server_ready() and client.is_server_live()
        for model in (cam, fusion, "cam_n", "fusion_n"):
            assert client.is_model_ready(model), model
    finally:
        client.close()
