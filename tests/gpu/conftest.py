"""The GPU smoke kit's fixtures: trained cam-n at the test size, its engines, its scenes.

Run it with ``make gpu-smoke`` (``pytest tests/gpu -m "gpu or trt" -rs``) inside the NGC image (or on
any machine with an NVIDIA GPU, torch CUDA and the pinned TensorRT). Where TensorRT, a GPU or a
tritonserver with the tensorrt backend is missing, every test skips and says which.

Engines are built once per session with the export stage's own code
(:func:`exporters.export.tensorrt.build_and_verify`: the EfficientNMS_TRT variant, the profile, the
calibrator, the sidecar): FP32 / FP16 / INT8 from the FP32 ONNX with builder flags (TensorRT 10.5's
path, ``percept export --engine tensorrt``), and FP16 / INT8 strongly typed from the FP16-typed and
QDQ INT8 ONNX files (``--engine onnx --precision fp16|int8``, the path TensorRT 11 keeps).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TEST_HW

PROFILE = (1, 4, 8)  # min, opt, max batch of every engine the kit builds
KINDS = ("fp32", "fp16", "int8", "fp16-typed", "int8-typed")
CALIBRATION_IMAGES = 32
VERIFY_SCENES = 16
TRITONSERVER_ENV = "PERCEPT_TRITONSERVER"  # a tritonserver with the tensorrt backend
NGC_TRITONSERVER = Path("/opt/tritonserver/bin/tritonserver")  # where the NGC Triton image has it


def tensorrt_missing() -> str | None:
    """Why the TensorRT parts cannot run here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return (
            "TensorRT is not installed here (import tensorrt fails): run `make gpu-smoke` inside the "
            "NGC image or on a GPU machine with the pinned TensorRT"
        )
    return None


def gpu_missing() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed (the torch CUDA checks and the reference network need it)"
    import torch

    if not torch.cuda.is_available():
        return "no NVIDIA GPU: torch.cuda.is_available() is False"
    return None


def precision_of(kind: str) -> str:
    return kind.split("-")[0]


@pytest.fixture(scope="session")
def trt():
    """The tensorrt module, skipping with the reason where it is absent or not the pinned one."""
    reason = tensorrt_missing()
    if reason:
        pytest.skip(reason)
    import tensorrt

    from serving.errors import ServingError
    from serving.ngc import TRITON_IMAGE
    from serving.tensorrt_pin import same_tensorrt, target_tensorrt

    try:
        target = target_tensorrt()
    except ServingError as exc:
        pytest.skip(str(exc))
    if not same_tensorrt(str(tensorrt.__version__), target):
        pytest.skip(
            f"TensorRT {tensorrt.__version__} is installed, {TRITON_IMAGE} loads engines of "
            f"{target} only (test_tensorrt_is_the_pinned_version fails on it)"
        )
    return tensorrt


@pytest.fixture(scope="session")
def gpu(trt):
    reason = gpu_missing()
    if reason:
        pytest.skip(reason)
    return trt


@pytest.fixture(scope="session")
def kit_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-kit")


@pytest.fixture(scope="session")
def cam_onnx(gpu, kit_dir) -> Path:
    """cam-n with its shipped (trained) weights at the test size: never a random init, whose
    scores never pass the threshold, so NMS and the detection comparison would check nothing."""
    from exporters.export.freshness import export_if_stale
    from exporters.export.options import BatchProfile, OnnxOptions
    from exporters.weights import default_checkpoint

    path = kit_dir / "fp32" / "model.onnx"
    options = OnnxOptions(profile=BatchProfile(*PROFILE), checkpoint=default_checkpoint("cam-n"))
    export_if_stale("cam-n", path, options, input_hw=TEST_HW, seed=0)
    return path


@pytest.fixture(scope="session")
def spec(cam_onnx):
    from serving.onnx_meta import read_spec

    return read_spec(cam_onnx)


def kind_onnx(kind: str, fp32: Path, spec, folder: Path) -> Path:
    """The ONNX a kind of engine is built from, in a folder of its own (plans are named per GPU,
    so each kind needs its own folder; `repo build` finds the plan next to the ONNX)."""
    from exporters.export.options import CalibrationOptions
    from exporters.export.precision import to_fp16, to_int8

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "fp16-typed":
        return to_fp16(fp32, folder / "model.fp16.onnx", spec)
    if kind == "int8-typed":
        calibration = CalibrationOptions(images=CALIBRATION_IMAGES, batch=PROFILE[1], method="percentile")
        return to_int8(fp32, folder / "model.int8.onnx", spec, calibration)
    dst = folder / "model.onnx"
    shutil.copyfile(fp32, dst)
    return dst


@pytest.fixture(scope="session")
def engines(gpu, cam_onnx, spec, kit_dir):
    """kind -> (ONNX, verified plan, VerifyReport), built on first use and kept for the session."""
    from exporters.export.options import BatchProfile, CalibrationOptions, TensorRTOptions, VerifyOptions
    from exporters.export.tensorrt import build_and_verify
    from exporters.export.verify import ort_runner

    built: dict[str, tuple[Path, Path, object]] = {}
    reference = ort_runner(cam_onnx)

    def get(kind: str):
        if kind not in built:
            precision, typed = precision_of(kind), kind.endswith("-typed")
            onnx = kind_onnx(kind, cam_onnx, spec, kit_dir / kind)
            calibration = None
            if precision == "int8" and not typed:  # TensorRT calibrates at the profile's opt shape
                calibration = CalibrationOptions(
                    images=CALIBRATION_IMAGES, batch=PROFILE[1], cache=onnx.parent / "calibration.cache"
                )
            options = TensorRTOptions(
                profile=BatchProfile(*PROFILE),
                precision=precision,
                calibration=calibration,
                timing_cache=kit_dir / "timing.cache",
                strongly_typed=typed,
            )
            verify = VerifyOptions(scenes=VERIFY_SCENES, batch=PROFILE[1], metrics=False)
            plan, report = build_and_verify(onnx, onnx.parent, options, reference, spec, verify)
            built[kind] = (onnx, plan, report)
        return built[kind]

    return get


# --- scenes -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def scenes(spec):
    """World scenes of the validation split at the network size: ``empty`` (the world of the first
    validation seed with its traffic taken away: road, sky and buildings only), ``cluttered`` (the
    most ground-truth boxes among the first 64 seeds) and six ordinary ones."""
    from exporters.export.verify import validation_seeds
    from world import render_scene
    from world.layout import sample_layout
    from world.scene import _render, frame_at  # the world has no public "no traffic" switch

    seeds = validation_seeds(64)
    rendered = [render_scene(s, hw=spec.input_hw, lidar=False) for s in seeds]
    layout = replace(sample_layout(seeds[0]), agents=())
    empty = _render(layout, frame_at(layout, 0.0, spec.input_hw), spec.input_hw, False)
    cluttered = max(rendered, key=lambda s: len(s.boxes))
    ordinary = [s for s in rendered if s is not cluttered][:6]
    assert len(empty.boxes) == 0 and len(cluttered.boxes) >= 8
    return {"empty": empty, "cluttered": cluttered, "ordinary": ordinary}


def batch_inputs(spec, scenes) -> dict[str, np.ndarray]:
    from exporters.export.verify import scene_inputs

    frames = [scene_inputs(spec, s) for s in scenes]
    return {t.name: np.stack([f[t.name] for f in frames]) for t in spec.network_inputs}


def tritonserver_binary() -> Path | None:
    """A tritonserver that has the tensorrt backend: $PERCEPT_TRITONSERVER or the NGC image's."""
    env = os.environ.get(TRITONSERVER_ENV)
    if env:
        return Path(env)
    return NGC_TRITONSERVER if NGC_TRITONSERVER.is_file() else None
