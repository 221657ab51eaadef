"""Fixtures of the compare tests: a short world drive as a video, and the shipped cam-n (the session
export) beside its FP16, INT8 and weight-perturbed variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FRAMES = 6


@pytest.fixture(scope="session")
def drive_video(tmp_path_factory, exported_onnx) -> Path:
    """Six frames of a seeded world drive at the exported model's size (192x320)."""
    from serving.onnx_meta import read_spec
    from world import render_sequence
    from world.drive import write_video

    hw = read_spec(exported_onnx["cam-n"]).input_hw
    path = tmp_path_factory.mktemp("drive") / "drive.mp4"
    write_video(path, render_sequence(3, FRAMES, hw=hw, lidar=False), 10.0, hw)
    return path


@pytest.fixture(scope="session")
def cam_variants(tmp_path_factory, exported_onnx) -> dict[str, Path]:
    """fp32 (the session export), fp16, int8 (8 calibration frames) and "perturbed": the FP32 file
    with every Conv weight multiplied by (1 + 0.3 * N(0, 1)), a deliberately worse candidate."""
    pytest.importorskip("onnx")
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
