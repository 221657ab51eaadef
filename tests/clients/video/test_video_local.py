"""`percept video --backend local` on generated videos with a tiny generated ONNX model (no server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.local import LocalModel
from clients.video import EXIT_FAILED, EXIT_FRAME_ERRORS, EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records
from tests.clients.conftest import write_video

PERCEPT = str(Path(sys.executable).parent / "percept")


def _options(out: Path, onnx: Path, **kw) -> VideoOptions:
    return VideoOptions(out_dir=out, backend="local", onnx=onnx, progress=False, **kw)


def test_every_frame_once_in_order_and_equal_to_direct_inference(tmp_path, tiny_onnx):
    video = write_video(tmp_path / "drive.mp4", 24)
    report = run_video([str(video)], _options(tmp_path / "out", tiny_onnx, save_dense=True))
    assert report.exit_code == EXIT_OK
    out = tmp_path / "out" / "drive"
    records = read_records(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(24))
    # the same frames through the model directly give the same records
    model = LocalModel(tiny_onnx)
    cap = cv2.VideoCapture(str(video))
    for i in range(24):
        ok, bgr = cap.read()
        assert ok
        direct = model.infer(frame=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert records[i]["detections"] == direct.to_dict()["detections"]
        assert records[i]["timestamp"] == pytest.approx(i / 10.0)
        dense = np.load(out / "dense" / f"{i:06d}.npz")
        np.testing.assert_array_equal(dense["seg"], direct.seg)
        np.testing.assert_array_equal(dense["depth"], direct.depth)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["frames"] == 24 and summary["errors"] == 0
    assert summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0
    # the annotated video: one frame per input frame, frame | depth panel side by side
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 96)
    assert not list(out.glob("*.partial")) and not (out / "annotated.segments").exists()


def test_corrupt_and_missing_inputs_fail_while_the_others_complete(tmp_path, tiny_onnx):
    good = write_video(tmp_path / "good.mp4", 12)
    write_video(tmp_path / "other.mp4", 8)
    (tmp_path / "truncated.mp4").write_bytes(good.read_bytes()[:2000])
    (tmp_path / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    inputs = [str(tmp_path / "*.mp4"), str(tmp_path / "missing.mp4")]
    report = run_video(inputs, _options(tmp_path / "out", tiny_onnx, write_video=False))
    status = {r.source.name: (r.status, r.frames) for r in report.results}
    assert status == {
        "good": ("complete", 12),
        "other": ("complete", 8),
        "random": ("failed", 0),
        "truncated": ("failed", 0),
        "missing": ("failed", 0),
    }
    assert report.exit_code == EXIT_FAILED
    failed = json.loads((tmp_path / "out" / "truncated" / "summary.json").read_text())
    assert "truncated.mp4" in failed["message"] and "cannot open" in failed["message"]


def test_undecodable_kitti_frame_is_recorded_and_skipped(tmp_path, tiny_fusion_onnx):
    from clients.video.sources import FrameItem
    from world.kitti import write_kitti_sequence

    rng = np.random.default_rng(1)
    proj = np.array([[80, 0, 80, 0], [0, 80, 48, 0], [0, 0, 1, 0]], np.float32)
    frames = [
        FrameItem(
            i,
            i * 0.1,
            rng.integers(0, 255, (96, 160, 3), dtype=np.uint8),
            (rng.normal(0, 4, (300, 4)) + [0, 0, 12, 0]).astype(np.float32),
            proj,
        )
        for i in range(6)
    ]
    seq = tmp_path / "seq"
    write_kitti_sequence(seq, frames)
    (seq / "image_2" / "000003.png").write_bytes(b"\x89PNG broken")
    report = run_video([str(seq)], _options(tmp_path / "out", None, fusion_onnx=tiny_fusion_onnx))
    records = read_records(tmp_path / "out" / "seq" / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    assert "error" in records[3] and "000003.png" in records[3]["error"]
    assert all("detections" in r for i, r in enumerate(records) if i != 3)
    assert report.results[0].errors == 1 and report.exit_code == EXIT_FRAME_ERRORS
    assert report.results[0].status == "complete" and "1 of 6 frames failed" in report.results[0].message
    # the fusion input matters: frame 0 with its points differs from the camera-only depth
    model = LocalModel(tiny_fusion_onnx)
    direct = model.infer(frame=frames[0].image, points=frames[0].points, projection=proj)
    assert records[0]["depth_m"] == direct.to_dict()["depth_m"]


def _run_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [PERCEPT, "video", *args, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path, tiny_onnx):
    video = write_video(tmp_path / "long.mp4", 400)
    common = [str(video), "--backend", "local", "--onnx", str(tiny_onnx), "--segment-frames", "40"]
    full = _run_cli([*common, "--out", str(tmp_path / "full")])
    assert full.wait(timeout=180) == 0, full.stderr.read() if full.stderr else ""

    out = tmp_path / "killed"
    proc = _run_cli([*common, "--out", str(out)])
    partial = out / "long" / "results.jsonl.partial"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if partial.exists() and partial.read_bytes().count(b"\n") >= 100:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = partial.read_bytes().count(b"\n")
    assert 100 <= written < 400, "the client should have been killed midway"
    with open(partial, "ab") as fh:  # and make sure the repair path runs: a torn line at the end
        fh.write(b'{"frame": ')
    resumed = _run_cli([*common, "--out", str(out), "--resume"])
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read() if resumed.stderr else ""

    a = read_records(tmp_path / "full" / "long" / "results.jsonl")
    b = read_records(out / "long" / "results.jsonl")
    assert [r["frame"] for r in b] == list(range(400))
    assert a == b
    summary = json.loads((out / "long" / "summary.json").read_text())
    assert 0 < summary["resumed_from"] <= written
    cap = cv2.VideoCapture(str(out / "long" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 400
    # resuming a complete run does nothing and succeeds
    again = _run_cli([*common, "--out", str(out), "--resume"])
    assert again.wait(timeout=120) == 0
    assert read_records(out / "long" / "results.jsonl") == b


def test_undecodable_video_frames_are_recorded_and_skipped(tmp_path, tiny_onnx):
    video = write_video(tmp_path / "garbled.mp4", 30)
    data = bytearray(video.read_bytes())
    rng = np.random.default_rng(0)
    for i in rng.integers(len(data) // 4, 3 * len(data) // 4, 400):  # damage the media data only
        data[i] = int(rng.integers(0, 256))
    video.write_bytes(bytes(data))
    report = run_video([str(video)], _options(tmp_path / "out", tiny_onnx))
    records = read_records(tmp_path / "out" / "garbled" / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(30))
    bad = [r["frame"] for r in records if "error" in r]
    assert bad and all(records[i]["error"] == "undecodable frame" for i in bad)
    assert len(bad) < 30 and report.results[0].errors == len(bad)
    assert report.results[0].status == "complete" and report.exit_code == EXIT_FRAME_ERRORS
    summary = json.loads((tmp_path / "out" / "garbled" / "summary.json").read_text())
    assert summary["first_error"] == {"frame": bad[0], "error": "undecodable frame"}
    cap = cv2.VideoCapture(str(tmp_path / "out" / "garbled" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 - len(bad)  # no picture for those frames
