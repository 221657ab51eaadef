"""Faults: a model that fails to load (real tritonserver, tiny models plus a broken one, ~10 s).

With ``require_all_models=False`` (Triton's ``--exit-on-error=false``) the server serves the models
that loaded and, under strict readiness, reports itself not ready; a client of the broken model gets
an error at once, not a hang, and the other pipeline keeps answering.
"""

from __future__ import annotations

import time

import pytest

from clients import PerceptionClient
from clients.errors import ClientError
from clients.options import ClientOptions, RetryPolicy
from serving.launcher import ServerOptions, TritonServer, http_ok
from tests.reliability.pressure import frame, server_state, tiny_repository
from tests.serving.triton_helpers import write_broken_model

pytestmark = pytest.mark.triton


@pytest.mark.timeout(120)
def test_a_model_that_fails_to_load_leaves_the_server_not_ready_and_answers_an_error(tmp_path, reliability):
    repo = tiny_repository(tmp_path)
    write_broken_model(repo)
    server = TritonServer(ServerOptions(repo, require_all_models=False, stop_grace_s=5)).start()
    try:
        base = f"http://{server.http_url}/v2"
        assert http_ok(f"{base}/health/live") and not http_ok(f"{base}/health/ready")
        assert not http_ok(f"{base}/models/broken/ready") and http_ok(f"{base}/models/perception/ready")
        options = ClientOptions(
            url=server.grpc_url, model="broken", timeout_s=10, retry=RetryPolicy(3, 0.1, 0.5)
        )
        t0 = time.monotonic()
        with pytest.raises(ClientError) as info, PerceptionClient(options=options) as client:
            client.model_info()
        answered = time.monotonic() - t0
        with PerceptionClient(server.grpc_url) as good:
            assert good.infer(frame=frame(5)).detections is not None
        state = server_state(server)
    finally:
        server.stop()
    assert answered < 5.0  # an error, not a hang (nor a wait for the deadline)
    status = getattr(info.value, "status", "")
    assert state == "live, not ready, perception ready"
    reliability(
        "faults",
        "a model fails to load",
        "repository with the tiny pipeline and a python model whose initialize raises "
        "(require_all_models=False, strict readiness)",
        f"server live, not ready; the broken model's client got {status} in {1000 * answered:.0f} ms; "
        "perception answered",
        answered,
        state,
    )
