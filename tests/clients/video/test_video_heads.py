"""`percept video --model NAME` follows the served model's heads: a detection + segmentation model
(no depth head) gives frames without a depth panel and a JSONL without depth fields."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from clients.results import PerceptionResult
from clients.video.journal import read_records
from clients.video.render import annotate
from serving.letterbox import Letterbox
from tests.clients.conftest import write_video

PERCEPT = str(Path(sys.executable).parent / "percept")


@pytest.mark.triton
def test_video_of_a_model_without_depth_has_no_depth_panel_or_fields(tmp_path, tiny_server):
    video = write_video(tmp_path / "drive.mp4", 6)  # 96x160
    out = tmp_path / "out"
    args = ["video", str(video), "--out", str(out), "--url", tiny_server.grpc_url, "--no-progress"]
    done = subprocess.run([PERCEPT, *args, "--model", "detseg_pipeline"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    records = read_records(out / "drive" / "results.jsonl")
    assert [r["frame"] for r in records] == list(range(6))
    for r in records:
        assert "depth_m" not in r and "seg_fraction" in r and "detections" in r
    cap = cv2.VideoCapture(str(out / "drive" / "annotated.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == (96, 160)  # the frame alone: the source's width, not twice it


def test_annotate_draws_only_the_heads_present():
    frame = np.full((90, 160, 3), 128, np.uint8)
    seg = np.ones((90, 160), np.uint8)
    result = PerceptionResult(None, seg, None, Letterbox.fit((90, 160), (96, 160)), ("bg", "road"))
    out = annotate(frame, result, depth_head=False)
    assert out.shape == (90, 160, 3) and (out[60, 100] != 128).any()  # the overlay, no panel
    assert annotate(frame, None, error="bad frame", depth_head=False).shape == (90, 160, 3)
    assert "detections" not in result.to_dict()
