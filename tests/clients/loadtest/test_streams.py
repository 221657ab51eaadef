"""Streams mode, the capacity search and the HDR histograms: pure parts first, then against the
tiny models' real tritonserver (tests/clients/conftest.py), at 384x640 raw frames."""

from __future__ import annotations

import math
import os
import pickle
import signal
import threading

import numpy as np
import pytest

from clients.loadtest.capacity import largest_held
from clients.loadtest.histogram import LatencyHistogram
from clients.loadtest.options import LoadTestOptions
from clients.loadtest.streams import first_send_times
from serving.errors import SpecError
from serving.spec import ENSEMBLE_CAMERA


# --- histogram -----------------------------------------------------------------------------------
def test_histogram_percentiles_are_within_a_tenth_of_a_percent_and_merge_across_pickles():
    rng = np.random.default_rng(0)
    seconds = rng.lognormal(-4, 1, 20_000)  # ~18 ms median, a long tail
    whole = LatencyHistogram()
    parts = [LatencyHistogram() for _ in range(3)]
    for i, value in enumerate(seconds.tolist()):
        whole.record(value)
        parts[i % 3].record(value)
    # each part crosses a process pipe as bytes, then the parent adds them up
    merged = LatencyHistogram()
    for part in parts:
        merged.merge(pickle.loads(pickle.dumps(part)))
    assert merged.tail() == whole.tail()
    tail = whole.tail()
    exact = np.percentile(seconds * 1e3, [50, 99, 99.9, 99.99])
    got = [tail.p50, tail.p99, tail.p99_9, tail.p99_99]
    assert got == pytest.approx(exact.tolist(), rel=2e-3)
    assert tail.count == 20_000 and tail.avg == pytest.approx(seconds.mean() * 1e3, rel=1e-4)
    assert tail.max == pytest.approx(seconds.max() * 1e3, rel=1e-3)
    assert math.isnan(LatencyHistogram().tail().p99)


# --- capacity search -----------------------------------------------------------------------------
def test_capacity_search_finds_every_capacity_in_logarithmic_steps():
    limit = 64
    bound = 2 * math.ceil(math.log2(limit)) + 1
    for capacity in range(limit + 1):
        tried: list[int] = []

        def holds(n: int, capacity=capacity, tried=tried) -> bool:
            tried.append(n)
            return n <= capacity

        search = largest_held(holds, start=1, limit=limit)
        assert search.best == capacity
        assert len(tried) == len(set(tried)) <= bound  # never the same load twice
        assert search.at_limit == (capacity == limit)
    # capacity 10: doubling 1, 2, 4, 8, 16 (missed), then bisection 12, 10, 11
    search = largest_held(lambda n: n <= 10, start=1, limit=64)
    assert [p.value for p in search.probes] == [1, 2, 4, 8, 16, 12, 10, 11]
    assert search.first_missed == 11
    with pytest.raises(SpecError, match="start"):
        largest_held(lambda n: True, start=0)


# --- options and schedule ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"streams": (0,)}, "streams"),
        ({"streams": (2,), "rate": 5.0}, "not both"),
        ({"streams": (2,), "models": ("a", "b")}, "one model"),
        ({"streams": (2,), "fps": 0.0}, "fps"),
        ({"streams": (2,), "deadline_ms": -1.0}, "deadline"),
    ],
)
def test_impossible_streams_options_are_refused(kwargs, message):
    base = {"url": "127.0.0.1:8001", "models": ("cam_n",)}
    with pytest.raises(SpecError, match=message):
        LoadTestOptions(**{**base, **kwargs})


def test_streams_default_deadline_is_one_frame_period_and_phases_spread_over_it():
    options = LoadTestOptions(url="127.0.0.1:8001", models=("cam_n",), streams=(1, 4), fps=10.0)
    assert options.mode == "streams" and options.steps == (1, 4)
    assert options.deadline_s == pytest.approx(0.1)
    firsts = first_send_times((0, 2), total=4, fps=10.0, start=5.0)
    assert firsts == pytest.approx({0: 5.0, 2: 5.05})  # stream 2 of 4: half a period later


# --- against the tiny models' server -------------------------------------------------------------
@pytest.fixture(scope="module")
def frames_384x640():
    from clients.loadtest.frames import world_frames

    return world_frames(3, seed=5, hw=(384, 640))


def _options(url: str, **kwargs) -> LoadTestOptions:
    base = dict(warmup_s=0.5, window_s=2.0, max_windows=2, stable_windows=2, tolerance=0.5, workers=2)
    return LoadTestOptions(url=url, models=(ENSEMBLE_CAMERA,), **{**base, **kwargs})


def _step(options: LoadTestOptions, frames, during=None):
    from clients.loadtest import LoadTest

    with LoadTest(options, frames, "world 384x640") as test:
        if during is not None:
            during()
        return test.run().steps[0]


@pytest.mark.triton
def test_streams_step_counts_every_frame_and_agrees_with_the_server(tiny_server, frames_384x640):
    step = _step(_options(tiny_server.grpc_url, streams=(4,), fps=10.0), frames_384x640)
    s = step.streams
    assert s is not None and step.mode == "streams" and step.target_rate == 40.0
    assert s.errors == 0 and s.dropped == 0 and step.error_count == 0
    assert s.answered == sum(p.answered for p in s.per_stream)
    # sent and answered are counted when each happens: they differ by the frames in flight at the
    # span's edges
    assert abs(s.sent - s.answered) <= 4
    # open loop at 4 x 10 fps: what was sent over the measured span is what the schedule asked for
    assert s.sent == pytest.approx(40.0 * step.duration_s, rel=0.1)
    assert [p.stream for p in s.per_stream] == [0, 1, 2, 3]
    assert all(p.sent == pytest.approx(s.sent / 4, abs=3) for p in s.per_stream)
    assert s.latency.p50 <= s.latency.p99 <= s.latency.p99_99 <= s.latency.max
    assert s.late == sum(p.late for p in s.per_stream)
    # the harness's answered count and Triton's own success counters: over the measured windows
    # (within 2 %: a request answered at a window's edge), and over the whole step, exactly
    server = step.server[ENSEMBLE_CAMERA].requests
    assert step.successes == pytest.approx(server, rel=0.02, abs=1)
    assert step.client_successes_total == step.server_successes_total[ENSEMBLE_CAMERA]
    assert step.harness_cpu_ms_per_request > 0


@pytest.mark.triton
def test_a_server_stall_shows_in_p99_from_the_schedule_and_hides_from_a_closed_loop(
    tiny_server, frames_384x640
):
    """SIGSTOP the server for 1 s inside the measured window (warm-up 0.5 s, one 5 s window); ~15 s."""

    def stall_soon():
        def stall():
            os.kill(tiny_server.pid, signal.SIGSTOP)
            try:
                threading.Event().wait(1.0)
            finally:
                os.kill(tiny_server.pid, signal.SIGCONT)

        timer = threading.Timer(1.5, stall)
        timer.daemon = True
        timer.start()
        stalls.append(timer)

    stalls: list[threading.Timer] = []
    common = dict(window_s=5.0, max_windows=1, stable_windows=1, min_window_requests=0)
    streams = _step(
        _options(tiny_server.grpc_url, streams=(2,), fps=10.0, **common), frames_384x640, stall_soon
    )
    closed = _step(_options(tiny_server.grpc_url, concurrency=(1,), **common), frames_384x640, stall_soon)
    for timer in stalls:
        timer.join()
    s = streams.streams
    assert s is not None and s.errors == 0
    # every frame due during the stall waited for it: ~20 frames of 100, up to ~1 s from schedule
    assert s.latency.p99 >= 600.0
    assert s.late >= 10
    assert s.latency.max >= 800.0
    # a closed loop had one request in flight when the server stopped: one slow sample among
    # hundreds (more than 100 make it the top 1 %), and its p99 (from the actual send) does not see
    # the stall
    assert closed.latency.max >= 800.0
    assert closed.successes > 150
    assert closed.latency.p99 < 500.0


def _cli(*args: str):
    import subprocess
    import sys

    entry = "from percept.cli import main; main()"
    return subprocess.run([sys.executable, "-c", entry, "loadtest", *args], capture_output=True, text=True)


@pytest.mark.triton
def test_cli_finds_capacity_and_writes_the_curve(tiny_server, tmp_path):
    import csv
    import json

    common = ["--url", tiny_server.grpc_url, "--model", ENSEMBLE_CAMERA, "--frames", "2", "--workers", "1"]
    common += ["--warmup", "0.2", "--window", "0.8", "--max-windows", "1", "--stable-windows", "1"]
    common += ["--min-window-requests", "0", "--fps", "5"]
    found = _cli(
        *common, "--find-capacity", "--slo-p99-ms", "600000", "--max-streams", "3", "--out", str(tmp_path)
    )
    assert found.returncode == 0, found.stderr
    assert "capacity: 3 streams at 5 fps hold p99 <= 600000 ms (the --max-streams limit" in found.stdout
    rows = list(csv.DictReader((tmp_path / "loadtest.csv").open()))
    assert [int(r["concurrency"]) for r in rows] == [1, 2, 3]  # doubling 1, 2, then the limit 3
    assert all(r["mode"] == "streams" and int(r["frames_answered"]) > 0 for r in rows)
    assert [float(r["target_rate"]) for r in rows] == [5.0, 10.0, 15.0]
    doc = json.loads((tmp_path / "loadtest.json").read_text())
    assert doc["capacity"]["best"] == 3 and doc["capacity"]["at_limit"] is True
    assert [p["value"] for p in doc["capacity"]["probes"]] == [1, 2, 3]
    assert len(doc["steps"][0]["streams"]["per_stream"]) == 1
    assert (tmp_path / "loadtest.png").read_bytes()[:4] == b"\x89PNG"

    missed = _cli(*common, "--find-capacity", "--slo-p99-ms", "0.001", "--out", str(tmp_path / "miss"))
    assert missed.returncode == 3, missed.stderr
    assert "not even 1 stream" in missed.stderr
    refused = _cli(*common, "--find-capacity", "--out", str(tmp_path / "x"))
    assert refused.returncode == 1 and "--slo-p99-ms" in refused.stderr and "Traceback" not in refused.stderr
