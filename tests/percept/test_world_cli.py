import subprocess
import sys

import cv2


def percept(*args: str, cwd=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from percept.cli import main; main()", "world", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_world_render_writes_the_video_and_kitti_folder(tmp_path):
    out = tmp_path / "x.mp4"
    r = percept(
        "render",
        "--seconds",
        "1",
        "--fps",
        "4",
        "--size",
        "64x96",
        "--out",
        str(out),
        "--kitti",
        str(tmp_path / "k"),
    )
    assert r.returncode == 0, r.stderr
    assert "wrote 4 frames" in r.stdout
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96
    assert len(list((tmp_path / "k" / "velodyne").glob("*.bin"))) == 4


def test_world_help_and_bad_arguments_give_one_line_errors(tmp_path):
    r = percept("--help")
    assert r.returncode == 0 and "render" in r.stdout and "stats" in r.stdout and "LiDAR" in r.stdout
    r = percept("render", "--size", "big", "--out", str(tmp_path / "a.mp4"))
    assert (
        r.returncode == 1 and r.stderr.strip() == "error: size must be HEIGHTxWIDTH like 384x640, got 'big'"
    )
    r = percept("render", "--out", str(tmp_path / "a.avi"))
    assert r.returncode == 1 and "must be an .mp4" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_world_stats_prints_the_measurements(tmp_path):
    r = percept("stats", "--seeds", "4", "--size", "96x160", "--json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert (
        "small (<32x32)" in r.stdout and "scenes/s" in r.stdout and (tmp_path / "s.json").stat().st_size > 100
    )


def test_world_preview_draws_the_four_panels(tmp_path):
    r = percept("preview", "--seed", "3", "--size", "96x160", "--out", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    picture = cv2.imread(str(tmp_path / "p.png"))
    assert picture.shape == (192, 320, 3)
    assert picture[96:, 160:].any()  # the LiDAR panel holds projected points
