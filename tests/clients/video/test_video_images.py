"""A folder of images is one input of `percept video`: one sequence in natural order, one video,
resumed without a frame repeated; unreadable images are that frame's error; a KITTI sequence is
still told apart. Against the real tritonserver of ``tiny_server`` (tiny generated models)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.local import LocalModel
from clients.options import ClientOptions
from clients.video import EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records
from clients.video.sources import FrameItem, discover
from tests.clients.conftest import write_video

PERCEPT = str(Path(sys.executable).parent / "percept")
NAMES = [f"cam_{i}.png" for i in (10, 1, 11, 2, 3, 9, 4, 12, 5, 6, 8, 7)]  # natural order: 1..12
IN_ORDER = sorted(NAMES, key=lambda n: int(n[4:-4]))


def write_images(folder: Path, names: list[str], hw: tuple[int, int] = (96, 160)) -> dict[str, np.ndarray]:
    """Distinct noise images (RGB) under ``names``, written as PNG (lossless: read back the same)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    images = {}
    for name in names:
        images[name] = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / name), cv2.cvtColor(images[name], cv2.COLOR_RGB2BGR))
    return images


def test_discover_tells_image_folders_from_videos_and_kitti_sequences(tmp_path):
    from world.kitti import write_kitti_sequence

    drive = tmp_path / "drive"
    write_images(drive, ["f10.png", "f2.png", "f1.jpg"])
    write_video(drive / "clip.mp4", 3)
    image = np.zeros((96, 160, 3), np.uint8)
    points = np.zeros((10, 4), np.float32)
    projection = np.eye(3, 4, dtype=np.float32)
    write_kitti_sequence(drive / "seq", [FrameItem(0, 0.0, image, points, projection)])
    found = {s.name: s.kind for s in discover([str(drive), str(drive / "seq"), str(tmp_path / "empty")])}
    assert found == {"drive": "images", "clip": "video", "seq": "kitti", "empty": "video"}
    from clients.video.sources import ImageFolderReader

    reader = ImageFolderReader(drive, fps=5.0)
    assert [f.name for f in reader.files] == ["f1.jpg", "f2.png", "f10.png"]
    assert [round(f.timestamp, 3) for f in reader.frames(1)] == [0.2, 0.4]
    from clients.video import sources
    from percept import video

    assert video.DEFAULT_IMAGE_FPS == sources.DEFAULT_IMAGE_FPS  # --fps's default is the library's


@pytest.mark.triton
def test_image_folder_is_one_video_in_natural_order_and_resumes_exactly_once(
    tiny_server, tiny_onnx, tmp_path
):
    images = write_images(tmp_path / "drive", NAMES)
    model = LocalModel(tiny_onnx)
    expected = [model.infer(frame=images[name]).to_dict() for name in IN_ORDER]
    assert len({json.dumps(e, sort_keys=True) for e in expected}) == len(expected)  # order shows
    options = VideoOptions(
        out_dir=tmp_path / "out",
        client=ClientOptions(url=tiny_server.grpc_url),
        progress=False,
        save_frames=True,
        image_fps=5.0,
    )
    report = run_video([str(tmp_path / "drive")], options)
    assert report.exit_code == EXIT_OK and [r.source.name for r in report.results] == ["drive"]
    out = tmp_path / "out" / "drive"
    records = read_records(out / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(12))
    assert [r["timestamp"] for r in records] == [i / 5.0 for i in range(12)]
    assert [{k: v for k, v in r.items() if k not in ("frame", "timestamp")} for r in records] == expected
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and cap.get(cv2.CAP_PROP_FPS) == 5.0
    cap.release()
    pngs = sorted(p.name for p in (out / "frames").iterdir())
    assert pngs == [f"{i:06d}-{Path(name).stem}.png" for i, name in enumerate(IN_ORDER)]

    # a run killed after 7 frames: a journal with a torn 8th line, no summary; --resume finishes it
    again = replace(options, out_dir=tmp_path / "again", write_video=False)
    run_video([str(tmp_path / "drive")], again)
    kept = tmp_path / "again" / "drive"
    lines = (kept / "results.jsonl").read_bytes().splitlines(keepends=True)
    (kept / "results.jsonl.partial").write_bytes(b"".join(lines[:7]) + lines[7][:20])
    for name in ("results.jsonl", "summary.json"):
        (kept / name).unlink()
    resumed = run_video([str(tmp_path / "drive")], replace(again, resume=True)).results[0]
    assert resumed.status == "complete" and resumed.resumed_from == 7 and resumed.processed == 5
    assert (kept / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()
    assert sorted(p.name for p in (kept / "frames").iterdir()) == pngs


@pytest.mark.triton
def test_unreadable_images_are_frame_errors_and_an_empty_folder_one_line(tiny_server, tmp_path):
    write_images(tmp_path / "mixed", ["a1.png", "a3.png"])
    (tmp_path / "mixed" / "a2.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "bad").mkdir()
    for name in ("b1.jpg", "b2.jpg"):
        (tmp_path / "bad" / name).write_bytes(b"not a jpeg")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    inputs = [str(tmp_path / name) for name in ("mixed", "bad", "empty")]
    args = [PERCEPT, "video", *inputs, "--out", str(tmp_path / "out"), "--url", tiny_server.grpc_url]
    proc = subprocess.run([*args, "--no-progress"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = {line.split()[1].rstrip(":"): line for line in proc.stderr.splitlines() if line[:1] != " "}
    assert lines["mixed"].startswith("complete    mixed: 3 frames, 1 errors")
    assert "1 of 3 frames failed (results.jsonl has each); the first, frame 1: " in lines["mixed"]
    assert f"{tmp_path / 'mixed' / 'a2.png'}: cannot be decoded as an image" in lines["mixed"]
    assert lines["bad"].startswith("failed      bad: 2 frames, 2 errors")
    assert " - every frame failed (2); the first, " in lines["bad"]
    assert f"frame 0: {tmp_path / 'bad' / 'b1.jpg'}: cannot be decoded as an image" in lines["bad"]
    assert lines["empty"].startswith(
        f"failed      empty: 0 frames, 0 errors - {tmp_path / 'empty'}: no images"
    )
    cap = cv2.VideoCapture(str(tmp_path / "out" / "mixed" / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2  # no picture for the unreadable one
