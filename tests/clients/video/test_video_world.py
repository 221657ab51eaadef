"""`percept video` on a short synthetic drive against the session's real server (cam-n, fusion-n):
every frame exactly once, and the served results equal the in-process ONNX Runtime results."""

from __future__ import annotations

import numpy as np
import pytest

from clients.options import ClientOptions
from clients.video import EXIT_OK, VideoOptions, run_video
from clients.video.journal import read_records

pytestmark = pytest.mark.triton

FRAMES = 16
HW = (192, 320)


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from world.drive import DriveOptions, record_drive

    d = tmp_path_factory.mktemp("drive")
    record_drive(
        DriveOptions(seconds=FRAMES / 10, fps=10, hw=HW, seed=3), video=d / "drive.mp4", kitti=d / "seq"
    )
    return d / "drive.mp4", d / "seq"


def _weights_shipped() -> bool:
    try:
        from exporters.weights import default_checkpoint

        return all(default_checkpoint(n).is_file() for n in ("cam-n", "fusion-n"))
    except (ImportError, LookupError, OSError, ValueError):
        return False


def _assert_same_results(served: list[dict], local: list[dict]) -> None:
    assert len(served) == len(local)
    for s, lo in zip(served, local, strict=True):
        assert s["frame"] == lo["frame"] and s["timestamp"] == lo["timestamp"]
        assert "error" not in s and "error" not in lo
        assert [d["class_id"] for d in s["detections"]] == [d["class_id"] for d in lo["detections"]]
        for a, b in zip(s["detections"], lo["detections"], strict=True):
            np.testing.assert_allclose(a["box"], b["box"], atol=0.02)  # batched vs single ORT runs
            assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        for cls, frac in s["seg_fraction"].items():
            assert frac == pytest.approx(lo["seg_fraction"][cls], abs=1e-4)
        for key, value in s["depth_m"].items():
            assert value == pytest.approx(lo["depth_m"][key], rel=2e-3, abs=2e-3)


def test_world_drive_served_equals_in_process(triton_server, drive, tmp_path):
    video, seq = drive
    served = VideoOptions(
        out_dir=tmp_path / "served", client=ClientOptions(url=triton_server.url), window=4, progress=False
    )
    local = VideoOptions(
        out_dir=tmp_path / "local",
        backend="local",
        onnx=triton_server.onnx["cam-n"],
        fusion_onnx=triton_server.onnx["fusion-n"],
        write_video=False,
        progress=False,
    )
    report = run_video([str(video), str(seq)], served)
    assert report.exit_code == EXIT_OK, [r.message for r in report.results]
    assert run_video([str(video), str(seq)], local).exit_code == EXIT_OK
    for name in ("drive", "seq"):
        records = read_records(tmp_path / "served" / name / "results.jsonl")
        assert [r["frame"] for r in records] == list(range(FRAMES))  # == frames, each once, in order
        assert records[0]["source_hw"] == list(HW)
        _assert_same_results(records, read_records(tmp_path / "local" / name / "results.jsonl"))
        if _weights_shipped():  # trained weights find the world's vehicles; a random init may not
            assert sum(len(r["detections"]) for r in records) >= FRAMES
    # the fusion sequence was served by the fusion ensemble, with its LiDAR
    summary = (tmp_path / "served" / "seq" / "summary.json").read_text()
    assert '"model": "perception_fusion"' in summary
