"""`percept compare` on the shipped cam-n and a short world drive: a model agrees with itself
exactly, its FP16 file and the INT8 file the export writes stay within their bounds, a perturbed
candidate fails the gate with the head named, a `percept video --save-maps` run compares like the
model it ran, and bad inputs each give one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clients.compare import CompareOptions, run_compare
from clients.video.maps import MAPS
from serving.errors import PerceptionError

PERCEPT = str(Path(sys.executable).parent / "percept")
pytest.importorskip("onnxruntime")


def _compare(baseline, candidate, video: Path, out: Path, **kwargs):
    options = CompareOptions(str(baseline), str(candidate), out, progress=False, **kwargs)
    return run_compare([str(video)], options)


def test_a_model_agrees_with_itself_exactly(tmp_path, exported_onnx, drive_video):
    import cv2

    onnx = exported_onnx["cam-n"]
    folder = tmp_path / "stills"  # an image folder is an input too
    folder.mkdir()
    cap = cv2.VideoCapture(str(drive_video))
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), cap.read()[1])
    cap.release()
    options = CompareOptions(str(onnx), str(onnx), tmp_path, progress=False)
    report = run_compare([str(drive_video), str(folder)], options)
    assert report.passed, report.line()
    assert report.inputs["stills"]["frames"] == 3
    data = json.loads((tmp_path / "report.json").read_text())
    drive = data["inputs"]["drive"]
    assert drive["frames"] == 6 and drive["undecodable"] == []
    det = drive["detection"]
    assert det["matched"] == det["baseline"] == det["candidate"] > 0
    assert all(c["missing"] == c["extra"] == 0 for c in det["per_class"].values())
    assert det["iou"]["min"] == 1.0 and det["abs_score_diff"]["max"] == 0.0
    assert drive["segmentation"]["pixel_agreement"] == 1.0
    assert set(drive["segmentation"]["class_iou"].values()) == {1.0}
    assert drive["depth"]["rel_error"]["max"] == 0.0 and drive["depth"]["rel_error"]["pixels"] > 0
    assert data["bounds"]["row"] == "fp32"
    assert "**PASS" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "plots" / "drive.png").stat().st_size > 0


def test_fp16_stays_within_the_fp16_bounds(tmp_path, cam_variants, drive_video):
    report = _compare(cam_variants["fp32"], cam_variants["fp16"], drive_video, tmp_path)
    assert report.row == "fp16"  # the candidate file's recorded precision picks the row
    assert report.passed, report.line()
    drive = report.inputs["drive"]
    assert drive["depth"]["rel_error"]["max"] > 0  # not the same numbers: a real FP16 run
    assert drive["segmentation"]["pixel_agreement"] >= 0.99


def test_the_exports_int8_stays_within_the_int8_bounds(tmp_path, exported_onnx, cam_int8_export):
    """FP32 against the INT8 file the export writes (calibrated, its most sensitive layers kept in
    FP32): within the int8 row, chosen from the file's recorded precision, and not identical. On a
    3-second drive, so that one borderline box flipping (one missing, one extra) is a fraction the
    int8 row allows, whichever CPU's INT8 kernels run it."""
    from serving.onnx_meta import read_spec
    from world.drive import DriveOptions, record_drive

    hw = read_spec(exported_onnx["cam-n"]).input_hw
    video = tmp_path / "drive.mp4"
    record_drive(DriveOptions(seconds=3, fps=10, hw=hw, seed=11), video=video)
    report = _compare(exported_onnx["cam-n"], cam_int8_export, video, tmp_path / "gate")
    assert report.row == "int8"
    assert report.passed, report.line()
    drive = report.inputs["drive"]
    assert drive["depth"]["rel_error"]["max"] > 0  # a real INT8 run, not the FP32 file again
    assert drive["detection"]["matched"] > 0


def test_int8_is_gated_with_its_row_and_a_bounds_file_overrides_it(tmp_path, cam_variants, drive_video):
    """The raw QDQ file (8 calibration frames, none of the export's FP32 fallback layers) exceeds
    the int8 row on this drive; a team's bounds file can widen the row it names."""
    from clients.compare.gate import BoundsError

    report = _compare(cam_variants["fp32"], cam_variants["int8"], drive_video, tmp_path / "row")
    assert report.row == "int8" and not report.passed
    assert report.line().startswith("FAIL input drive, head ")
    drive = report.inputs["drive"]
    assert drive["segmentation"]["worst_frame_agreement"] >= 0.9  # close, not broken
    bounds = tmp_path / "bounds.yaml"
    bounds.write_text(
        "precision: int8\ndepth_rel_error: 0.5\nmax_unmatched_fraction: 0.5\nseg_agreement: 0.9\n"
    )
    wide = _compare(cam_variants["fp32"], cam_variants["int8"], drive_video, tmp_path / "wide", bounds=bounds)
    assert wide.passed, wide.line()
    assert wide.bounds.depth_rel_error == 0.5 and wide.bounds.det_iou == report.bounds.det_iou
    bounds.write_text("seg_agreemnt: 0.9\n")
    with pytest.raises(BoundsError, match="unknown bound"):
        _compare(cam_variants["fp32"], cam_variants["int8"], drive_video, tmp_path / "typo", bounds=bounds)


def test_a_perturbed_candidate_fails_the_gate_naming_input_head_class_and_measure(
    tmp_path, cam_variants, drive_video
):
    done = subprocess.run(
        [PERCEPT, "compare", str(cam_variants["fp32"]), str(cam_variants["perturbed"]), str(drive_video)]
        + ["--out", str(tmp_path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    line = done.stdout.strip()
    assert "\n" not in line
    assert line.startswith("FAIL input drive, head detection, class car: unmatched fraction")
    data = json.loads((tmp_path / "report.json").read_text())
    assert not data["passed"] and data["failures"][0] == line
    heads = {f.split(", head ")[1].split(",")[0].split(":")[0] for f in data["failures"]}
    assert heads == {"detection", "segmentation", "depth"}
    shots = data["gallery"]["segmentation"]
    assert shots and (tmp_path / shots[0]["path"]).stat().st_size > 0


def test_the_command_passes_with_one_summary_line_and_an_unusable_side_is_one_error_line(
    tmp_path, cam_variants, drive_video
):
    def percept(*args: str) -> subprocess.CompletedProcess:
        cmd = [PERCEPT, "compare", str(cam_variants["fp32"]), *args, str(drive_video), "--no-progress"]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    ok = percept(str(cam_variants["fp16"]), "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("\n") == 1 and ok.stdout.startswith("PASS model.fp16.onnx (onnx) agrees with")
    assert "within the fp16 bounds: 1 input(s), 6 frames" in ok.stdout
    bad = percept(str(tmp_path / "absent.onnx"), "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and bad.stdout == ""
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: candidate {tmp_path / 'absent.onnx'}: no such file"], bad.stderr


def test_world_scenes_add_the_metric_deltas_against_ground_truth(tmp_path, cam_variants):
    from clients.compare.scenes import GroundTruth
    from exporters.evaluation import Evaluator, validation_seeds

    truth = GroundTruth(tuple(validation_seeds(4)), Evaluator)
    fp32 = str(cam_variants["fp32"])
    same = run_compare([], CompareOptions(fp32, fp32, tmp_path / "same", progress=False), truth)
    metrics = same.inputs["world-scenes"]["metrics"]
    assert same.passed and set(metrics["delta"].values()) == {0.0}
    assert 0 < metrics["baseline"]["miou"] <= 1
    worse = str(cam_variants["perturbed"])
    bad = run_compare([], CompareOptions(fp32, worse, tmp_path / "worse", progress=False), truth)
    lines = [f.line() for f in bad.failures]
    assert any(line.startswith("FAIL input world-scenes, head segmentation: |d miou|") for line in lines)


def test_a_video_run_with_maps_compares_like_the_model_it_ran(tmp_path, exported_onnx, drive_video):
    from clients.video import VideoOptions, run_video

    onnx = exported_onnx["cam-n"]
    run = tmp_path / "run"
    options = VideoOptions(
        out_dir=run, backend="local", onnx=onnx, write_video=False, save_maps=True, progress=False
    )
    assert run_video([str(drive_video)], options).exit_code == 0
    maps = sorted((run / "drive" / MAPS).glob("*.png"))
    assert len(maps) == 12  # a class map and a depth map per frame
    from_run = _compare(run, onnx, drive_video, tmp_path / "run-vs-onnx")
    assert from_run.passed, from_run.line()
    assert from_run.inputs["drive"]["segmentation"]["pixel_agreement"] == 1.0
    assert from_run.inputs["drive"]["depth"]["rel_error"]["max"] == 0.0  # lossless
    assert _compare(run, run, drive_video, tmp_path / "run-vs-run").passed


def test_a_fusion_model_agrees_with_itself_on_a_kitti_sequence(tmp_path, exported_onnx, drive):
    """Both sides get the same frame and the same LiDAR sweep (a fusion model refuses a frame
    without one); a camera model on a KITTI sequence is one clear line."""
    fusion, seq = exported_onnx["fusion-n"], drive[1]
    report = run_compare([str(seq)], CompareOptions(str(fusion), str(fusion), tmp_path / "f", progress=False))
    assert report.passed, report.line()
    numbers = report.inputs["seq"]
    assert numbers["frames"] == 6 and numbers["depth"]["rel_error"]["max"] == 0.0
    assert numbers["segmentation"]["pixel_agreement"] == 1.0
    cam = str(exported_onnx["cam-n"])
    with pytest.raises(PerceptionError, match="KITTI sequence .* camera models"):
        run_compare([str(seq)], CompareOptions(cam, cam, tmp_path / "c", progress=False))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "candidate nowhere.onnx: no such file"),
        ("served-without-url", "a served model needs --url"),
        ("corrupt-onnx", "broken.onnx"),
        ("corrupt-video", "cannot open as a video"),
        ("run-without-maps", "a run folder without maps"),
        ("mismatched-heads", "mismatched heads"),
    ],
)
def test_bad_inputs_give_one_clear_line(tmp_path, exported_onnx, drive_video, byom_onnx, case, message):
    onnx, video = exported_onnx["cam-n"], drive_video
    candidate: object = onnx
    if case == "missing":
        candidate = "nowhere.onnx"
    elif case == "served-without-url":
        candidate = "perception"
    elif case == "corrupt-onnx":
        candidate = tmp_path / "broken.onnx"
        candidate.write_bytes(b"\x08\x07garbage" * 100)
    elif case == "corrupt-video":
        video = tmp_path / "broken.mp4"
        video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 500)
    elif case == "run-without-maps":
        candidate = tmp_path / "run"
        (candidate / "drive").mkdir(parents=True)
        (candidate / "drive" / "results.jsonl").write_text('{"frame": 0}\n')
    elif case == "mismatched-heads":
        candidate = byom_onnx["seg360"]
    with pytest.raises(PerceptionError) as err:
        _compare(onnx, candidate, video, tmp_path / "out")
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.triton
def test_served_against_onnx_gives_the_numbers_of_onnx_against_onnx(
    tmp_path, triton_server, cam_variants, drive_video
):
    from serving.spec import ENSEMBLE_CAMERA

    if not triton_server.real_networks:
        pytest.skip("the exporters are missing: the server holds tiny models, not the shipped cam-n")
    served = _compare(
        ENSEMBLE_CAMERA, cam_variants["fp16"], drive_video, tmp_path / "s", url=triton_server.url
    )
    local = _compare(cam_variants["fp32"], cam_variants["fp16"], drive_video, tmp_path / "o")
    assert served.inputs == local.inputs
    assert served.passed == local.passed
    lat = served.serving["baseline"]
    assert lat["requests"] == 6 and 0 < lat["p50_ms"] <= lat["p99_ms"]
    assert "## Serving" in (tmp_path / "s" / "report.md").read_text()


def test_on_ray_each_model_side_runs_once_as_a_video_run_with_maps(tmp_path, cam_variants, drive_video):
    """--engine ray: the sides run as `percept video --engine ray --save-maps` (the video engine's
    units and run.json); the numbers are the in-process comparison's, and the same command run
    again infers nothing."""
    pytest.importorskip("ray")
    import ray

    from clients.video.options import RayOptions
    from clients.video.ray_pool import start_local

    fp32, fp16 = cam_variants["fp32"], cam_variants["fp16"]
    local = _compare(fp32, fp16, drive_video, tmp_path / "local")
    start_local(num_cpus=1)
    try:
        kw = {"engine": "ray", "ray": RayOptions(workers=1)}
        first = _compare(fp32, fp16, drive_video, tmp_path / "ray", **kw)
        again = _compare(fp32, fp16, drive_video, tmp_path / "ray", **kw)
    finally:
        ray.shutdown()
    assert first.row == "fp16" and first.passed == local.passed
    for head in ("segmentation", "depth"):
        assert first.inputs["drive"][head] == local.inputs["drive"][head]
    det, local_det = first.inputs["drive"]["detection"], local.inputs["drive"]["detection"]
    assert det["per_class"] == local_det["per_class"]  # boxes round-tripped through the JSONL
    assert again.inputs == first.inputs
    for side in ("baseline", "candidate"):
        run = json.loads((tmp_path / "ray" / "runs" / side / "run.json").read_text())
        assert run["state"] == "complete" and run["frames_processed"] == 0  # the second command's
