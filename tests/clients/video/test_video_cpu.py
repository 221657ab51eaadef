"""`percept video` reports where its CPU goes: ms per frame by stage in summary.json, which add up to
the process's own CPU over the frames, and one line in the command's output. A short real run
against tritonserver (tiny models, ~6 s); no assertion on how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.options import ClientOptions
from clients.stagecpu import OTHER, STAGES, TOTAL
from clients.video import EXIT_OK, VideoOptions, run_video
from tests.clients.conftest import write_video

pytestmark = pytest.mark.triton

PERCEPT = str(Path(sys.executable).parent / "percept")


def test_cpu_per_frame_by_stage_adds_up_to_the_process_cpu(tiny_server, tmp_path):
    video = write_video(tmp_path / "v.mp4", 40, hw=(120, 200))
    options = VideoOptions(
        out_dir=tmp_path / "out", client=ClientOptions(url=tiny_server.grpc_url), progress=False
    )
    cpu0 = time.process_time()
    report = run_video([str(video)], options)
    process_ms = 1000.0 * (time.process_time() - cpu0) / 40
    assert report.exit_code == EXIT_OK
    cpu = json.loads((tmp_path / "out" / "v" / "summary.json").read_text())["cpu_ms_per_frame"]
    assert set(cpu) == {*STAGES, OTHER, TOTAL}
    assert all(v >= 0 for v in cpu.values())
    stages = sum(cpu[s] for s in STAGES)
    # the stages (each thread's own CPU) never claim more than the process spent, and with
    # ``other`` they are that process CPU (rounding of each value to 0.001 ms aside)
    assert stages <= cpu[TOTAL] + 0.01
    assert stages + cpu[OTHER] == pytest.approx(cpu[TOTAL], abs=0.01)
    # the span is the frames' (start-up and the MP4's final join outside it): within the whole call
    assert 0 < cpu[TOTAL] <= process_ms + 0.01
    for ran in ("decode", "request", "send_receive", "postprocess", "jsonl", "annotate", "encode"):
        assert cpu[ran] > 0, ran
    assert cpu["dense"] == 0  # no --save-dense


def test_the_command_prints_the_cpu_line(tiny_server, tmp_path):
    video = write_video(tmp_path / "v.mp4", 6)
    args = [PERCEPT, "video", str(video), "--out", str(tmp_path / "out"), "--url", tiny_server.grpc_url]
    proc = subprocess.run([*args, "--no-progress", "--no-video"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stderr.splitlines() if "client CPU per frame" in x)
    assert "v: client CPU per frame" in line and "decode" in line and "annotate" not in line
