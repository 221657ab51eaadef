"""`percept video` against a real tritonserver (tiny generated models): crashes of the client and of
the server in the middle of a run lose no frame and repeat none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from clients.options import ClientOptions, RetryPolicy
from clients.video import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records
from serving.launcher import ServerOptions, TritonServer, free_port
from serving.model_config import frame_model_name
from tests.clients.conftest import write_video
from tests.tiny_onnx import tiny_spec
from tests.video_runs import check_each_frame_once, local_reference, percept_video, wait_for_lines

pytestmark = pytest.mark.triton

FRAMES = 500


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "drive.mp4", FRAMES)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, long_video, tiny_onnx) -> list[dict]:
    return local_reference(long_video, tmp_path_factory.mktemp("reference"), tiny_onnx)


def _cli(video: Path, out: Path, url: str, *extra: str) -> subprocess.Popen:
    return percept_video(video, out, url, "--segment-frames", "50", *extra)


def _check_final(out: Path, reference: list[dict]) -> dict:
    check_each_frame_once(out / "drive" / "results.jsonl", FRAMES, reference)
    summary = json.loads((out / "drive" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["frames"] == FRAMES and summary["errors"] == 0
    assert not (out / "drive" / "results.jsonl.partial").exists()
    import cv2

    cap = cv2.VideoCapture(str(out / "drive" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    return summary


def test_client_killed_midway_then_resumed(tiny_server, long_video, reference, tmp_path):
    out = tmp_path / "out"
    proc = _cli(long_video, out, tiny_server.grpc_url)
    wait_for_lines(out / "drive" / "results.jsonl.partial", 120, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = _cli(long_video, out, tiny_server.grpc_url, "--resume")
    _, err = resumed.communicate(timeout=180)
    assert resumed.returncode == EXIT_OK, err
    summary = _check_final(out, reference)
    assert summary["resumed_from"] > 0


def _own_server(repo: Path, grpc_port: int) -> TritonServer:
    return TritonServer(ServerOptions(repo, grpc_port=grpc_port, stop_grace_s=5))


def test_server_killed_then_resume_after_clean_stop(tiny_repository, long_video, reference, tmp_path):
    port = free_port()
    url = f"127.0.0.1:{port}"
    out = tmp_path / "out"
    server = _own_server(tiny_repository, port).start()
    try:
        proc = _cli(long_video, out, url, "--retries", "3")
        wait_for_lines(out / "drive" / "results.jsonl.partial", 120, proc)
        os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "--resume" in err
        summary = json.loads((out / "drive" / "summary.json").read_text())
        assert summary["status"] == "interrupted" and 120 <= summary["frames"] < FRAMES
        server.stop()
        server = _own_server(tiny_repository, port).start()
        resumed = _cli(long_video, out, url, "--resume")
        _, err = resumed.communicate(timeout=180)
        assert resumed.returncode == EXIT_OK, err
        _check_final(out, reference)
    finally:
        server.stop()


def test_server_restarted_while_the_client_retries(tiny_repository, long_video, reference, tmp_path):
    port = free_port()
    url = f"127.0.0.1:{port}"
    out = tmp_path / "out"
    server = _own_server(tiny_repository, port).start()
    try:
        proc = _cli(long_video, out, url, "--retries", "12")  # ~60 s of backoff: outlasts a restart
        wait_for_lines(out / "drive" / "results.jsonl.partial", 120, proc)
        os.kill(server.pid, signal.SIGKILL)  # type: ignore[arg-type]
        server.stop()
        server = _own_server(tiny_repository, port).start()
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == EXIT_OK, err
        assert "retry" in err  # it did have to wait for the server
        _check_final(out, reference)
    finally:
        server.stop()


def test_corrupt_video_among_valid_ones(tiny_server, tmp_path):
    a = write_video(tmp_path / "a.mp4", 12)
    write_video(tmp_path / "b.mp4", 9)
    (tmp_path / "c_truncated.mp4").write_bytes(a.read_bytes()[: a.stat().st_size // 2])
    options = VideoOptions(
        out_dir=tmp_path / "out",
        client=ClientOptions(url=tiny_server.grpc_url),
        progress=False,
    )
    report = run_video([str(tmp_path)], options)
    status = {r.source.name: (r.status, r.frames) for r in report.results}
    assert status == {"a": ("complete", 12), "b": ("complete", 9), "c_truncated": ("failed", 0)}
    bad = next(r for r in report.results if r.source.name == "c_truncated")
    assert "c_truncated.mp4" in bad.message and "cannot open" in bad.message
    assert report.exit_code == EXIT_FAILED
    for name, n in (("a", 12), ("b", 9)):
        assert [r["frame"] for r in read_records(tmp_path / "out" / name / "results.jsonl")] == list(range(n))
    assert np.isfinite(json.loads((tmp_path / "out" / "a" / "summary.json").read_text())["fps"])


def test_raw_mode_and_shared_memory_video_equal_the_ensemble(tiny_server, tmp_path):
    video = write_video(tmp_path / "v.mp4", 10, hw=(120, 200))
    outs = {}
    for mode, client in (
        ("ensemble", ClientOptions(url=tiny_server.grpc_url)),
        ("raw", ClientOptions(url=tiny_server.grpc_url, model="tiny", raw=True)),
        ("shm", ClientOptions(url=tiny_server.grpc_url, shared_memory=True)),
    ):
        options = VideoOptions(out_dir=tmp_path / mode, client=client, write_video=False, progress=False)
        assert run_video([str(video)], options).exit_code == EXIT_OK
        outs[mode] = read_records(tmp_path / mode / "v" / "results.jsonl")
    assert len(outs["raw"]) == 10 and outs["raw"] == outs["ensemble"] == outs["shm"]


def test_unknown_model_is_refused_naming_the_served_ones_and_a_dead_server_interrupts(tiny_server, tmp_path):
    from clients.served import ModelNotServedError

    video = write_video(tmp_path / "v.mp4", 5)
    unknown = VideoOptions(
        out_dir=tmp_path / "unknown",
        client=ClientOptions(url=tiny_server.grpc_url, model="nope"),
        progress=False,
    )
    with pytest.raises(ModelNotServedError, match="'nope' is not served by .*perception_fusion"):
        run_video([str(video)], unknown)
    assert not (tmp_path / "unknown").exists()  # refused before anything was written
    dead = VideoOptions(
        out_dir=tmp_path / "dead",
        client=ClientOptions(url=f"127.0.0.1:{free_port()}", retry=RetryPolicy(2, 0.05, 0.1)),
        progress=False,
    )
    report = run_video([str(video)], dead)
    assert report.results[0].status == "interrupted" and "--resume" in report.results[0].message
    assert report.exit_code == EXIT_INTERRUPTED


def test_model_unloaded_mid_run_interrupts_the_input(tiny_repository, long_video, tmp_path):
    """NOT_FOUND for a model that served the run's first frames means the server is unloading it
    (as Triton does on SIGTERM): the input stops resumably (exit 3), not as failed (exit 1)."""
    import threading

    import tritonclient.grpc as grpcclient

    extra = ("--model-control-mode=explicit", "--load-model=*")
    server = TritonServer(ServerOptions(tiny_repository, stop_grace_s=5, extra_args=extra)).start()
    out = tmp_path / "out"
    partial = out / "drive" / "results.jsonl.partial"

    def unload_after_some_frames() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if partial.exists() and partial.read_bytes().count(b"\n") >= 40:
                break
            time.sleep(0.01)
        # the model the run's raw frames go to (the clients send them to the pipeline's frame model)
        grpcclient.InferenceServerClient(server.grpc_url).unload_model(frame_model_name(tiny_spec()))

    unloader = threading.Thread(target=unload_after_some_frames)
    try:
        unloader.start()
        options = VideoOptions(
            out_dir=out,
            client=ClientOptions(url=server.grpc_url, retry=RetryPolicy(2, 0.05, 0.1)),
            write_video=False,
            progress=False,
        )
        report = run_video([str(long_video)], options)
        unloader.join(60)
    finally:
        server.stop()
    result = report.results[0]
    assert result.status == "interrupted" and "NOT_FOUND" in result.message and "--resume" in result.message
    assert report.exit_code == EXIT_INTERRUPTED
    assert 40 <= result.frames < FRAMES
