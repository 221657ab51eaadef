"""Reports written to a file or a pipe (a CI log, `| tee`) keep every cell whole: rich would take
80 columns there and cut numbers and names to `…` (percept.console.report_console)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PERCEPT = str(Path(sys.executable).parent / "percept")
FAST = ("--warmup", "0.2", "--window", "0.5", "--max-windows", "1", "--stable-windows", "1")
FAST += ("--workers", "1", "--frames", "1", "--min-window-requests", "1")


@pytest.mark.triton
def test_loadtest_table_piped_to_a_file_keeps_every_number_and_name(tiny_server, tmp_path):
    out = tmp_path / "lt"
    log = tmp_path / "log.txt"
    args = [
        PERCEPT,
        "loadtest",
        "--url",
        tiny_server.grpc_url,
        "--model",
        "seg360_pipeline",
        "--out",
        str(out),
    ]
    env = {**os.environ, "COLUMNS": "60"}  # a narrow terminal's setting must not cut a log either
    with open(log, "w") as fh:  # stdout is a file, as in `percept loadtest ... > log.txt`
        proc = subprocess.run(
            [*args, "--streams", "2", "--fps", "5", *FAST],
            stdout=fh,
            stderr=subprocess.PIPE,
            env=env,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr.decode()
    text = log.read_text()
    assert "…" not in text
    step = json.loads((out / "loadtest.json").read_text())["steps"][0]
    streams = step["streams"]
    row = next(
        line for line in text.splitlines() if line.startswith("│") and line.split("│")[1].strip() == "2"
    )
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:7] == [
        "2",
        f"{step['throughput']:.1f}",
        *(str(streams[k]) for k in ("sent", "answered", "late", "dropped", "errors")),
    ]
    assert cells[-1] in ("yes", "no")  # the last column, whole
    title = f"seg360_pipeline @ {tiny_server.grpc_url}: camera streams at 5 fps (1 world frames (seed 0))"
    assert title in text
    assert "\x1b[" not in text  # no colour codes in a file
