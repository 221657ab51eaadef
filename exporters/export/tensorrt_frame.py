"""The frame engine: ``frame_sm<cc>.plan``, the frame model's TensorRT engine (serving.frame_graph).

Built after the network's engine passed its verification, from the network's TensorRT variant with
the frame graph around it (``frame.trt.onnx``), with a profile over frame sizes
(tensorrt_plan.FRAME_PROFILE_HW), and checked against the frame graph of the network ONNX on ONNX
Runtime before it is renamed into place. TensorRT cannot run on the project's machines: everything
here but the build itself is exercised there with ONNX Runtime standing in for the engine.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from exporters.export.options import TensorRTOptions
from exporters.export.tensorrt import build_engine, strongly_typed, trt_runner
from exporters.export.tensorrt_plan import FRAME_PROFILE_HW
from exporters.export.tolerances import TOLERANCES
from serving.errors import ExportError
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

FRAME_VERIFY_SCENES = 4  # world scenes at FRAME_PROFILE_HW's opt size: the frame graph's own check


def write_frame_variant(network_variant: Path, spec: ModelSpec) -> Path:
    """``frame.trt.onnx`` beside the network's TensorRT variant: the frame graph around it (what the
    frame engine parses), through the compatibility check (error findings fail the export)."""
    import onnx

    from exporters.export.trt_compat import check_file, enforce
    from serving.frame_graph import frame_model

    path = network_variant.with_name("frame.trt.onnx")
    onnx.save(frame_model(onnx.load(str(network_variant)), spec), str(path))  # no checker: a plugin op
    enforce(check_file(path), "tensorrt", path.name)
    return path


def build_frame_engine(
    onnx_path: Path, out_dir: Path, options: TensorRTOptions, spec: ModelSpec
) -> Path | None:
    """``frame_sm<cc>.plan``: built from the verified network's TensorRT variant with the frame graph
    around it, checked against the frame graph of the network ONNX on ONNX Runtime (the precision's
    bounds) and renamed into place; ExportError when it disagrees. None (with a warning) where the
    build would need the implicit INT8 calibrator, which feeds network inputs, not frames: the
    repository then serves the frame graph on the onnxruntime backend."""
    from exporters.export.onnx_export import read_provenance

    if options.precision == "int8" and not strongly_typed(read_provenance(onnx_path), options):
        log.warning("no frame engine for an implicitly calibrated INT8 build: export a Q/DQ ONNX for one")
        return None
    staging = build_engine(onnx_path, out_dir, spec, options, frame=True)
    staging_sidecar = staging.with_name(staging.name + ".json")
    final = staging.with_name(staging.name[: -len(".unverified")])
    try:
        runner = trt_runner(staging, spec, options.profile, frame=True)
        problems = frame_engine_differences(runner, onnx_path, spec, options.precision)
        if problems:
            raise ExportError(
                f"the frame engine {final.name} disagrees with its frame graph on ONNX Runtime: "
                + "; ".join(problems[:5])
            )
        os.replace(staging, final)
        os.replace(staging_sidecar, final.with_name(final.name + ".json"))
    finally:
        staging.unlink(missing_ok=True)
        staging_sidecar.unlink(missing_ok=True)
    log.info("frame engine %s verified against the frame graph", final.name)
    return final


def frame_engine_differences(runner, onnx_path: Path, spec: ModelSpec, precision: str) -> list[str]:
    """A frame engine's ``runner`` (frame inputs -> outputs) against the frame graph of ``onnx_path``
    on ONNX Runtime, on world scenes at the frame profile's opt size (their LiDAR projected as the
    decode step does), with ``precision``'s bounds; empty when they agree."""
    from exporters.export.output_compare import output_differences
    from serving.frame_graph import write_frame_onnx
    from serving.ort_session import create_session
    from serving.processing import decode_step
    from world import render_scene

    hw = FRAME_PROFILE_HW[1]
    scenes = [render_scene(900 + i, hw=hw, lidar=spec.fusion) for i in range(FRAME_VERIFY_SCENES)]
    requests = []  # one request per scene, as the decode step gets them (point counts differ)
    for s in scenes:
        lidar = (np.asarray(s.points)[None], np.asarray(s.projection)[None]) if spec.fusion else (None, None)
        requests.append(decode_step(spec, [(s.image, hw)], *lidar))
    feeds = {k: np.concatenate([r[k] for r in requests]) for k in requests[0]}
    session = create_session(write_frame_onnx(onnx_path, onnx_path.with_name("frame.onnx"), spec))
    names = [o.name for o in session.get_outputs()]
    ref = dict(zip(names, session.run(names, feeds), strict=True))
    return output_differences(ref, runner(feeds), spec, TOLERANCES[precision])
