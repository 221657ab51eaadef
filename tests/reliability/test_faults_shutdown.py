"""Faults: graceful shutdown (SIGTERM) with requests in flight (real tritonserver, tiny models, ~30 s).

On SIGTERM Triton stops taking requests, lets the ones in flight finish and exits; meanwhile it
answers NOT_FOUND ("has no available versions") or UNAVAILABLE. `percept video` must take that for
"the server went away" (exit 3, resumable), and the resumed run must lose and repeat nothing.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from clients.options import ClientOptions, RetryPolicy
from clients.video import EXIT_INTERRUPTED, EXIT_OK
from clients.video.journal import read_records
from serving.launcher import ServerOptions, TritonServer, free_port
from tests.clients.conftest import write_video
from tests.reliability.pressure import Load, frame, server_state, tiny_repository
from tests.video_runs import check_each_frame_once, local_reference, percept_video, wait_for_lines

pytestmark = pytest.mark.triton

# Triton still serves the frame model for a moment after SIGTERM (one scheduler, not an ensemble's:
# see the test above), longer on a loaded host: enough frames that the client cannot finish the
# video in that moment, whatever the load (160 once were all served before the stop, in a full run)
FRAMES = 480


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return tiny_repository(tmp_path_factory.mktemp("shutdown"))


@pytest.mark.timeout(120)
def test_sigterm_lets_requests_in_flight_finish_and_refuses_new_ones(repo, tmp_path, reliability):
    log = tmp_path / "tritonserver.log"
    server = TritonServer(ServerOptions(repo, stop_grace_s=15, log_file=log)).start()
    try:
        options = ClientOptions(url=server.grpc_url, timeout_s=10, retry=RetryPolicy(1))
        load = Load(options, threads=4, image=frame(0, (720, 1280)))  # ~10 ms each: some in flight
        load.start()
        time.sleep(1.0)
        t_term = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait()
        exited = time.monotonic() - t_term
        load.stop()
    finally:
        server.stop()
    # what Triton counted in flight when the signal came ("Model 'tiny_frame' ... has N in-flight"):
    # the client sends the pipeline's raw frames to its frame model
    logged = re.findall(r"'(?:perception|tiny_frame)'.*has (\d+) in-flight inferences", log.read_text())
    counted = int(logged[0]) if logged else 0  # the first count, at the signal
    # a request sent in the last 100 ms before the signal may reach the server after it (loaded host)
    before = [o for o in load.outcomes if o.start < t_term - 0.1]
    cut = [o for o in before if o.error]
    # and one sent in the 100 ms after it may still be taken before the server acts on the signal
    after = [o for o in load.outcomes if o.start > t_term + 0.1]
    assert code == 0
    # Triton 2.51 stops every scheduler at the signal: an ensemble request between two steps then
    # fails UNAVAILABLE "Server is stopping" (retryable; with a second server the retry succeeds)
    assert all("UNAVAILABLE" in o.error and "stopping" in o.error for o in cut), load.error_kinds()
    assert len(cut) <= 4  # at most the requests in flight
    assert after and all(o.error for o in after)  # refused, not served
    refusals = ("NOT_FOUND", "UNAVAILABLE", "CANCELLED")  # draining, endpoint gone, the gRPC server stopping
    assert all(any(r in o.error for r in refusals) for o in after), load.error_kinds()
    assert max(o.end - o.start for o in after) < 5.0  # answered, none hangs
    reliability(
        "faults",
        "SIGTERM with requests in flight",
        "SIGTERM to tritonserver under 4 clients (no retries)",
        f"{counted} in flight (Triton's count): {len(cut)} cut between ensemble steps with UNAVAILABLE "
        f"'Server is stopping', the rest served; {len(after)} sent after refused "
        f"({', '.join(sorted({o.error.split(':')[1].strip() for o in after}))}); exit code {code}",
        exited,
        "exited",
    )


@pytest.mark.timeout(240)
def test_video_stopped_by_a_graceful_shutdown_exits_3_and_resumes_exactly_once(repo, tmp_path, reliability):
    video = write_video(tmp_path / "drive.mp4", FRAMES)
    reference = local_reference(video, tmp_path / "reference", repo.parent / "tiny.onnx")
    port = free_port()
    url = f"127.0.0.1:{port}"
    out = tmp_path / "out"
    server = TritonServer(ServerOptions(repo, grpc_port=port, stop_grace_s=15)).start()
    try:
        proc = percept_video(video, out, url, "--no-video", "--retries", "2")
        wait_for_lines(out / "drive" / "results.jsonl.partial", 40, proc)
        t_term = time.monotonic()
        server.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        stopped = time.monotonic() - t_term
        summary = out / "drive" / "summary.json"
        assert proc.returncode == EXIT_INTERRUPTED, (  # was 1 ("failed") on NOT_FOUND
            f"exit {proc.returncode}: {err[-2000:]}\n{summary.read_text() if summary.exists() else ''}"
        )
        kept = read_records(out / "drive" / "results.jsonl.partial")
        assert "--resume" in err
        server.stop()
        server = TritonServer(ServerOptions(repo, grpc_port=port, stop_grace_s=15)).start()
        resumed = percept_video(video, out, url, "--no-video", "--resume")
        _, err = resumed.communicate(timeout=180)
        assert resumed.returncode == EXIT_OK, err
        state = server_state(server)
    finally:
        server.stop()
    check_each_frame_once(out / "drive" / "results.jsonl", FRAMES, reference)
    reliability(
        "faults",
        "SIGTERM during percept video, then --resume",
        f"SIGTERM to the server after 40 of {FRAMES} frames; server restarted; percept video --resume",
        f"exit 3 ('run again with --resume') with {len(kept)} frames kept; resumed: exit 0, "
        f"{FRAMES} records, each frame once, equal to an uninterrupted local run",
        stopped,
        state,
    )
