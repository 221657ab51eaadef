"""Overload: bursts of 10x the network's queue, queue timeouts, ensembles behind a full queue
(real tritonserver, tiny network at 256x384 with one instance and a queue of 16, ~25 s).

Every burst is sent at once from one asyncio client; a request beyond the queue must be refused at
once (UNAVAILABLE), the rest served; with the client's retry policy every request completes. The
refusal test keeps the instance busy from another process while its burst arrives (tests.reliability.fill).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient

from clients import AsyncPerceptionClient
from clients.options import ClientOptions, RetryPolicy
from serving.launcher import ServerOptions, TritonServer
from serving.model_config import BatchingOptions
from tests.reliability.pressure import (
    MB,
    RssSampler,
    frame,
    server_state,
    tiny_repository,
    wait_pending_zero,
)

pytestmark = pytest.mark.triton

HW = (256, 384)
QUEUE = 16
BURST = 10 * QUEUE
QUEUE_TIMEOUT_MS = 50
DEADLINE_SLACK_S = 0.15  # a call cut by its deadline is back within deadline + this
ROOT = Path(__file__).resolve().parents[2]
RSS_BOUND = 256 * MB  # stated: peak server + stubs RSS over the idle baseline during a burst


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    batching = BatchingOptions(max_queue_size=QUEUE)
    repo = tiny_repository(
        tmp_path_factory.mktemp("overload"), HW, network_instances=1, intra_op_threads=1, batching=batching
    )
    server = TritonServer(ServerOptions(repo, stop_grace_s=5)).start()
    try:
        yield server
    finally:
        server.stop()


def _images(batch: int) -> np.ndarray:
    return np.ascontiguousarray(np.stack([frame(i, HW) for i in range(batch)]).transpose(0, 3, 1, 2))


async def _raw(client, images: np.ndarray, **kwargs) -> tuple[str, float]:
    """One request to the raw network: ("" or the error, seconds)."""
    t0 = time.perf_counter()
    tensor = aioclient.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    try:
        await client.infer("tiny", [tensor], client_timeout=30, **kwargs)
        return "", time.perf_counter() - t0
    except Exception as exc:
        return str(exc), time.perf_counter() - t0


class _Filler:
    """While ``with _Filler(url):`` lasts, another process keeps the network's queue full with
    requests of 8 frames (one execution apiece; tests.reliability.fill), QUEUE - 4 at a time."""

    def __init__(self, url: str, n: int = QUEUE - 4) -> None:
        args = [sys.executable, "-m", "tests.reliability.fill", url, str(n), *map(str, HW)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def __enter__(self) -> _Filler:
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "filling"
        time.sleep(0.5)  # every filler has sent its first request
        return self

    def __exit__(self, *exc) -> None:
        self.proc.communicate(timeout=60)


@pytest.mark.timeout(120)
def test_a_burst_of_ten_times_the_queue_is_refused_fast_and_drains(server, reliability):
    async def burst():
        client = aioclient.InferenceServerClient(server.grpc_url)
        try:
            await _raw(client, _images(1))  # connected and warm
            return await asyncio.gather(*(_raw(client, _images(1)) for _ in range(BURST)))
        finally:
            await client.close()

    with RssSampler(server, period_s=0.05) as rss:
        time.sleep(0.2)
        baseline = rss.peak_total()
        # the instance kept busy, so the burst meets a queue however fast this host runs the network:
        # alone, a loaded host's client sent no faster than one instance drained (0 of 160 refused)
        with _Filler(server.grpc_url, n=QUEUE // 2):
            t0 = time.monotonic()
            results = asyncio.run(burst())
        pending, drained = wait_pending_zero(server.metrics_url)
        seconds = time.monotonic() - t0
    refused = [s for e, s in results if e]
    errors = {e.split("]")[0] + "] " + e.split("] ")[-1][:30] for e, _ in results if e}
    assert refused and len(refused) < BURST, len(refused)
    assert all("UNAVAILABLE" in e and "Exceeds maximum queue size" in e for e, _ in results if e), errors
    assert not any(pending.values()), pending
    growth = rss.peak_total() - baseline
    assert growth < RSS_BOUND
    reliability(
        "overload",
        "burst of 10x the queue",
        f"{BURST} requests at once to the network (queue {QUEUE}, 1 instance, {QUEUE // 2} clients of "
        "8 frames keeping it busy), no retries",
        f"{BURST - len(refused)} served, {len(refused)} UNAVAILABLE 'Exceeds maximum queue size' "
        f"(median {1000 * statistics.median(refused):.0f} ms); pending 0 after {drained:.2f} s; "
        f"peak RSS +{growth / MB:.0f} MB (bound {RSS_BOUND // MB} MB)",
        seconds,
        server_state(server, "tiny"),
    )


@pytest.mark.timeout(120)
def test_with_the_retry_policy_every_request_of_the_burst_completes(server, reliability):
    options = ClientOptions(
        url=server.grpc_url, model="tiny", raw=True, retry=RetryPolicy(10, 0.05, 1.0), timeout_s=30
    )
    image = frame(0, HW)

    async def burst():
        async with AsyncPerceptionClient(options=options) as client:
            first = await client.infer(frame=image)
            return first, await asyncio.gather(*(client.infer(frame=image) for _ in range(BURST)))

    t0 = time.monotonic()
    first, results = asyncio.run(burst())
    seconds = time.monotonic() - t0
    assert len(results) == BURST
    assert all(r.to_dict() == first.to_dict() for r in results)  # each one answered, and right
    pending, _ = wait_pending_zero(server.metrics_url)
    assert not any(pending.values())
    reliability(
        "overload",
        "burst of 10x the queue, client retry policy",
        f"{BURST} requests at once through AsyncPerceptionClient (retry UNAVAILABLE, 10 attempts)",
        f"all {BURST} completed with the same result as a lone request; pending 0",
        seconds,
        server_state(server, "tiny"),
    )


@pytest.mark.timeout(120)
def test_the_queue_timeout_and_the_client_deadline_behind_a_full_queue(server, reliability):
    """Triton 2.51 rejects a request whose queue timeout passed only when its batcher reaches it
    (measured: 0.5-4 s for a 50 ms timeout behind 12 executions); what bounds the caller's wait is
    the client's deadline, honoured within a few ms here (53 ms for a 50 ms deadline); the bound
    leaves DEADLINE_SLACK_S for thread wake-ups on a loaded shared host."""
    timeout_us = QUEUE_TIMEOUT_MS * 1000
    deadline_s = QUEUE_TIMEOUT_MS / 1000
    prober = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        with _Filler(server.grpc_url):
            queued = [_sync_raw(prober, timeout=timeout_us, client_timeout=30) for _ in range(2)]
        with _Filler(server.grpc_url):
            deadlined = [_sync_raw(prober, client_timeout=deadline_s) for _ in range(3)]
    finally:
        prober.close()
    assert all(not e or "timeout expired" in e.lower() for e, _ in queued), queued
    # served in time or cut at the deadline; at least one waited (the queue was full)
    assert all(not e or "DEADLINE_EXCEEDED" in e for e, _ in deadlined), deadlined
    assert any(e for e, _ in deadlined), deadlined
    slowest = max(s for _, s in deadlined)
    assert slowest <= deadline_s + DEADLINE_SLACK_S
    triton = [s for e, s in queued if e]
    reliability(
        "overload",
        "queue timeout behind a full queue",
        f"requests with a {QUEUE_TIMEOUT_MS} ms queue timeout, then with a {QUEUE_TIMEOUT_MS} ms client "
        "deadline, behind 12 executions of 8 frames",
        f"queue timeout: 'Request timeout expired' after {', '.join(f'{s:.2f}' for s in triton) or '-'} s "
        f"(Triton rejects when its batcher reaches the request); client deadline: "
        f"{sum(1 for e, _ in deadlined if e)}/{len(deadlined)} DEADLINE_EXCEEDED, every call back within "
        f"{1000 * slowest:.0f} ms (bound {QUEUE_TIMEOUT_MS} + {1000 * DEADLINE_SLACK_S:.0f} ms)",
        slowest,
        server_state(server, "tiny"),
    )


def _sync_raw(client, **kwargs) -> tuple[str, float]:
    images = _images(1)
    tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    t0 = time.perf_counter()
    try:
        client.infer("tiny", [tensor], **kwargs)
        return "", time.perf_counter() - t0
    except Exception as exc:
        return str(exc), time.perf_counter() - t0


@pytest.mark.timeout(120)
def test_the_ensemble_answers_before_its_deadline_when_the_network_queue_is_full(server, reliability):
    deadline_s = 15.0  # a hang runs into it; a slow answer on this shared host does not
    options = ClientOptions(url=server.grpc_url, retry=RetryPolicy(1), timeout_s=deadline_s)
    image = frame(1, HW)

    async def run():
        async with AsyncPerceptionClient(options=options) as client:

            async def one():
                t0 = time.perf_counter()
                try:
                    await client.infer(frame=image)
                    return "", time.perf_counter() - t0
                except Exception as exc:
                    return f"{type(exc).__name__}: {exc}", time.perf_counter() - t0

            await one()
            with _Filler(server.grpc_url):
                return await asyncio.gather(*(one() for _ in range(4 * QUEUE)))

    t0 = time.monotonic()
    results = asyncio.run(run())
    pending, drained = wait_pending_zero(server.metrics_url)
    seconds = time.monotonic() - t0
    errors = [e for e, _ in results if e]
    assert not any("DEADLINE_EXCEEDED" in e for e in errors), errors[:3]
    assert all("UNAVAILABLE" in e for e in errors), errors[:3]
    assert max(s for _, s in results) < deadline_s
    assert not any(pending.values()), pending  # nothing stuck in any step, nor in the ensemble
    reliability(
        "overload",
        "ensemble behind a full network queue",
        f"{4 * QUEUE} ensemble requests (deadline {deadline_s:.0f} s) while the network's queue is full",
        f"{len(results) - len(errors)} served, {len(errors)} UNAVAILABLE from the step, none hung "
        f"(slowest {max(s for _, s in results):.2f} s); every model's pending count 0 after {drained:.2f} s",
        seconds,
        server_state(server),
    )


def test_overload_repository_has_the_stated_queue(server):
    config = (Path(server.options.repository) / "tiny" / "config.pbtxt").read_text()
    assert f"max_queue_size: {QUEUE}" in config
