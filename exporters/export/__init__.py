"""Export stages, in order (each a function from artifact to artifact with explicit options):

1. ``onnx_export``  PerceptionNet -> ONNX (``graph`` wraps the network with in-graph decode + ``nms``,
   seg argmax, FP16 depth; spec + provenance in the metadata)      :func:`export_onnx`
2. ``verify``       run an artifact and compare it with PyTorch per head on world scenes
   ``trt_compat``   what the pinned TensorRT's parser would reject or compute differently (rules in
                    ``trt_rules``, each with its source): one line for ONNX, an error for TensorRT
3. ``tensorrt``     ONNX -> TensorRT engine from ``trt_variant`` (EfficientNMS_TRT in place of the ONNX
                    NMS subgraph; ``calibration`` feeds INT8), verified the same way; ``tensorrt_plan``
                    holds the pure parts (the pin, profiles, file names, sidecar)
   ``precision``    strongly typed reduced precision for `--engine onnx`: FP16-typed / QDQ INT8 ONNX,
                    verified by ``precision_stage`` with the bounds of ``tolerances``; ``sensitivity``
                    picks the INT8 layers to keep in FP32 when a bound is missed
4. ``import_onnx``  bring your own ONNX: ``head_spec`` YAML, ``import_validate`` -> ``import_compose`` (graph
   composition) -> the same contract, verified against ``import_reference`` (original file + numpy)
5. ``run``          the orchestrator behind `percept export` (options in ``options``); export and
   import stage, verify, rename and report through ``staging``
6. ``freshness``    is this export current? one cache key in the provenance, :func:`export_is_current`

Nothing here imports torch, onnx or tensorrt at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exporters.export.onnx_export import export_onnx, read_onnx_spec, read_provenance
    from exporters.export.run import run_export

_LAZY = {
    "export_onnx": "onnx_export",
    "read_onnx_spec": "onnx_export",
    "read_provenance": "onnx_export",
    "run_export": "run",
}

__all__ = ["export_onnx", "read_onnx_spec", "read_provenance", "run_export"]


def __getattr__(name: str) -> Any:
    import importlib

    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
