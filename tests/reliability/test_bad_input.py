"""Bad input to the ensembles: each case gets its own clear error, batch-mates and the server don't notice.

Each case is sent at the same moment as a good camera and a good fusion request (a barrier releases
the three together, so they share the decode and frame model batches); the good ones must answer
exactly as they do alone, and the server and every model must be live and ready afterwards.
The cases of Triton's own ``qa/L0_input_validation`` plus the project's limits (``FrameLimits`` of
the test repository, ``tests.conftest.TEST_LIMITS``). About 20 s here.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from serving import spec as S
from tests.conftest import TEST_LIMITS
from tests.reliability.bad_input_cases import (
    ENSEMBLE_MODELS,
    check_case,
    describe,
    encoded,
    jpeg,
    png_header,
    send,
    server_state,
    tensor_request,
)
from tests.serving.triton_helpers import scenes

pytestmark = pytest.mark.triton

CAM, FUSION = S.ENSEMBLE_CAMERA, S.ENSEMBLE_FUSION
INVALID, NOT_FOUND, OK = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK
L = TEST_LIMITS


@pytest.fixture(scope="module")
def scene():
    return scenes([400], lidar=True)[0]


def _fusion(scene, **override):
    inputs = {S.IMAGE: scene.image[None], S.POINTS: scene.points[None], S.PROJECTION: scene.projection[None]}
    inputs.update(override)
    return {k: v for k, v in inputs.items() if v is not None}


def _nan_points(scene):
    pts = scene.points.copy()
    pts[5, 1] = np.nan
    return pts[None]


def _inf_projection(scene):
    proj = scene.projection.copy()
    proj[1, 3] = np.inf
    return proj[None]


def _many_points(n: int) -> np.ndarray:
    return (np.random.default_rng(1).normal(0, 5, (1, n, 4)) + [0, 0, 15, 0]).astype(np.float32)


def _raw(scene, **fields):
    return tensor_request(CAM, {S.IMAGE: scene.image[None]}, **fields)


# id -> (scene -> request, status, pattern the message must match)
CASES = {
    "truncated jpeg": (
        lambda s: tensor_request(CAM, encoded(jpeg(s.image)[:5000])),
        INVALID,
        r"truncated \(no end-of-image marker\)",
    ),
    "random bytes": (
        lambda s: tensor_request(CAM, encoded(np.random.default_rng(3).bytes(5000))),
        INVALID,
        r"not a JPEG or PNG",
    ),
    "16k x 16k png header": (
        lambda s: tensor_request(CAM, encoded(png_header(16384, 16384) + b"\0" * 64)),
        INVALID,
        rf"16384x16384 = 268435456 pixels exceeds the limit of {L.max_pixels}",
    ),
    "too many pixels (jpeg)": (
        lambda s: tensor_request(CAM, encoded(jpeg(np.zeros((2000, 2500, 3), np.uint8)))),
        INVALID,
        rf"2000x2500 = 5000000 pixels exceeds the limit of {L.max_pixels}",
    ),
    "0x0 frame": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 0, 0, 3), np.uint8)}),
        INVALID,
        r"image is empty|0x0",
    ),
    "1x65536 frame": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 1, 65536, 3), np.uint8)}),
        INVALID,
        rf"1x65536 pixels is too small \(min side {L.min_side}\)",
    ),
    "1x1 frame": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 1, 1, 3), np.uint8)}),
        INVALID,
        r"1x1 pixels is too small",
    ),
    "4 channels": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 64, 64, 4), np.uint8)}),
        INVALID,
        r"unexpected shape for input 'image'",
    ),
    "float frame": (
        lambda s: tensor_request(CAM, {S.IMAGE: s.image[None].astype(np.float32)}),
        INVALID,
        r"input 'image' data-type is 'FP32', but model 'perception' expects 'UINT8'",
    ),
    "wrong rank": (
        lambda s: tensor_request(CAM, {S.IMAGE: s.image[None, :, :, 0].copy()}),
        INVALID,
        r"unexpected shape for input 'image'",
    ),
    "both image inputs": (
        lambda s: tensor_request(CAM, {S.IMAGE: s.image[None], **encoded(jpeg(s.image))}),
        INVALID,
        r"send exactly one of 'image' \(raw frame\) or 'image_encoded'",
    ),
    "neither image input (fusion: points only)": (
        lambda s: tensor_request(FUSION, {S.POINTS: s.points[None], S.PROJECTION: s.projection[None]}),
        INVALID,
        r"send exactly one of 'image' \(raw frame\) or 'image_encoded'",
    ),
    "no inputs at all": (
        lambda s: tensor_request(CAM, {}),
        INVALID,
        r"in ensemble 'perception', .*request has 0 inputs",
    ),
    "empty image_encoded": (
        lambda s: tensor_request(CAM, {S.IMAGE_ENCODED: np.zeros((1, 0), np.uint8)}),
        INVALID,
        r"empty \(0 bytes\)",
    ),
    "zero-size batch": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((0, 360, 640, 3), np.uint8)}),
        INVALID,
        r"input byte size mismatch for input 'image'",
    ),
    "zero-width frame": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 360, 0, 3), np.uint8)}),
        INVALID,
        r"image is empty",
    ),
    "batch 9": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((9, 32, 32, 3), np.uint8)}),
        INVALID,
        r"batch-size must be <= 8",
    ),
    "nan points": (
        lambda s: tensor_request(FUSION, _fusion(s, points=_nan_points(s))),
        INVALID,
        r"points hold NaN or Inf",
    ),
    "inf projection": (
        lambda s: tensor_request(FUSION, _fusion(s, projection=_inf_projection(s))),
        INVALID,
        r"projection matrix holds NaN or Inf",
    ),
    "points [N,3]": (
        lambda s: tensor_request(FUSION, _fusion(s, points=s.points[None, :, :3].copy())),
        INVALID,
        r"unexpected shape for input 'points'",
    ),
    "projection 3x3": (
        lambda s: tensor_request(FUSION, _fusion(s, projection=np.eye(3, dtype=np.float32)[None])),
        INVALID,
        r"unexpected shape for input 'projection'",
    ),
    "fusion without points": (
        lambda s: tensor_request(FUSION, {S.IMAGE: s.image[None]}),
        INVALID,
        r"expected 3 inputs but got 1|points",
    ),
    "points to the camera ensemble": (
        lambda s: tensor_request(CAM, _fusion(s)),
        INVALID,
        r"unexpected inference input '(points|projection)'|expected number of inputs between 0 and 2 but "
        r"got 3",
    ),
    "points above max_points": (
        lambda s: tensor_request(FUSION, _fusion(s, points=_many_points(L.max_points + 1))),
        INVALID,
        rf"holds {L.max_points + 1} LiDAR points, above the limit of {L.max_points} \(max_points\)",
    ),
    "request above max_request_bytes": (
        lambda s: tensor_request(CAM, {S.IMAGE: np.zeros((1, 1600, 1800, 3), np.uint8)}),
        INVALID,
        rf"request of 86400\d\d bytes exceeds the limit of {L.max_request_bytes} bytes",
    ),
    "resize_to_source to the pipeline (the client resizes)": (
        lambda s: tensor_request(CAM, {S.IMAGE: s.image[None], "resize_to_source": np.array([[True]])}),
        INVALID,
        r"unexpected inference input 'resize_to_source'",
    ),
    "image_encoded as INT8": (
        lambda s: tensor_request(CAM, {S.IMAGE_ENCODED: np.frombuffer(jpeg(s.image), np.int8)[None]}),
        INVALID,
        r"input 'image_encoded' data-type is 'INT8', but model 'perception' expects 'UINT8'",
    ),
    "unknown input name": (
        lambda s: tensor_request(CAM, {S.IMAGE: s.image[None], "imgae": np.zeros((1, 1), np.uint8)}),
        INVALID,
        r"unexpected inference input 'imgae'",
    ),
    "unknown requested output": (
        lambda s: _raw(s, outputs=["seg_mask", "no_such_output"]),
        INVALID,
        r"unexpected inference output 'no_such_output'",
    ),
    "duplicate requested output": (
        lambda s: _raw(s, outputs=["seg_mask", "seg_mask"]),
        OK,  # Triton answers the output once
        r"^OK, outputs seg_mask$",
    ),
    "10k requested outputs": (
        lambda s: _raw(s, outputs=[f"out_{i}" for i in range(10_000)]),
        INVALID,
        r"unexpected inference output 'out_\d+'",
    ),
}


def _byte_size_mismatch(scene):
    request = _raw(scene)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-7]
    return request


def _batch_mismatch(scene):
    # image for one frame, points and projection for two
    pts = np.repeat(scene.points[None], 2, axis=0)
    return tensor_request(FUSION, _fusion(scene, points=pts))


CASES.update(
    {
        "byte size not matching the shape": (
            _byte_size_mismatch,
            INVALID,
            r"unexpected (total )?byte size|expected \d+ bytes|byte size",
        ),
        "batch sizes differ between inputs": (_batch_mismatch, INVALID, r"batch|shape"),
        "10k duplicate requested outputs": (
            lambda s: _raw(s, outputs=["seg_mask"] * 10_000),
            OK,
            r"^OK, outputs seg_mask$",
        ),
        "unknown model": (lambda s: tensor_request("no_such_model", {}), NOT_FOUND, r"no_such_model"),
        "../ model name": (
            lambda s: tensor_request(f"../{S.ENSEMBLE_CAMERA}", {S.IMAGE: s.image[None]}),
            NOT_FOUND,
            r"\.\./perception",
        ),
        "unknown version": (
            lambda s: tensor_request(CAM, {S.IMAGE: s.image[None]}, version="7"),
            NOT_FOUND,
            r"version 7|has no available versions|unknown model",
        ),
    }
)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_its_own_clear_error(triton_server, scene, reliability, case):
    build, code, pattern = CASES[case]
    check_case(triton_server.url, case, build(scene), code, pattern, reliability)


def test_zero_lidar_points_is_a_valid_request(triton_server, scene, reliability):
    # not an error: a sweep may have no return in front of the camera; the depth image is empty
    request = tensor_request(FUSION, _fusion(scene, points=np.zeros((1, 0, 4), np.float32)))
    reply = send(triton_server.url, request)
    state = server_state(triton_server.url, ENSEMBLE_MODELS)
    reliability(
        "bad input", "zero LiDAR points (valid)", describe(request), reply.summary(), reply.seconds, state
    )
    assert reply.outputs is not None, reply.summary()
    assert reply.outputs[S.LETTERBOX][0, 3:5].tolist() == list(scene.image.shape[:2])
    assert reply.outputs[S.DEPTH].size > 0
