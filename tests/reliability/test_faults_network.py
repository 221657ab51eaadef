"""Faults: the network between client and server (real tritonserver, a TCP proxy on loopback, ~25 s).

The proxy forwards, blackholes (stops moving bytes: the connection looks alive and nothing comes
back) or refuses (closes every connection at once). A blackhole is detected by the
call's deadline (the client sets no keepalive shorter than it), a refusal is retried with the
policy's backoff, and `percept video` stopped by a blackhole resumes without a duplicate frame.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from pathlib import Path

import pytest

from clients import PerceptionClient
from clients.errors import DeadlineExceededError, ServerUnavailableError
from clients.options import ClientOptions, RetryPolicy
from clients.video import EXIT_INTERRUPTED, EXIT_OK, VideoOptions, run_video
from serving.launcher import ServerOptions, TritonServer
from tests.clients.conftest import write_video
from tests.reliability.pressure import frame, server_state, tiny_repository
from tests.video_runs import check_each_frame_once, local_reference

pytestmark = pytest.mark.triton

DEADLINE_S = 1.0
POLICY = RetryPolicy(max_attempts=3, base_delay_s=0.2, max_delay_s=1.0)


class Proxy:
    """A TCP proxy on 127.0.0.1 to ``target``; ``mode`` is "forward", "blackhole" or "refuse"."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.mode = "forward"
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse":
            for conn in list(self._conns):
                with contextlib.suppress(OSError):
                    conn.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "refuse":
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        # a blackhole stops reading: the bytes wait in the kernel (as TCP retransmits them over a
        # path that drops packets) and flow again, intact, once it forwards again
        with contextlib.suppress(OSError):
            while self.mode != "refuse":
                readable, _, _ = select.select([src], [], [], 0.01)
                if not readable or self.mode != "forward":  # the mode as the bytes arrive
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.set("refuse")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tiny_repository(tmp_path_factory.mktemp("network"))
    server = TritonServer(ServerOptions(repo, stop_grace_s=5)).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(server):
    proxy = Proxy(("127.0.0.1", server.grpc_port))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.timeout(120)
def test_a_blackhole_is_detected_by_the_deadline_and_a_refusal_retried_with_backoff(
    server, proxy, reliability
):
    image = frame(3)
    options = ClientOptions(url=proxy.url, timeout_s=DEADLINE_S, retry=POLICY)
    with PerceptionClient(options=options) as client:
        expected = client.infer(frame=image).to_dict()
        proxy.set("blackhole")
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            client.infer(frame=image)
        detected = time.monotonic() - t0
        proxy.set("refuse")
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailableError):
            client.infer(frame=image)
        refused = time.monotonic() - t0
        proxy.set("forward")
        t0 = time.monotonic()
        again = client.infer(frame=image).to_dict()
        reconnect = time.monotonic() - t0
    assert DEADLINE_S <= detected < DEADLINE_S + 0.5
    # the policy's two waits: uniform(0.5, 1) x 0.2 and 0.4 s, plus three refused connects
    low, high = 0.5 * 0.6, 1.0 * 0.6
    assert low <= refused < high + 1.0, refused
    assert again == expected
    reliability(
        "faults",
        "network blackhole, then refusal",
        f"one request through a TCP proxy that forwards nothing (deadline {DEADLINE_S:.0f} s), then one "
        f"while it refuses connections ({POLICY.max_attempts} attempts), then forwarding again",
        f"DEADLINE_EXCEEDED after {detected:.2f} s; UNAVAILABLE after {refused:.2f} s of backoff "
        f"(policy: {low:.1f}-{high:.1f} s of waits); reconnected, same result in {1000 * reconnect:.0f} ms",
        detected + refused + reconnect,
        server_state(server),
    )


@pytest.mark.timeout(180)
def test_video_through_a_blackhole_resumes_without_a_duplicate_frame(server, proxy, tmp_path, reliability):
    frames = 120
    video = write_video(tmp_path / "drive.mp4", frames)
    onnx = Path(server.options.repository).parent / "tiny.onnx"
    reference = local_reference(video, tmp_path / "ref", onnx)
    out = tmp_path / "out"
    partial = out / "drive" / "results.jsonl.partial"

    def blackhole_after(n: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if partial.exists() and partial.read_bytes().count(b"\n") >= n:
                break
            time.sleep(0.005)
        proxy.set("blackhole")

    client = ClientOptions(url=proxy.url, timeout_s=DEADLINE_S, retry=POLICY)
    options = VideoOptions(out_dir=out, client=client, write_video=False, progress=False)
    cutter = threading.Thread(target=blackhole_after, args=(40,))
    cutter.start()
    t0 = time.monotonic()
    first = run_video([str(video)], options)
    stopped = time.monotonic() - t0
    cutter.join()
    kept = first.results[0].frames
    proxy.set("forward")
    resumed = run_video([str(video)], VideoOptions(out_dir=out, client=client, resume=True, progress=False))
    assert first.exit_code == EXIT_INTERRUPTED and "DEADLINE_EXCEEDED" in first.results[0].message
    assert resumed.exit_code == EXIT_OK
    check_each_frame_once(out / "drive" / "results.jsonl", frames, reference)
    reliability(
        "faults",
        "network blackhole during percept video, then --resume",
        f"proxy turned into a blackhole after 40 of {frames} frames (deadline {DEADLINE_S:.0f} s); "
        "forwarding again; --resume",
        f"exit 3 (DEADLINE_EXCEEDED) with {kept} frames kept; resumed: exit 0, {frames} records, "
        "each frame once, equal to a local run",
        stopped,
        server_state(server),
    )
