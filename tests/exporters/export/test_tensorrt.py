"""TensorRT stage: the TensorRT-free parts here; engine builds marked `trt` (skip without TensorRT)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from exporters.export.options import BatchProfile, CalibrationOptions, TensorRTOptions
from serving.errors import MissingDependencyError, SpecError
from serving.spec import IMAGES, LIDAR_DEPTH, ModelSpec

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
needs_trt = pytest.mark.skipif(not HAVE_TRT, reason="TensorRT is not installed here (import tensorrt fails)")
CAM = ModelSpec("cam-n", input_hw=(128, 224))
FUSION = ModelSpec("fusion-n", input_hw=(128, 224), fusion=True)


def test_profile_shapes_come_from_the_spec_and_batch_profile():
    from exporters.export.tensorrt_plan import profile_shapes

    shapes = profile_shapes(FUSION, BatchProfile(1, 4, 8))
    assert shapes == {
        IMAGES: ((1, 3, 128, 224), (4, 3, 128, 224), (8, 3, 128, 224)),
        LIDAR_DEPTH: ((1, 1, 128, 224), (4, 1, 128, 224), (8, 1, 128, 224)),
    }
    assert list(profile_shapes(CAM, BatchProfile(2, 2, 2))) == [IMAGES]


def test_engine_file_names_per_compute_capability():
    from exporters.export.tensorrt_plan import cc_model_filenames, plan_filename

    assert plan_filename("model.plan", (9, 0)) == "model_sm90.plan"
    assert plan_filename("model.plan", (8, 6)) == "model_sm86.plan"
    assert cc_model_filenames("model.plan", [(8, 0), (9, 0)]) == {
        "8.0": "model_sm80.plan",
        "9.0": "model_sm90.plan",
    }


def test_sidecar_records_what_the_engine_was_built_from(tmp_path):
    from exporters.export.tensorrt_plan import sidecar, write_sidecar

    opts = TensorRTOptions(
        profile=BatchProfile(1, 4, 8), precision="int8", calibration=CalibrationOptions(images=64, batch=8)
    )
    doc = sidecar(CAM, opts, "10.3.0", "NVIDIA H100 80GB HBM3", (9, 0), "ab" * 32)
    assert doc["tensorrt_version"] == "10.3.0" and doc["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert (
        doc["compute_capability"] == "9.0"
        and doc["precision"] == "int8"
        and doc["fallback_precision"] == "fp16"
    )
    assert doc["profile"] == {"min": 1, "opt": 4, "max": 8}
    assert doc["profile_shapes"][IMAGES] == [[1, 3, 128, 224], [4, 3, 128, 224], [8, 3, 128, 224]]
    assert doc["spec_hash"] == CAM.spec_hash() and doc["calibration"] == {"source": "world", "images": 64}
    path = write_sidecar(tmp_path / "model_sm90.plan", doc)
    assert path.name == "model_sm90.plan.json" and json.loads(path.read_text()) == doc


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int8"}, "INT8 needs calibration data"),
        ({"precision": "fp8"}, "precision must be one of fp32, fp16, int8"),
        ({"workspace_mib": 16}, "workspace must be >= 64 MiB"),
        ({"plan_name": "model.engine"}, "must end in .plan"),
    ],
)
def test_impossible_tensorrt_options_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        TensorRTOptions(**kwargs)


def test_batch_profile_is_checked():
    with pytest.raises(SpecError, match="max batch 2 < min batch 4"):
        BatchProfile(4, 4, 2)
    with pytest.raises(SpecError, match="opt batch 9 must lie in min..max = 1..8"):
        BatchProfile(1, 9, 8)
    with pytest.raises(SpecError, match="min batch must be >= 1"):
        BatchProfile(0, 1, 1)


def test_looser_bounds_for_lower_precisions():
    from exporters.export.tensorrt import TOLERANCES

    fp32, fp16, int8 = TOLERANCES["fp32"], TOLERANCES["fp16"], TOLERANCES["int8"]
    assert fp32.seg_agreement > fp16.seg_agreement > int8.seg_agreement
    assert fp32.det_iou > fp16.det_iou > int8.det_iou
    assert fp32.d_map50 < fp16.d_map50 < int8.d_map50


def test_world_calibration_feed_uses_training_scenes_in_full_batches():
    from exporters.evaluation import is_validation_seed, training_seed
    from exporters.export.calibration import calibration_batches
    from world import render_scene

    opts = CalibrationOptions(images=5, batch=2, seed=3)
    batches = list(calibration_batches(FUSION, opts))
    assert len(batches) == 2  # 5 frames -> 2 full batches, the fifth dropped
    for b in batches:
        assert b[IMAGES].shape == (2, 3, 128, 224) and b[IMAGES].dtype == np.uint8
        assert b[LIDAR_DEPTH].shape == (2, 1, 128, 224) and b[LIDAR_DEPTH].dtype == np.float32
        assert (b[LIDAR_DEPTH] > 0).mean() > 0.005
    assert not is_validation_seed(training_seed(0, base=3))
    first = render_scene(training_seed(0, base=3), hw=(128, 224), lidar=True)
    assert np.array_equal(batches[0][IMAGES][0], first.image.transpose(2, 0, 1))
    again = list(calibration_batches(FUSION, opts))
    assert all(np.array_equal(a[IMAGES], b[IMAGES]) for a, b in zip(batches, again, strict=True))


def test_image_folder_calibration_letterboxes_per_spec(tmp_path):
    from exporters.export.calibration import calibration_batches

    wide = np.full((90, 320, 3), (255, 0, 0), np.uint8)  # RGB red, 90x320 -> 63x224 in 128x224
    tall = np.full((300, 100, 3), (0, 0, 255), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(wide, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "b.jpg"), cv2.cvtColor(tall, cv2.COLOR_RGB2BGR))
    (tmp_path / "c.png").write_bytes(b"not an image")  # skipped with a warning
    (tmp_path / "notes.txt").write_text("ignored")
    (batch,) = calibration_batches(CAM, CalibrationOptions(source=tmp_path, images=10, batch=2))
    a, b = batch[IMAGES]
    assert a.shape == (3, 128, 224)
    pad = CAM.letterbox.pad_value
    assert (a[:, 0, :] == pad).all() and (a[:, -1, :] == pad).all()  # padded above and below
    assert tuple(a[:, 64, 112]) == (255, 0, 0)  # red stays red: RGB order kept
    assert (b[:, :, 0] == pad).all() and (b[:, :, -1] == pad).all()  # padded left and right
    assert b[2, 64, 112] > 250 and b[0, 64, 112] < 5


def test_calibration_sources_that_cannot_work_are_refused(tmp_path):
    from exporters.export.calibration import calibration_batches

    with pytest.raises(SpecError, match="neither 'world' nor a folder"):
        CalibrationOptions(source=tmp_path / "missing")
    with pytest.raises(SpecError, match="holds no images"):
        list(calibration_batches(CAM, CalibrationOptions(source=tmp_path)))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(SpecError, match="fusion network: calibrate on 'world' or a KITTI-style sequence"):
        list(calibration_batches(FUSION, CalibrationOptions(source=tmp_path)))
    with pytest.raises(SpecError, match="fewer than one batch of 4"):
        list(calibration_batches(CAM, CalibrationOptions(source=tmp_path, batch=4)))


def test_kitti_sequence_calibrates_a_fusion_network(tmp_path):
    from exporters.export.calibration import calibration_batches
    from world import render_sequence
    from world.kitti import write_kitti_sequence

    write_kitti_sequence(tmp_path / "seq", render_sequence(5, 2, hw=(180, 320), lidar=True))
    (batch,) = calibration_batches(FUSION, CalibrationOptions(source=tmp_path / "seq", images=2, batch=2))
    assert batch[IMAGES].shape == (2, 3, 128, 224)
    lidar = batch[LIDAR_DEPTH]
    assert lidar.shape == (2, 1, 128, 224) and (lidar > 0).mean() > 0.005
    # letterbox 180x320 -> 126x224 at pad_y 1: no LiDAR return lands in the padding rows
    assert not lidar[:, :, 0].any() and not lidar[:, :, -1].any()


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: the missing-dependency path cannot be shown")
def test_building_without_tensorrt_is_one_clear_error(tmp_path):
    from exporters.export.tensorrt import build_engine

    with pytest.raises(
        MissingDependencyError, match="tensorrt is not installed: build engines inside the NGC"
    ):
        build_engine(tmp_path / "model.onnx", tmp_path, CAM, TensorRTOptions())


@pytest.mark.trt
@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_verifies_and_is_named_per_compute_capability(tmp_path, precision):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from exporters.export.options import ExportOptions, VerifyOptions
    from exporters.export.run import run_export

    calib = (
        CalibrationOptions(images=16, batch=2, cache=tmp_path / "calib.cache")  # batch == opt
        if precision == "int8"
        else None
    )
    trt_opts = TensorRTOptions(
        profile=BatchProfile(1, 2, 4),
        precision=precision,
        calibration=calib,
        timing_cache=tmp_path / "timing.cache",
    )
    result = run_export(
        ExportOptions(
            network="cam-n",
            out_dir=tmp_path / "out",
            input_hw=(128, 224),
            profile=BatchProfile(1, 2, 4),
            engine="tensorrt",
            precision=precision,
            verify=VerifyOptions(scenes=8, batch=3),
            tensorrt=trt_opts,
        )
    )
    assert result.engine is not None and result.verification[-1].passed
    major, minor = torch.cuda.get_device_capability(0)
    assert result.engine.name == f"model_sm{major}{minor}.plan"
    doc = json.loads(Path(str(result.engine) + ".json").read_text())
    assert doc["precision"] == precision and doc["compute_capability"] == f"{major}.{minor}"
    (cache,) = tmp_path.glob(f"timing.sm{major}{minor}.trt*.cache")  # keyed by GPU and TensorRT
    assert cache.stat().st_size > 0
    assert (tmp_path / "out" / "model.trt.onnx").is_file()  # what TensorRT parsed (EfficientNMS_TRT)
    if precision == "int8":
        assert (tmp_path / "calib.cache").stat().st_size > 0
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(result.engine.read_bytes())  # raw, no header
    assert engine is not None


def test_calibration_cache_is_reused_only_for_the_same_onnx(tmp_path):
    from exporters.export.calibration import cache_matches, write_cache

    cache = tmp_path / "calibration.cache"
    assert not cache_matches(cache, "a" * 64)
    write_cache(cache, b"TRT-1000-EntropyCalibration2\n", "a" * 64, CalibrationOptions(images=64))
    assert cache.read_bytes().startswith(b"TRT-")
    assert cache_matches(cache, "a" * 64)
    assert not cache_matches(cache, "b" * 64)  # other weights: calibrate again


def test_tensorrt_options_must_agree_with_the_export():
    from exporters.export.options import ExportOptions

    with pytest.raises(SpecError, match="precision fp32 but TensorRT options say fp16"):
        ExportOptions(network="cam-n", out_dir=Path("x"), engine="tensorrt", tensorrt=TensorRTOptions())
    with pytest.raises(SpecError, match="TensorRT profile must be the export's batch profile"):
        ExportOptions(
            network="cam-n",
            out_dir=Path("x"),
            engine="tensorrt",
            precision="fp16",
            profile=BatchProfile(1, 1, 1),
            tensorrt=TensorRTOptions(),
        )


# --- issue 13 (d): the pin, the calibrator, the timing cache, the runner's dtypes -----------------
def test_tensorrt_version_is_pinned_to_the_serving_images_and_compared_to_the_patch(monkeypatch):
    from exporters.export.tensorrt_plan import check_tensorrt_version, tensorrt_image
    from serving import ngc
    from serving.errors import ExportError
    from serving.tensorrt_pin import same_tensorrt, version_key

    monkeypatch.setattr(ngc, "TENSORRT_VERSION", "11.4.0")  # serving/ngc.py leaves it unconfirmed
    assert tensorrt_image() == "nvcr.io/nvidia/tensorrt:" + ngc.TRITON_IMAGE.split(":")[1]  # same release
    assert version_key("10.5.0.18") == (10, 5, 0) and version_key("10.5") == (10, 5, 0)
    assert same_tensorrt("10.5.0.18", "10.5.0") and not same_tensorrt("10.6.0", "10.5.0")
    assert not same_tensorrt("11.0.0.1", "10.5.0")
    assert not same_tensorrt("10.5.0.18", "10.5.0.17")  # the build number too, where both have one
    check_tensorrt_version("11.4.0.18")
    with pytest.raises(ExportError, match=r"TensorRT 11.0.0 is installed.*--print-docker"):
        check_tensorrt_version("11.0.0")
    monkeypatch.setattr(ngc, "TENSORRT_VERSION", None)
    monkeypatch.delenv(ngc.TENSORRT_VERSION_ENV, raising=False)
    with pytest.raises(ExportError, match=ngc.TENSORRT_VERSION_ENV):  # unpinned: says how to pin it
        check_tensorrt_version("11.4.0.18")


def _percept(cwd, *args):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[3]
    cli = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(root)!r}); from percept.cli import main; main()",
    ]
    return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_print_docker_gives_the_same_export_inside_the_ngc_tensorrt_image(tmp_path):
    from exporters.export.tensorrt_plan import tensorrt_image

    args = ["export", "cam-n", "--out", "out", "--engine", "tensorrt", "--precision", "fp16"]
    result = _percept(tmp_path, *args, "--opt-batch", "2", "--print-docker")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("docker run --rm --gpus all ") and tensorrt_image() in line
    assert f"-w {tmp_path.resolve()}" in line and "/opt/perception-serving" in line
    assert "percept export cam-n --out out --engine tensorrt" in line and "--opt-batch 2" in line
    assert "--precision fp16" in line and "--print-docker" not in line
    bad = _percept(tmp_path, "export", "cam-n", "--out", "out", "--print-docker")
    assert bad.returncode != 0 and "needs --engine tensorrt" in bad.stderr


def test_print_docker_from_a_wheel_install_installs_the_same_release_instead_of_a_tree(tmp_path):
    """Installed from a wheel there is no source tree to mount (the package lies in site-packages):
    the container installs this very release with its export extra."""
    from importlib.metadata import version

    from exporters.export.tensorrt_plan import docker_command

    line = docker_command(["cam-n", "--out", "out"], tmp_path / "site-packages", tmp_path, tmp_path / "out")
    assert f"perception-serving[export]=={version('perception-serving')}" in line
    assert "/opt/perception-serving" not in line and f"-v {tmp_path.resolve()}:{tmp_path.resolve()}" in line
    assert line.count(" -v ") == 1  # the output folder lies inside the mounted working directory


def test_timing_cache_is_keyed_by_compute_capability_and_tensorrt_version(tmp_path):
    from exporters.export.tensorrt_plan import timing_cache_path

    base = tmp_path / "timing.cache"
    a = timing_cache_path(base, (9, 0), "10.5.0.18")
    assert a == tmp_path / "timing.sm90.trt10.5.0.cache"
    assert timing_cache_path(base, (8, 6), "10.5.0.18") != a
    assert timing_cache_path(base, (9, 0), "10.6.0") != a


def test_calibration_batch_must_be_the_profiles_opt_batch():
    from exporters.export.tensorrt import check_calibration_batch
    from serving.errors import ExportError

    check_calibration_batch(4, 4)
    with pytest.raises(ExportError, match="calibration batch 8 != the profile's opt batch 4"):
        check_calibration_batch(8, 4)  # the old defaults: half of every batch ignored
    with pytest.raises(ExportError, match="calibration batch 2 != the profile's opt batch 4"):
        check_calibration_batch(2, 4)  # TensorRT would read past the buffers


def _feed(batches, batch=2):
    from exporters.export.calibration import CalibrationFeed

    kept = []

    def to_device(name, array):
        kept.append(array)
        return array, array.ctypes.data

    return CalibrationFeed(iter(batches), batch, to_device), kept


def test_calibration_feed_hands_out_full_batches_then_ends():
    frames = {IMAGES: np.zeros((2, 3, 4, 4), np.uint8)}
    feed, kept = _feed([frames, frames])
    assert len(feed.next_pointers([IMAGES])) == 1
    assert len(feed.next_pointers([IMAGES])) == 1
    assert feed.next_pointers([IMAGES]) is None and feed.count == 2
    feed.raise_if_failed()  # nothing to re-raise


def test_calibration_feed_keeps_a_get_batch_exception_and_re_raises_it_after_the_build():
    from serving.errors import ExportError

    def broken():
        yield {IMAGES: np.zeros((2, 3, 4, 4), np.uint8)}
        raise OSError("disk gone")

    feed, _ = _feed(broken())
    assert feed.next_pointers([IMAGES]) is not None
    assert feed.next_pointers([IMAGES]) is None  # TensorRT sees the end of calibration, not a crash
    assert feed.next_pointers([IMAGES]) is None
    with pytest.raises(ExportError, match="get_batch: OSError: disk gone") as info:
        feed.raise_if_failed()
    assert isinstance(info.value.__cause__, OSError)
    short, _ = _feed([{IMAGES: np.zeros((1, 3, 4, 4), np.uint8)}], batch=2)
    assert short.next_pointers([IMAGES]) is None
    with pytest.raises(ExportError, match="batch of 1 frames for images; TensorRT reads 2"):
        short.raise_if_failed()


def test_runner_refuses_an_engine_whose_tensor_types_are_not_the_specs():
    from exporters.export.tensorrt import check_tensor_dtype
    from serving.errors import ExportError

    check_tensor_dtype("num_dets", np.dtype(np.int32), "int32")
    with pytest.raises(ExportError, match="engine tensor depth is float32, the spec says float16"):
        check_tensor_dtype("depth", np.dtype(np.float32), "float16")
