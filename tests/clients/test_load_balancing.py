"""Per-request load balancing over every address of one DNS name, on two real tritonservers.

A headless Kubernetes Service gives a gRPC client one DNS name with an A record per ready pod
(deploy/k8s/service-grpc.yaml). Here a DNS server on loopback (tests/clients/dns.py) answers a
name with 127.0.0.1 and 127.0.0.2, where two tritonservers listen on the same port, as the pods of
one Service do; the client gets ``dns://<that server>/<name>:<port>``, so gRPC's own DNS resolver
and load-balancing policy do the work. Each server's own statistics say where the requests went.
Like the Deployment, the servers close every connection after a maximum age (here 1 s, so that it
happens during the tests). ~25 s on an idle 2-core machine (two server starts).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from serving.model_config import frame_model_name
from serving.spec import ENSEMBLE_CAMERA
from tests.clients.dns import dns_server
from tests.serving.triton_helpers import stats
from tests.tiny_onnx import tiny_spec

pytestmark = pytest.mark.triton

FRAMES = 8
SECOND_LOOPBACK = "127.0.0.2"
NAME = "perception-serving-grpc.test"
NETWORK = frame_model_name(tiny_spec())  # the model a raw frame of the tiny pipeline goes to
MAX_CONNECTION_AGE = ("--grpc-max-connection-age=1000", "--grpc-max-connection-age-grace=5000")


@dataclass(frozen=True)
class Fleet:
    first: Any  # serving.launcher.TritonServer
    second: Any
    target: str  # the gRPC target: the DNS name, resolved by the loopback DNS server

    def __iter__(self):
        return iter((self.first, self.second))


@pytest.fixture(scope="module")
def two_servers(tiny_onnx, tmp_path_factory):
    """Two tritonservers serving the tiny camera pipeline on one port of two loopback addresses,
    and a DNS name with both addresses."""
    from serving.launcher import ServerOptions, TritonServer
    from serving.repository import build_repository

    repo = tmp_path_factory.mktemp("lb_repo")
    build_repository([tiny_onnx], repo)
    first = TritonServer(ServerOptions(repo, extra_args=MAX_CONNECTION_AGE))
    first.start()
    try:
        second = TritonServer(
            ServerOptions(
                repo,
                address=SECOND_LOOPBACK,  # every endpoint on the second address, same ports
                http_address=SECOND_LOOPBACK,
                metrics_address=SECOND_LOOPBACK,
                grpc_port=first.grpc_port,
                http_port=first.http_port,
                metrics_port=first.metrics_port,
                extra_args=MAX_CONNECTION_AGE,
            )
        )
        second.start()
        try:
            with dns_server(NAME, (first.options.address, second.options.address)) as dns_port:
                yield Fleet(first, second, f"dns://127.0.0.1:{dns_port}/{NAME}:{first.grpc_port}")
        finally:
            second.stop()
    finally:
        first.stop()


def _network_counts(servers) -> list[int]:
    return [stats(s.grpc_url, NETWORK)[0] for s in servers]


def _frame(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)


def _sync_requests(target: str, policy: str) -> None:
    from clients import PerceptionClient

    with PerceptionClient(target, load_balancing=policy) as client:
        for i in range(FRAMES):
            client.infer(frame=_frame(i))


def _deltas(servers, before) -> list[int]:
    return [after - b for after, b in zip(_network_counts(servers), before, strict=True)]


def test_round_robin_spreads_requests_of_one_client_over_every_address(two_servers):
    before = _network_counts(two_servers)
    _sync_requests(two_servers.target, "round_robin")
    deltas = _deltas(two_servers, before)
    assert sum(deltas) == FRAMES
    # both ready: strict rotation; the first request may leave before the second connection is up
    assert min(deltas) >= FRAMES // 2 - 1, deltas


def test_pick_first_pins_one_connection_to_one_server(two_servers):
    """What an L4 Service does to a gRPC client: every request on the one connection it opened."""
    before = _network_counts(two_servers)
    _sync_requests(two_servers.target, "pick_first")
    assert sorted(_deltas(two_servers, before)) == [0, FRAMES]


def test_async_client_balances_requests_in_flight(two_servers):
    from clients import AsyncPerceptionClient

    before = _network_counts(two_servers)

    async def run() -> None:
        async with AsyncPerceptionClient(two_servers.target, model=ENSEMBLE_CAMERA) as client:
            await client.infer(frame=_frame(0))  # connects; model info read once
            await asyncio.gather(*(client.infer(frame=_frame(i)) for i in range(1, FRAMES)))

    asyncio.run(run())
    deltas = _deltas(two_servers, before)
    assert sum(deltas) == FRAMES and min(deltas) >= 1, deltas


def test_unknown_policy_is_refused_before_connecting():
    from clients import ClientOptions
    from serving.errors import SpecError

    with pytest.raises(SpecError, match="load_balancing must be one of"):
        ClientOptions(load_balancing="least_request")


def test_shared_memory_keeps_one_server_and_refuses_round_robin():
    from dataclasses import replace

    from clients import ClientOptions
    from clients._core import channel_args
    from serving.errors import SpecError

    assert ClientOptions().lb_policy == "round_robin"
    assert replace(ClientOptions(), shared_memory=True).lb_policy == "pick_first"
    assert ("grpc.lb_policy_name", "round_robin") in channel_args(ClientOptions())
    with pytest.raises(SpecError, match="registered with one server"):
        ClientOptions(shared_memory=True, load_balancing="round_robin")


def test_connections_closed_at_their_maximum_age_lose_no_request(two_servers):
    """The servers close each connection after a second (GOAWAY, requests in flight finish); the
    client reconnects and keeps both servers busy, and every request succeeds."""
    from clients import PerceptionClient

    before = _network_counts(two_servers)
    sent = 0
    with PerceptionClient(two_servers.target) as client:
        end = time.monotonic() + 3.0  # three connection lifetimes
        while time.monotonic() < end:
            client.infer(frame=_frame(sent))
            sent += 1
            time.sleep(0.05)
    deltas = _deltas(two_servers, before)
    assert sum(deltas) == sent and min(deltas) >= sent // 4, deltas


def test_a_server_that_goes_away_leaves_the_requests_to_the_others(two_servers):
    """A pod removed (scale-down, crash): no request fails, the rest go to the address still up.
    Stops the second server, so it is the last test of the module."""
    from clients import PerceptionClient

    first, second = two_servers
    with PerceptionClient(two_servers.target) as client:
        client.infer(frame=_frame(0))
        second.stop()
        before = _network_counts([first])[0]
        for i in range(FRAMES):
            client.infer(frame=_frame(i))  # UNAVAILABLE from the stopped one is retried, then skipped
    assert _network_counts([first])[0] - before == FRAMES
