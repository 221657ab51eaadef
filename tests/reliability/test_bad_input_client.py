"""Bad input through the client library (PerceptionClient): refused before sending where the client
can tell, else the server's refusal mapped by status code and never retried.

A case the client refuses itself must not reach the server (its failure count stays put); a case
the server refuses reaches it once: INVALID_ARGUMENT / NOT_FOUND are not retried (the client logs
every retry; none may be logged).
About 5 s here.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from clients import (
    InvalidRequestError,
    ModelNotFoundError,
    PerceptionClient,
    RequestTooLargeError,
    RetryPolicy,
)
from serving import spec as S
from serving.errors import SpecError
from tests.conftest import TEST_LIMITS
from tests.reliability.bad_input_cases import ENSEMBLE_MODELS, jpeg, server_state
from tests.serving.triton_helpers import scenes

pytestmark = pytest.mark.triton

# retries would show as extra failures on the server: allow several, expect none
RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.05, max_delay_s=0.1)


@pytest.fixture(scope="module")
def scene():
    return scenes([401], lidar=True)[0]


def _nan(points):
    p = points.copy()
    p[0, 0] = np.nan
    return p


# id -> (model, raw mode, infer kwargs from a scene, error class, message pattern, reaches the server)
CASES = {
    "float frame": (S.ENSEMBLE_CAMERA, False, lambda s: {"frame": s.image.astype(np.float32)},
                    SpecError, r"frame must be an HxWx3 uint8 RGB array, got float32", False),
    "grey frame": (S.ENSEMBLE_CAMERA, False, lambda s: {"frame": s.image[:, :, 0]},
                   SpecError, r"HxWx3 uint8 RGB array, got uint8 \(360, 640\)", False),
    "frame and image both": (S.ENSEMBLE_CAMERA, False, lambda s: {"frame": s.image, "image": jpeg(s.image)},
                             SpecError, r"pass exactly one of image=", False),
    "neither frame nor image": (S.ENSEMBLE_CAMERA, False, lambda s: {},
                                SpecError, r"pass exactly one of image=", False),
    "empty bytes": (S.ENSEMBLE_CAMERA, False, lambda s: {"image": b""},
                    SpecError, r"image is empty \(0 bytes\)", False),
    "points without projection": (S.ENSEMBLE_FUSION, False, lambda s: {"frame": s.image, "points": s.points},
                                  SpecError, r"points and projection go together", False),
    "points to a camera model": (
        S.ENSEMBLE_CAMERA, False,
        lambda s: {"frame": s.image, "points": s.points, "projection": s.projection},
        SpecError, r"camera-only: it takes no LiDAR points", False),
    "fusion model without points": (S.ENSEMBLE_FUSION, False, lambda s: {"frame": s.image},
                                    SpecError, r"fuses LiDAR: pass points and projection", False),
    "nan points": (
        S.ENSEMBLE_FUSION, False,
        lambda s: {"frame": s.image, "points": _nan(s.points), "projection": s.projection},
        SpecError, r"points hold NaN or Inf", False),
    "request above the client's max_request_bytes": (
        S.ENSEMBLE_CAMERA, False, lambda s: {"frame": np.zeros((5000, 5000, 3), np.uint8)},
        RequestTooLargeError, r"request of 75004104 bytes exceeds the client limit", False),
    "raw mode, undecodable bytes": ("cam_n", True, lambda s: {"image": b"\xff\xd8\xff" + b"\0" * 100},
                                    SpecError, r"cannot decode image \(103 bytes\)", False),
    "truncated jpeg (server refuses)": (
        S.ENSEMBLE_CAMERA, False, lambda s: {"image": jpeg(s.image)[:3000]},
        InvalidRequestError, r"INVALID_ARGUMENT: .*JPEG of 3000 bytes is truncated", True),
    "random bytes (server refuses)": (
        S.ENSEMBLE_CAMERA, False, lambda s: {"image": np.random.default_rng(5).bytes(4000)},
        InvalidRequestError, r"not a JPEG or PNG file \(4000 bytes", True),
    "points above the server's max_points": (
        S.ENSEMBLE_FUSION, False,
        lambda s: {"frame": s.image, "points": np.ones((TEST_LIMITS.max_points + 5, 4), np.float32),
                   "projection": s.projection},
        InvalidRequestError, rf"holds {TEST_LIMITS.max_points + 5} LiDAR points, above the limit", True),
    "frame above the server's max_request_bytes": (
        S.ENSEMBLE_CAMERA, False, lambda s: {"frame": np.zeros((1700, 1700, 3), np.uint8)},
        InvalidRequestError, r"request of 8670008 bytes exceeds the limit of 8388608 bytes", True),
}  # fmt: skip


def _requests(url: str, model: str) -> int:
    """The requests the model answered (success or failure) once the count stops moving (Triton
    updates it after the reply is sent; a python-backend model's error response counts as success)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        last = None
        for _ in range(30):
            stats = client.get_inference_statistics(model).model_stats
            count = sum(int(s.inference_stats.fail.count + s.inference_stats.success.count) for s in stats)
            if count == last:
                return count
            last = count
            time.sleep(0.1)
        return count
    finally:
        client.close()


@pytest.mark.parametrize("case", list(CASES))
def test_client_refuses_or_maps_bad_input(triton_server, scene, reliability, case, caplog):
    import re

    caplog.set_level("WARNING", logger="clients.client")
    model, raw, kwargs, error, pattern, reaches = CASES[case]
    url = triton_server.url
    with PerceptionClient(url, model=model, raw=raw, retry=RETRY, timeout_s=30) as client:
        info_ = client.model_info()  # the config read is not part of the case
        # a raw frame of a camera pipeline goes to its frame model: count the failures of both
        called = [m for m in (model, info_.frame_model) if m]
        before = sum(_requests(url, m) for m in called)
        start = time.perf_counter()
        with pytest.raises(error) as info:
            client.infer(**kwargs(scene))
        seconds = time.perf_counter() - start
    reached = sum(_requests(url, m) for m in called) - before
    state = server_state(url, ENSEMBLE_MODELS)
    came = f"{type(info.value).__name__}: {info.value}"
    reliability(
        "bad input", f"client: {case}", f"PerceptionClient({model}).infer", came[:220], seconds, state
    )
    assert re.search(pattern, str(info.value)), str(info.value)
    assert not [r for r in caplog.records if "retry" in r.getMessage()]  # one attempt, no backoff
    if reaches:
        assert reached > 0, f"{case}: the server saw no request"
    else:
        assert reached == 0, f"{case}: refused by the client, yet the server saw {reached} requests"
    assert state == "live, ready"


def test_unknown_model_is_not_found_and_not_retried(triton_server, reliability, caplog):
    caplog.set_level("WARNING", logger="clients.client")
    start = time.perf_counter()
    with (
        PerceptionClient(triton_server.url, model="../perception", retry=RETRY) as client,
        pytest.raises(ModelNotFoundError) as info,
    ):
        client.infer(frame=np.zeros((64, 64, 3), np.uint8))
    seconds = time.perf_counter() - start
    state = server_state(triton_server.url, ENSEMBLE_MODELS)
    came = f"ModelNotFoundError: {info.value}"
    reliability(
        "bad input",
        "client: '../perception' model",
        "PerceptionClient('../perception')",
        came,
        seconds,
        state,
    )
    assert "'../perception' is not served by" in str(info.value)  # and what it serves: clients.served
    assert "it serves the pipelines perception, perception_fusion" in str(info.value)
    assert not [r for r in caplog.records if "retry" in r.getMessage()]  # one attempt, no backoff
