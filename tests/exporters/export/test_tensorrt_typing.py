"""TensorRT stage: strongly typed builds from the verified ONNX, the weak-typing path only where the
installed TensorRT has it, no torch and clear CUDA errors; stand-ins for TensorRT 10.x and 11.x."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.export.options import CalibrationOptions, TensorRTOptions
from serving.errors import SpecError
from serving.spec import ModelSpec

CAM = ModelSpec("cam-n", input_hw=(128, 224))


def test_a_reduced_precision_onnx_is_built_strongly_typed_and_only_as_its_own_precision():
    from exporters.export.tensorrt import strongly_typed
    from exporters.export.tensorrt_plan import sidecar
    from serving.errors import ExportError

    typed = TensorRTOptions(precision="int8", strongly_typed=True)  # no calibrator: the QDQ scales
    assert strongly_typed({"precision": "int8"}, typed) and not strongly_typed({}, TensorRTOptions())
    with pytest.raises(ExportError, match="the ONNX is int8-typed: build it strongly typed as int8"):
        strongly_typed({"precision": "int8"}, TensorRTOptions(precision="fp16"))
    with pytest.raises(ExportError, match="needs an FP16-typed or QDQ INT8 ONNX; this one is FP32"):
        strongly_typed({"precision": "fp32"}, TensorRTOptions(precision="fp16", strongly_typed=True))
    with pytest.raises(SpecError, match="a strongly typed build reads fp16/int8 from the ONNX"):
        TensorRTOptions(precision="int8", strongly_typed=True, calibration=CalibrationOptions())
    doc = sidecar(CAM, typed, "10.5.0", "GPU", (9, 0), "ab" * 32)
    assert doc["strongly_typed"] and doc["fallback_precision"] is None


# --- issue 22: TensorRT only, strongly typed, the weak-typing path only where it still exists ------
def _stand_in_tensorrt(version: str, weak: bool, typed_flag: bool = True):
    """What the build code reads of the tensorrt module, for a 10.x (weak typing kept) or an 11.x
    (strongly typed only) build."""
    from types import SimpleNamespace

    flags = {"TF32": 1, **({"FP16": 2, "INT8": 3} if weak else {})}
    creation = {"STRONGLY_TYPED": 1} if typed_flag else {}
    trt = SimpleNamespace(
        __version__=version,
        BuilderFlag=SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(**creation),
    )
    if weak:
        trt.IInt8EntropyCalibrator2 = object
    config = SimpleNamespace(**({"int8_calibrator": None, "set_calibration_profile": None} if weak else {}))
    return trt, config


def test_weak_typing_is_used_only_where_the_installed_tensorrt_has_it():
    from exporters.export.tensorrt import check_weak_typing, weak_typing_missing
    from serving.errors import ExportError

    trt10, config10 = _stand_in_tensorrt("10.13.3", weak=True)
    for precision in ("fp32", "fp16", "int8"):
        check_weak_typing(trt10, config10, precision)
    trt11, config11 = _stand_in_tensorrt("11.4.0", weak=False)
    assert weak_typing_missing(trt11, config11, "fp32") == []  # FP32 needs no weak typing
    assert weak_typing_missing(trt11, config11, "int8") == [
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "IBuilderConfig.int8_calibrator",
        "IBuilderConfig.set_calibration_profile",
        "IInt8EntropyCalibrator2",
    ]
    with pytest.raises(ExportError) as info:
        check_weak_typing(trt11, config11, "fp16")
    message = str(info.value)
    assert "\n" not in message and "TensorRT 11.4.0 has no weakly typed fp16 build" in message
    assert "--engine onnx --precision fp16" in message and "strongly typed" in message


def test_a_typed_build_sets_strongly_typed_where_the_enum_has_it():
    from exporters.export.tensorrt import network_flags

    trt10, _ = _stand_in_tensorrt("10.13.3", weak=True)
    assert network_flags(trt10, typed=True) == 1 << 1 and network_flags(trt10, typed=False) == 0
    trt11, _ = _stand_in_tensorrt("11.4.0", weak=False, typed_flag=False)
    assert network_flags(trt11, typed=True) == 0  # strongly typed without a flag


def test_building_and_running_engines_never_imports_torch():
    """The engine path (build, calibrate, run) needs TensorRT and cuda-python, not torch: the NGC
    images ship no torch, and torch's only wheel needs a CUDA 13 driver."""
    import ast

    root = Path(__file__).resolve().parents[3] / "exporters" / "export"
    for name in ("tensorrt.py", "tensorrt_frame.py", "calibration.py", "cuda_buffers.py", "tensorrt_plan.py"):
        tree = ast.parse((root / name).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert "torch" not in imported, name


def test_cuda_errors_become_one_export_error_line():
    from exporters.export.cuda_buffers import check
    from serving.errors import ExportError

    assert check((0, 7), "cudaGetDeviceCount") == 7
    assert check((0,), "cudaFree") is None
    with pytest.raises(ExportError, match="CUDA cudaMalloc failed: 2"):
        check((2, None), "cudaMalloc")
