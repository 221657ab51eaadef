"""Fixtures of the compare tests: a short world drive as a video, and the shipped cam-n (the session
export) beside its FP16, INT8 and weight-perturbed variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FRAMES = 6


@pytest.fixture(scope="session")
def drive(tmp_path_factory, exported_onnx) -> tuple[Path, Path]:
    """Six frames of a seeded world drive at the exported models' size (192x320): an MP4 and the
    same drive as a KITTI-layout sequence with LiDAR."""
    from serving.onnx_meta import read_spec
    from world.drive import DriveOptions, record_drive

    hw = read_spec(exported_onnx["cam-n"]).input_hw
    d = tmp_path_factory.mktemp("drive")
    record_drive(
        DriveOptions(seconds=FRAMES / 10, fps=10, hw=hw, seed=3), video=d / "drive.mp4", kitti=d / "seq"
    )
    return d / "drive.mp4", d / "seq"


@pytest.fixture(scope="session")
def drive_video(drive) -> Path:
    return drive[0]


@pytest.fixture(scope="session")
def cam_variants(tmp_path_factory, exported_onnx) -> dict[str, Path]:
    """fp32 (the session export), fp16, int8 (8 calibration frames) and "perturbed": the FP32 file
    with every Conv weight multiplied by (1 + 0.3 * N(0, 1)), a deliberately worse candidate."""
    pytest.importorskip(
        "exporters.export.precision", reason="the FP16/INT8 converters need the [export] extra"
    )
    import onnx
    from onnx import numpy_helper

    from exporters.export.options import CalibrationOptions
    from exporters.export.precision import to_fp16, to_int8
    from serving.onnx_meta import read_spec

    src = exported_onnx["cam-n"]
    spec = read_spec(src)
    d = tmp_path_factory.mktemp("cam-variants")
    out = {"fp32": src, "fp16": to_fp16(src, d / "model.fp16.onnx", spec)}
    out["int8"] = to_int8(src, d / "model.int8.onnx", spec, CalibrationOptions(images=8, batch=4))
    proto = onnx.load(str(src))
    conv_weights = {n.input[1] for n in proto.graph.node if n.op_type == "Conv"}
    rng = np.random.default_rng(0)
    for init in proto.graph.initializer:
        if init.name in conv_weights:
            w = numpy_helper.to_array(init)
            noisy = (w * (1 + 0.3 * rng.standard_normal(w.shape))).astype(w.dtype)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    out["perturbed"] = d / "model.perturbed.onnx"
    onnx.save(proto, str(out["perturbed"]))
    return out


@pytest.fixture(scope="session")
def cam_int8_export(tmp_path_factory, exported_onnx) -> Path:
    """The INT8 file as `percept export --precision int8` makes it when the fully quantized graph
    misses a bound: calibrated on 64 world frames, then the export's last fallback step (the 32
    layers adding the most error, exporters.export.sensitivity) kept in FP32. Only ONNX and ONNX
    Runtime: no torch, ~15 s."""
    pytest.importorskip("exporters.export.precision", reason="the INT8 converter needs the [export] extra")
    import onnx

    from exporters.export.options import CalibrationOptions
    from exporters.export.precision import exclude_layers, quantizable_nodes, to_int8
    from exporters.export.precision_stage import FALLBACK_STEPS
    from exporters.export.sensitivity import layer_sensitivity
    from serving.onnx_meta import read_spec

    src = exported_onnx["cam-n"]
    spec = read_spec(src)
    d = tmp_path_factory.mktemp("cam-int8-export")
    calibration = CalibrationOptions(images=64, batch=4)
    full = to_int8(src, d / "model.int8.all.onnx", spec, calibration)
    layers = quantizable_nodes(onnx.load(str(src), load_external_data=False))
    ranked = layer_sensitivity(src, full, spec, layers, calibration)
    kept = [name for name, _ in ranked[: FALLBACK_STEPS[-1]]]
    return exclude_layers(full, src, d / "model.int8.onnx", spec, kept)
