"""`percept video --engine ray` on a local Ray runtime (2 worker actors) against the real
tritonserver with tiny models: the same bytes as a local run, a worker killed mid-unit retried with
no frame missing or repeated, a unit that keeps failing reported, errors as one line.

One Ray runtime for the module (it takes ~15 s to start on a loaded 2-core machine); the whole
module takes ~60-80 s there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.options import ClientOptions, RetryPolicy
from clients.video import EXIT_FAILED, EXIT_FRAME_ERRORS, EXIT_INTERRUPTED, EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records
from clients.video.options import RayOptions
from clients.video.sources import VideoReader
from clients.video.units import Unit, plan
from serving.launcher import free_port
from tests.clients.conftest import write_video

PERCEPT = str(Path(sys.executable).parent / "percept")


@pytest.fixture(scope="module")
def ray_runtime():
    import ray

    from clients.video.ray_pool import start_local

    start_local(num_cpus=2)  # the engine's own start (retried: a loaded host can be slow to start)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ray_videos")
    return {"long": write_video(d / "long.mp4", 150), "short": write_video(d / "short.mp4", 23)}


def _ray(out: Path, url: str, shard: int | None = 40, **kw) -> VideoOptions:
    ray_kw = {k: kw.pop(k) for k in ("max_attempts",) if k in kw}
    return VideoOptions(
        out_dir=out,
        client=ClientOptions(url=url),
        progress=False,
        engine="ray",
        ray=RayOptions(workers=2, shard_frames=shard, **ray_kw),
        **kw,
    )


def _frames(path: Path) -> list[int]:
    return [r["frame"] for r in read_records(path)]


def _video_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, tiny_server, videos) -> Path:
    """The local engine's outputs for the same inputs against the same server."""
    out = tmp_path_factory.mktemp("local_engine")
    options = VideoOptions(out_dir=out, client=ClientOptions(url=tiny_server.grpc_url), progress=False)
    assert run_video([str(p) for p in videos.values()], options).exit_code == EXIT_OK
    return out


def test_units_plan_and_seeking_reads_the_same_frames(tmp_path):
    assert plan("a", 150, 40, None) == [
        Unit("a", 0, 40),
        Unit("a", 40, 80),
        Unit("a", 80, 120),
        Unit("a", 120, None),
    ]
    assert plan("a", 150, None, None) == plan("a", 0, 40, None) == [Unit("a", 0, None)]
    assert plan("a", 150, 40, 90) == [Unit("a", 0, 40), Unit("a", 40, 80), Unit("a", 80, None)]
    video = write_video(tmp_path / "v.mp4", 60)
    sequential = [f.image for f in VideoReader(video).frames(0)]
    for start in (1, 13, 40, 59):  # a unit's reader seeks to its first frame: the same pixels
        seeked = list(VideoReader(video).frames(start, seek=True))
        assert [f.index for f in seeked] == list(range(start, 60))
        assert all(np.array_equal(f.image, sequential[f.index]) for f in seeked)


@pytest.mark.triton
def test_ray_engine_writes_the_local_runs_bytes_and_a_rerun_skips(
    ray_runtime, tiny_server, videos, local_run, tmp_path, capsys
):
    out = tmp_path / "out"
    options = _ray(out, tiny_server.grpc_url)
    report = run_video([str(p) for p in videos.values()], replace(options, progress=True))
    assert report.exit_code == EXIT_OK
    bar = capsys.readouterr().err.split("\r")[-1]  # the run's one bar, as last drawn
    assert "173/173" in bar and "frame/s" in bar and "units 5/5 done, 0 failed" in bar
    for name, n in (("long", 150), ("short", 23)):
        assert (out / name / "results.jsonl").read_bytes() == (
            local_run / name / "results.jsonl"
        ).read_bytes()
        assert _frames(out / name / "results.jsonl") == list(range(n))
        assert _video_frames(out / name / "annotated.mp4") == n
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["frames"] == n and summary["engine"] == "ray"
        assert not (out / name / "units").exists()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["state"] == "complete" and manifest["left"] == [] and manifest["exit_code"] == EXIT_OK
    assert manifest["inputs"]["long"]["units"] == ["long:0-40", "long:40-80", "long:80-120", "long:120-end"]
    assert all(u["state"] == "committed" and u["attempts"] == 1 for u in manifest["units"].values())
    assert sum(u["frames"] for u in manifest["units"].values()) == 173
    again = run_video([str(p) for p in videos.values()], options)
    assert again.exit_code == EXIT_OK and again.frames_processed == 0
    assert {r.message for r in again.results} == {"already complete"}
    with pytest.raises(Exception, match="another command .*shard_frames"):
        run_video([str(p) for p in videos.values()], replace(options, ray=RayOptions(shard_frames=50)))


def _kill_when_running(out: Path, unit: str, lines: int, kills: int, run: threading.Thread) -> list[int]:
    """Kill the worker running ``unit`` once its attempt has written ``lines`` frames, ``kills``
    times (each attempt once), while the run goes on; returns the pids killed."""
    name, start = unit.split(":")[0], int(unit.split(":")[1].split("-")[0])
    killed: list[int] = []
    while len(killed) < kills and run.is_alive():
        partials = list(
            (out / name / "units").glob(f".{start:08d}.attempt{len(killed) + 1}/results.jsonl.partial")
        )
        if partials and partials[0].read_bytes().count(b"\n") >= lines:
            pid = json.loads((out / "run.json").read_text())["units"][unit]["worker"]["pid"]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.005)
    return killed


def _run_in_thread(inputs: list[str], options: VideoOptions):
    box: dict = {}
    thread = threading.Thread(target=lambda: box.update(report=run_video(inputs, options)), daemon=True)
    thread.start()
    return thread, box


@pytest.mark.triton
def test_worker_killed_mid_unit_is_retried_without_a_missing_or_repeated_frame(
    ray_runtime, tiny_server, videos, local_run, tmp_path
):
    out = tmp_path / "out"
    thread, box = _run_in_thread([str(videos["long"])], _ray(out, tiny_server.grpc_url, shard=75))
    killed = _kill_when_running(out, "long:75-end", 10, 1, thread)
    thread.join(timeout=240)
    assert len(killed) == 1 and box["report"].exit_code == EXIT_OK
    records = out / "long" / "results.jsonl"
    assert _frames(records) == list(range(150))
    assert records.read_bytes() == (local_run / "long" / "results.jsonl").read_bytes()
    assert _video_frames(out / "long" / "annotated.mp4") == 150
    unit = json.loads((out / "run.json").read_text())["units"]["long:75-end"]
    assert unit["state"] == "committed" and unit["attempts"] == 2
    assert f"worker pid {killed[0]}" in unit["errors"][0] and "died" in unit["errors"][0]


def test_a_unit_that_keeps_failing_is_reported_then_a_rerun_finishes_it(
    ray_runtime, videos, tiny_onnx, tmp_path
):
    out = tmp_path / "out"
    options = replace(_ray(out, "unused:1", shard=60, max_attempts=2), backend="local", onnx=tiny_onnx)
    inputs = [str(videos["long"]), str(videos["short"])]
    thread, box = _run_in_thread(inputs, options)
    killed = _kill_when_running(out, "long:60-120", 5, 2, thread)
    thread.join(timeout=240)
    report = box["report"]
    assert len(killed) == 2 and report.exit_code == EXIT_FAILED
    status = {r.source.name: r.status for r in report.results}
    assert status == {"long": "failed", "short": "complete"}
    long = next(r for r in report.results if r.source.name == "long")
    assert "unit long:60-120 failed 2 times" in long.message and "died" in long.message
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["units"]["long:60-120"]["state"] == "failed"
    assert len(manifest["units"]["long:60-120"]["errors"]) == 2 and manifest["left"] == ["long:60-120"]
    assert manifest["exit_code"] == EXIT_FAILED
    # the same command again: only the failed unit runs, then the input is joined
    again = run_video(inputs, options)
    assert again.exit_code == EXIT_OK and again.frames_processed == 60
    units = json.loads((out / "run.json").read_text())["units"]
    assert units["long:60-120"]["attempts"] == 3 and units["long:0-60"]["attempts"] == 1
    assert _frames(out / "long" / "results.jsonl") == list(range(150))
    assert _video_frames(out / "long" / "annotated.mp4") == 150


def test_unreadable_input_and_unreachable_server_each_one_line(ray_runtime, videos, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    out = tmp_path / "out"
    options = replace(
        _ray(out, dead), client=ClientOptions(url=dead, timeout_s=5, retry=RetryPolicy(2, 0.05, 0.1))
    )
    report = run_video([str(tmp_path / "missing.mp4"), str(videos["short"])], options)
    assert report.exit_code == EXIT_INTERRUPTED
    missing, short = report.results
    assert missing.status == "failed" and "missing.mp4: no such file" in missing.message
    assert short.status == "interrupted" and "\n" not in short.message
    assert (
        "worker pid" in short.message
        and dead in short.message
        and "1 units left in run.json" in short.message
    )
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["left"] == ["short:0-end"] and manifest["units"]["short:0-end"]["state"] == "pending"
    assert manifest["inputs"]["missing"]["status"] == "failed"


def test_unreachable_ray_address_is_one_line(tmp_path, videos):
    address = f"127.0.0.1:{free_port()}"
    args = [
        PERCEPT,
        "video",
        str(videos["short"]),
        "--out",
        str(tmp_path),
        "--engine",
        "ray",
        "--ray-address",
        address,
    ]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_FAILED
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: cannot reach the Ray cluster at {address}: Connection refused"]
    assert not (tmp_path / "short").exists()


def test_ray_is_imported_only_with_the_ray_engine():
    code = "import sys, clients.video, clients.video.units, percept.video; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_kitti_sequence_with_dense_arrays_cut_into_units_equals_the_local_engine(
    ray_runtime, tiny_onnx, tiny_fusion_onnx, tmp_path
):
    from clients.video.sources import FrameItem
    from world.kitti import write_kitti_sequence

    rng = np.random.default_rng(3)
    proj = np.array([[80, 0, 80, 0], [0, 80, 48, 0], [0, 0, 1, 0]], np.float32)
    points = (rng.normal(0, 4, (300, 4)) + [0, 0, 12, 0]).astype(np.float32)
    frames = [
        FrameItem(i, i * 0.1, rng.integers(0, 255, (96, 160, 3), dtype=np.uint8), points, proj)
        for i in range(9)
    ]
    seq = tmp_path / "seq"
    write_kitti_sequence(seq, frames)
    (seq / "image_2" / "000004.png").write_bytes(b"\x89PNG broken")  # a bad frame inside a unit
    common = {
        "backend": "local",
        "onnx": tiny_onnx,
        "fusion_onnx": tiny_fusion_onnx,
        "save_dense": True,
        "save_maps": True,
    }
    local = VideoOptions(out_dir=tmp_path / "local", progress=False, **common)
    assert run_video([str(seq)], local).exit_code == EXIT_FRAME_ERRORS  # the one bad frame
    ray = replace(_ray(tmp_path / "ray", "unused:1", shard=4), **common)
    report = run_video([str(seq)], ray)
    assert report.exit_code == EXIT_FRAME_ERRORS and report.results[0].errors == 1
    assert report.results[0].status == "complete"
    a, b = tmp_path / "local" / "seq", tmp_path / "ray" / "seq"
    assert (b / "results.jsonl").read_bytes() == (a / "results.jsonl").read_bytes()
    assert sorted(p.name for p in (b / "dense").iterdir()) == sorted(p.name for p in (a / "dense").iterdir())
    for path in (a / "dense").iterdir():  # the same seg and depth arrays, frame by frame
        mine, theirs = np.load(b / "dense" / path.name), np.load(path)
        assert sorted(mine.files) == sorted(theirs.files)
        assert all(np.array_equal(mine[k], theirs[k]) for k in theirs.files)
    assert _video_frames(b / "annotated.mp4") == _video_frames(a / "annotated.mp4") == 8  # no picture for #4
    maps = sorted(p.name for p in (a / "maps").iterdir())  # --save-maps: joined from the units alike
    assert len(maps) == 1 + 2 * 8 and sorted(p.name for p in (b / "maps").iterdir()) == maps
    assert all((b / "maps" / m).read_bytes() == (a / "maps" / m).read_bytes() for m in maps)


def test_image_folder_cut_into_units_equals_the_local_engine(ray_runtime, tiny_onnx, tmp_path):
    from tests.clients.video.test_video_images import IN_ORDER, NAMES, write_images

    write_images(tmp_path / "drive", NAMES)
    (tmp_path / "drive" / NAMES[4]).write_bytes(b"\x89PNG broken")  # a bad frame inside a unit
    common = {"backend": "local", "onnx": tiny_onnx, "save_frames": True, "image_fps": 4.0}
    local = VideoOptions(out_dir=tmp_path / "local", progress=False, **common)
    assert run_video([str(tmp_path / "drive")], local).exit_code == EXIT_FRAME_ERRORS
    report = run_video(
        [str(tmp_path / "drive")], replace(_ray(tmp_path / "ray", "unused:1", shard=5), **common)
    )
    assert report.exit_code == EXIT_FRAME_ERRORS and report.results[0].status == "complete"
    a, b = tmp_path / "local" / "drive", tmp_path / "ray" / "drive"
    assert (b / "results.jsonl").read_bytes() == (a / "results.jsonl").read_bytes()
    assert _frames(b / "results.jsonl") == list(range(12))
    bad = IN_ORDER.index(NAMES[4])
    pngs = sorted(p.name for p in (b / "frames").iterdir())
    assert pngs == [f"{i:06d}-{Path(n).stem}.png" for i, n in enumerate(IN_ORDER) if i != bad]
    assert _video_frames(b / "annotated.mp4") == _video_frames(a / "annotated.mp4") == 11
