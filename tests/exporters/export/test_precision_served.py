"""A repository built by `percept repo build` from the FP16-typed or the QDQ INT8 ONNX serves on the
real tritonserver, and answers what ONNX Runtime computes in process from that same file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from exporters.export.options import CalibrationOptions, Tolerances
from serving import spec as S

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.triton

SEEDS = (1000001, 1000002, 1000003)
SAME = Tolerances(seg_agreement=0.999, depth_rel_error=1e-3)  # one file, two ONNX Runtime sessions


@pytest.fixture(scope="module")
def reduced(exported_onnx, tmp_path_factory):
    """precision -> the FP16 / INT8 ONNX of the shipped cam-n at the test size."""
    from exporters.export.onnx_export import read_onnx_spec
    from exporters.export.precision import to_fp16, to_int8
    from serving.onnx_meta import reduced_name

    src = exported_onnx["cam-n"]
    spec = read_onnx_spec(src)
    out = tmp_path_factory.mktemp("reduced")
    return {
        "fp16": to_fp16(src, out / reduced_name("fp16"), spec),
        "int8": to_int8(src, out / reduced_name("int8"), spec, CalibrationOptions(images=8, batch=4)),
    }


def test_the_tensorrt_variants_of_the_reduced_files_pass_the_parser_check(reduced):
    """What a strongly typed TensorRT build parses (EfficientNMS_TRT in place of the ONNX NMS)."""
    from exporters.export.trt_compat import compat_stage
    from exporters.export.trt_variant import variant_path

    for path in reduced.values():
        findings = compat_stage(path, "tensorrt")  # raises on an error finding
        assert variant_path(path).is_file() and all(f.severity != "error" for f in findings)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_repository_of_the_reduced_precision_onnx_serves_its_answers(reduced, tmp_path, precision):
    from exporters.export.verify import scene_inputs
    from serving.launcher import ServerOptions, TritonServer
    from serving.model_config import ensemble_name, network_model_name
    from serving.onnx_meta import read_provenance, read_spec
    from tests.serving.triton_helpers import (
        check_pipelines_answer_with_their_heads,
        infer,
        ort_session,
        output_differences,
        scenes,
    )

    path = reduced[precision]
    spec = read_spec(path)
    repo = tmp_path / "repo"
    cli = [sys.executable, "-c", "from percept.cli import main; main()", "repo", "build"]
    args = ["--onnx", str(path), "--out", str(repo), "--instances", "1", "--threads", "1"]
    proc = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    served = repo / network_model_name(spec) / "1" / "model.onnx"
    assert read_provenance(served)["precision"] == precision  # the reduced file, not the FP32 one
    session = ort_session(path)
    names = [t.name for t in spec.network_outputs]
    world = scenes(SEEDS, hw=spec.input_hw)
    frames = [scene_inputs(spec, s) for s in world]
    server = TritonServer(ServerOptions(repository=repo, startup_timeout_s=240))
    server.start()
    try:
        got, want = [], []
        for frame in frames:
            batch = {k: v[None] for k, v in frame.items()}
            got.append(infer(server.grpc_url, network_model_name(spec), batch))
            want.append(dict(zip(names, session.run(names, batch), strict=True)))
        stacked = [{k: np.concatenate([o[k] for o in outs]) for k in names} for outs in (want, got)]
        assert stacked[1][S.DEPTH].dtype == np.float16 and stacked[1][S.SEG_MASK].dtype == np.uint8
        assert int(stacked[0][S.NUM_DETS].sum()) > 0  # trained weights: detections to compare
        problems = output_differences(stacked[0], stacked[1], spec, SAME)
        assert not problems, (problems, server.log_tail(40))
        pipelines = {spec.name: ensemble_name(spec)}
        check_pipelines_answer_with_their_heads(server.grpc_url, pipelines, {spec.name: spec}, world[0].image)
    finally:
        server.stop()
