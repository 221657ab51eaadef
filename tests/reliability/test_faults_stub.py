"""Faults: a python-backend stub killed under load (real tritonserver, tiny models, ~25 s).

Triton 2.51 alone leaves the model ready at half its capacity while the dead instance fails a batch
a second; serving.supervisor notices the dead stub and restarts the server on the same ports, and
the clients' retry policy carries the requests across the restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from clients.options import ClientOptions, RetryPolicy
from serving.launcher import ServerOptions, TritonServer
from serving.stubs import shm_regions, stubs
from serving.supervisor import Supervisor, SupervisorOptions
from tests.reliability.pressure import Load, server_state, tiny_repository

pytestmark = pytest.mark.triton

CLIENTS = 4
RECOVERY_BOUND_S = 30.0  # stated: all instances back within this after the stub died (tiny models)


def _kill_stub(server: TritonServer, instance: str) -> float:
    assert server.pid is not None
    victim = next(s for s in stubs(server.pid) if s.instance == instance and s.alive)
    os.kill(victim.pid, signal.SIGKILL)
    return time.monotonic()


def _probe(server: TritonServer) -> subprocess.CompletedProcess:
    """``python -m serving.stubs PID``, the liveness probe (given the pid: other servers run here)."""
    args = [sys.executable, "-m", "serving.stubs", str(server.pid)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _recovered(supervisor: Supervisor) -> list:
    return [r for r in supervisor.restarts if r.ready_after_s != float("inf")]


def _wait_restarts(supervisor: Supervisor, n: int, timeout_s: float) -> None:
    """Until ``n`` restarts succeeded (one may fail: the wheel's tritonserver sometimes aborts at
    start-up after "Failed to initialize NVML"; the supervisor then tries again at its next poll)."""
    deadline = time.monotonic() + timeout_s
    while len(_recovered(supervisor)) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_recovered(supervisor)) >= n, (
        f"no successful restart within {timeout_s}s: {supervisor.restarts}"
    )


def _capacity_back(load: Load, t_kill: float, before: int) -> float:
    """Seconds from ``t_kill`` until a 1-s window served half the requests of a healthy second,
    ``before`` (noisy shared host: half, not all)."""
    deadline = t_kill + RECOVERY_BOUND_S
    while time.monotonic() < deadline:
        now = time.monotonic()
        if now - t_kill > 1.0 and load.ok_between(now - 1.0, now) >= 0.5 * before:
            return now - t_kill
        time.sleep(0.1)
    return float("inf")


@pytest.mark.timeout(240)
def test_a_killed_stub_is_restored_by_the_supervisor(tmp_path, reliability):
    repo = tiny_repository(tmp_path, frame_instances=2)  # raw frames go to the frame model
    server = TritonServer(ServerOptions(repo, stop_grace_s=5)).start()
    try:
        assert server.pid is not None
        instances = {s.instance for s in stubs(server.pid)}
        assert {"tiny_frame_0_0", "tiny_frame_0_1"} <= instances
        supervisor = Supervisor(server, SupervisorOptions(poll_s=0.25))  # knows every instance now
        options = ClientOptions(url=server.grpc_url, timeout_s=10, retry=RetryPolicy(10, 0.2, 2.0))
        load = Load(options, threads=CLIENTS).start()
        time.sleep(1.5)
        before = load.ok_between(time.monotonic() - 1.0, time.monotonic())  # healthy, both instances

        # Triton alone: the model stays ready while the dead instance fails requests
        assert _probe(server).returncode == 0
        t_kill = _kill_stub(server, "tiny_frame_0_0")
        time.sleep(3.0)
        probe = _probe(server)  # what a Kubernetes livenessProbe runs: it sees the dead stub
        assert probe.returncode == 1 and "stub" in probe.stdout and "died" in probe.stdout
        alone = [o for o in load.failures() if o.end >= t_kill]
        state = server_state(server)
        assert "perception ready" in state and alone, "expected Triton 2.51 to keep the model ready and fail"
        assert all("is not healthy" in o.error for o in alone), load.error_kinds()
        reliability(
            "faults",
            "stub kill -9, Triton alone",
            f"kill -9 of stub tiny_frame_0_0 (1 of 2 frame model instances) under {CLIENTS} clients",
            f"{len(alone)} INTERNAL 'Stub process is not healthy' in 3 s; stub not restarted",
            3.0,
            state,
        )

        # supervised: the dead stub is seen, the server restarted, the clients retry across it
        with supervisor:
            _wait_restarts(supervisor, 1, RECOVERY_BOUND_S)
            _capacity_back(load, time.monotonic(), before)  # the clients are out of their backoff
            old_regions = shm_regions(server.pid)
            t_kill = _kill_stub(server, "tiny_frame_0_1")
            _wait_restarts(supervisor, 2, RECOVERY_BOUND_S)
            restart = _recovered(supervisor)[1]
            back = _capacity_back(load, t_kill, before)
        load.stop()
        failed = [o for o in load.failures() if o.end >= t_kill]
        assert server.pid is not None
        assert {s.instance for s in stubs(server.pid) if s.alive} == instances
        assert len(failed) <= CLIENTS, load.error_kinds()  # at most the requests in flight
        assert old_regions and not any(r.exists() for r in old_regions)  # the killed server's shm files
        assert back < RECOVERY_BOUND_S
        reliability(
            "faults",
            "stub kill -9, supervised",
            f"kill -9 of stub tiny_frame_0_1 under {CLIENTS} clients (retry policy 10 attempts)",
            f"{len(failed)} failed (<= {CLIENTS} in flight); seen in {restart.detected_at - t_kill:.2f} s, "
            f"server restarted (ready in {restart.ready_after_s:.1f} s), "
            f"all {len(instances)} stubs back; half the throughput of before ({before}/s) back after",
            back,
            server_state(server),
        )
    finally:
        server.stop()
