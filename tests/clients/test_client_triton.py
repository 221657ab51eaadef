"""The client library against a real tritonserver serving tiny generated models."""

from __future__ import annotations

import asyncio
import logging
import time

import cv2
import numpy as np
import pytest

from clients import (
    AsyncPerceptionClient,
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    PerceptionClient,
    RequestTooLargeError,
    RetryPolicy,
    ServerUnavailableError,
)
from clients.local import LocalModel
from serving.launcher import free_port
from serving.spec import ENSEMBLE_FUSION

pytestmark = pytest.mark.triton

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.05, max_delay_s=0.2)
PROJ = np.array([[80, 0, 100, 0], [0, 80, 60, 0], [0, 0, 1, 0]], np.float32)


def _frame(seed: int, hw=(120, 200)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*hw, 3), dtype=np.uint8)


def _points(seed: int, n: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0, 4, (n, 4)) + [0, 0, 12, 0]).astype(np.float32)


def _same(a, b) -> None:
    assert a.to_dict() == b.to_dict()
    np.testing.assert_array_equal(a.seg, b.seg)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_sync_async_raw_and_local_agree(tiny_server, tiny_onnx):
    local = LocalModel(tiny_onnx)
    frames = [_frame(i) for i in range(4)]
    with (
        PerceptionClient(tiny_server.grpc_url) as client,
        PerceptionClient(tiny_server.grpc_url, model="tiny", raw=True) as raw,
    ):
        for frame in frames:
            expected = local.infer(frame=frame)
            got = client.infer(frame=frame)
            _same(got, expected)
            _same(raw.infer(frame=frame), expected)
            assert got.detections[0].class_name == "car" and got.source_hw == (120, 200)

    async def run_async():
        async with AsyncPerceptionClient(tiny_server.grpc_url) as client:
            return await asyncio.gather(*(client.infer(frame=f) for f in frames))

    for frame, got in zip(frames, asyncio.run(run_async()), strict=True):
        _same(got, local.infer(frame=frame))


def test_encoded_png_equals_the_frame(tiny_server):
    frame = _frame(7)
    ok, png = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    with PerceptionClient(tiny_server.grpc_url) as client:
        _same(client.infer(image=png.tobytes()), client.infer(frame=frame))


def test_fusion_with_points(tiny_server, tiny_fusion_onnx):
    local = LocalModel(tiny_fusion_onnx)
    with PerceptionClient(tiny_server.grpc_url, model=ENSEMBLE_FUSION) as client:
        for seed, n in ((1, 50), (2, 900)):
            frame, pts = _frame(seed), _points(seed, n)
            _same(
                client.infer(frame=frame, points=pts, projection=PROJ),
                local.infer(frame=frame, points=pts, projection=PROJ),
            )


def test_invalid_argument_is_not_retried(tiny_server, caplog):
    with PerceptionClient(tiny_server.grpc_url, retry=FAST_RETRY) as client, caplog.at_level(logging.WARNING):
        with pytest.raises(InvalidRequestError, match="too small"):
            client.infer(frame=_frame(0, hw=(8, 8)))  # below the server's minimum side
        assert not [r for r in caplog.records if "retry" in r.getMessage()]
        assert client.infer(frame=_frame(1)).detections  # and the server is fine


def test_unavailable_is_retried_with_backoff_then_raised(caplog):
    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.1, max_delay_s=1.0)
    with PerceptionClient(url, retry=policy, timeout_s=5) as client, caplog.at_level(logging.WARNING):
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailableError):
            client.model_info()
        elapsed = time.monotonic() - t0
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3
    assert elapsed >= 0.5 * (0.1 + 0.2 + 0.4)  # the jittered backoff was waited


def test_deadline_unknown_model_and_size_limit(tiny_server):
    # A 720p frame through three python-backend steps takes far more than 1 ms on any machine, so
    # the deadline is exceeded whether it strikes during the metadata calls or the inference
    # (a bare metadata call with a 0.1 ms deadline sometimes completed in CI on a quiet machine).
    fast = PerceptionClient(tiny_server.grpc_url, timeout_s=1e-3, retry=FAST_RETRY)
    with fast, pytest.raises(DeadlineExceededError):
        fast.infer(frame=_frame(0, hw=(720, 1280)))
    unknown = PerceptionClient(tiny_server.grpc_url, model="no_such_model")
    with unknown, pytest.raises(ModelNotFoundError):
        unknown.infer(frame=_frame(0))
    with PerceptionClient(tiny_server.grpc_url, max_request_bytes=50_000) as client:
        client.model_info()
        stats = client._client.get_inference_statistics("perception", as_json=True)
        before = stats["model_stats"][0].get("inference_count", "0")
        with pytest.raises(RequestTooLargeError, match="exceeds the client limit"):
            client.infer(frame=_frame(0, hw=(200, 300)))  # 180 kB
        stats = client._client.get_inference_statistics("perception", as_json=True)
        assert stats["model_stats"][0].get("inference_count", "0") == before  # nothing was sent


def test_shared_memory_gives_the_same_results_and_cleans_up(tiny_server):
    frame = _frame(3, hw=(720, 1280))
    with PerceptionClient(tiny_server.grpc_url) as plain:
        expected = plain.infer(frame=frame)
    client = PerceptionClient(tiny_server.grpc_url, shared_memory=True)
    try:
        for _ in range(2):
            _same(client.infer(frame=frame), expected)
        status = client._client.get_system_shared_memory_status(as_json=True)
        assert len(status.get("regions", {})) == 1
    finally:
        client.close()
    with PerceptionClient(tiny_server.grpc_url) as check:
        assert not check._client.get_system_shared_memory_status(as_json=True).get("regions")


def test_async_shared_memory_pool_gives_the_same_results_and_cleans_up(tiny_server):
    frames = [_frame(i, hw=(360, 640)) for i in range(6)]
    with PerceptionClient(tiny_server.grpc_url) as plain:
        expected = [plain.infer(frame=f) for f in frames]

    async def run():
        client = AsyncPerceptionClient(tiny_server.grpc_url, shared_memory=True, shm_slots=3)
        try:
            results = await asyncio.gather(*(client.infer(frame=f) for f in frames))
            status = await client._client.get_system_shared_memory_status(as_json=True)
            return results, len(status.get("regions", {}))
        finally:
            await client.close()

    results, regions = asyncio.run(run())
    assert 1 <= regions <= 3  # one region per request in flight, at most shm_slots
    for got, want in zip(results, expected, strict=True):
        _same(got, want)
    with PerceptionClient(tiny_server.grpc_url) as check:
        assert not check._client.get_system_shared_memory_status(as_json=True).get("regions")
