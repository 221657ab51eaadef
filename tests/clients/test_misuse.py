"""A request that cannot work is refused before its first frame, in one line naming the fix; a
model that is not served is reported with what the server does serve (the real tritonserver of
``tiny_server``: pipelines perception, perception_fusion, seg360_pipeline, detseg_pipeline)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from clients.aio import AsyncPerceptionClient
from clients.client import PerceptionClient
from clients.options import ClientOptions
from clients.served import MisuseError, ModelNotServedError
from clients.video import EXIT_FAILED, VideoOptions, run_video
from clients.video.journal import read_records
from tests.clients.conftest import write_video

pytestmark = pytest.mark.triton

PERCEPT = str(Path(sys.executable).parent / "percept")
PIPELINES = "perception, perception_fusion, seg360_pipeline, detseg_pipeline"


def _percept(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PERCEPT, *args], capture_output=True, text=True, timeout=120)


def _error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # one line, nothing else (no traceback, no warnings)
    return lines[0]


def test_raw_network_without_raw_is_refused_before_the_first_frame(tiny_server, tmp_path):
    video = write_video(tmp_path / "v.mp4", 5)
    out = tmp_path / "out"
    proc = _percept("video", str(video), "--out", str(out), "--url", tiny_server.grpc_url, "--model", "tiny")
    assert proc.returncode == 1
    line = _error_line(proc)
    assert line.startswith("error: model 'tiny' is a raw network") and "pass --raw" in line, line
    assert "or name its pipeline 'perception'" in line, line
    assert not out.exists()  # nothing was sent, nothing written


@pytest.mark.parametrize(
    ("model", "raw", "fix"),
    [
        ("perception", True, "is a pipeline, not a raw network: drop --raw"),
        ("perception_fusion", False, "fuses LiDAR"),
    ],
)
def test_pipeline_with_raw_or_a_fusion_pipeline_for_a_video_is_refused(
    tiny_server, tmp_path, model, raw, fix
):
    video = write_video(tmp_path / "v.mp4", 3)
    client = ClientOptions(url=tiny_server.grpc_url, model=model, raw=raw)
    options = VideoOptions(out_dir=tmp_path / "out", client=client, progress=False)
    with pytest.raises(MisuseError, match=fix):
        run_video([str(video)], options)


def test_unknown_model_lists_the_served_pipelines_in_every_client(tiny_server):
    url = tiny_server.grpc_url
    with PerceptionClient(url, model="twinlite_pipe") as client, pytest.raises(ModelNotServedError) as sync:
        client.model_info()

    async def aio() -> str:
        async with AsyncPerceptionClient(url, model="twinlite_pipe") as client:
            with pytest.raises(ModelNotServedError) as raised:
                await client.model_info()
        return str(raised.value)

    for message in (str(sync.value), asyncio.run(aio())):
        assert message == (
            f"model 'twinlite_pipe' is not served by {url}: it serves the pipelines {_sorted(PIPELINES)}; "
            "raw networks (with --raw): detseg, seg360, tiny, tiny_fusion"
        )
    proc = _percept("loadtest", "--url", url, "--model", "twinlite_pipe", "--frames", "1")
    assert proc.returncode == 1
    assert _error_line(proc) == f"error: {message}"


def _sorted(names: str) -> str:
    return ", ".join(sorted(names.split(", ")))


def test_a_run_whose_every_frame_failed_is_failed_with_its_first_error(tiny_server, tmp_path):
    video = write_video(tmp_path / "v.mp4", 4)
    # every frame is larger than the client's request limit: each is refused, none is sent
    client = ClientOptions(url=tiny_server.grpc_url, max_request_bytes=1000)
    options = VideoOptions(out_dir=tmp_path / "out", client=client, progress=False)
    report = run_video([str(video)], options)
    result = report.results[0]
    assert result.status == "failed" and report.exit_code == EXIT_FAILED
    records = read_records(tmp_path / "out" / "v" / "results.jsonl")
    assert [r["frame"] for r in records] == [0, 1, 2, 3] and all(
        "exceeds the client limit" in r["error"] for r in records
    )
    summary = json.loads((tmp_path / "out" / "v" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["first_error"] == {
        "frame": 0,
        "error": records[0]["error"],
    }
    assert summary["message"] == f"every frame failed (4); the first, frame 0: {records[0]['error']}"
