"""`percept video` runs the fault tests share: the command in a process of its own, waiting for its
journal to grow, the uninterrupted reference (in-process, local backend) and the exactly-once check."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from clients.video import EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records

PERCEPT = str(Path(sys.executable).parent / "percept")


def percept_video(video: Path, out: Path, url: str, *extra: str) -> subprocess.Popen:
    args = [PERCEPT, "video", str(video), "--out", str(out), "--url", url, "--no-progress", *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``path`` (a journal) holds ``n`` lines; fails if ``proc`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            pytest.fail(
                f"client ended early ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
            )
        time.sleep(0.01)
    pytest.fail(f"{path} did not reach {n} lines")


def local_reference(video: Path, out: Path, onnx: Path) -> list[dict]:
    """The uninterrupted result, computed in-process (the served results equal it exactly)."""
    options = VideoOptions(out_dir=out, backend="local", onnx=onnx, write_video=False, progress=False)
    assert run_video([str(video)], options).exit_code == EXIT_OK
    return read_records(out / video.stem / "results.jsonl")


def check_each_frame_once(results: Path, frames: int, reference: list[dict]) -> None:
    records = read_records(results)
    assert [r["frame"] for r in records] == list(range(frames))  # none lost, none twice
    assert records == reference
