"""The one ONNX Runtime session factory."""

from __future__ import annotations

import pytest

from serving.errors import ServingError, SpecError
from serving.ort_session import create_session, session_options
from serving.spec import ModelSpec
from tests.tiny_onnx import make_tiny_onnx

ort = pytest.importorskip("onnxruntime")


def test_options_reach_the_session_options():
    opts = session_options(intra_op_threads=3, inter_op_threads=1, allow_spinning=False, optimization="basic")
    assert opts.intra_op_num_threads == 3 and opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    default = session_options()
    assert default.intra_op_num_threads == ort.SessionOptions().intra_op_num_threads  # ORT's own default
    with pytest.raises(ServingError, match="graph optimisation must be one of disable, basic, extended, all"):
        session_options(optimization="max")


def test_a_session_runs_and_an_unloadable_file_is_the_callers_error(tmp_path):
    path = make_tiny_onnx(ModelSpec(name="cam-n", input_hw=(64, 96)), tmp_path / "model.onnx")
    session = create_session(path, intra_op_threads=1, allow_spinning=False)
    assert session.get_providers() == ["CPUExecutionProvider"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(SpecError, match=r"bad.onnx: ONNX Runtime cannot load it"):
        create_session(bad, error=SpecError)
    with pytest.raises(ServingError, match="ONNX Runtime cannot load it"):
        create_session(bad)
