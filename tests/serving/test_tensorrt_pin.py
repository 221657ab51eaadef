"""`percept repo build` and TensorRT engines: version pin and per-architecture default file."""

from __future__ import annotations

import json

import pytest

from serving import ngc
from serving.errors import ServingError
from serving.model_config import RepositoryOptions, network_config
from serving.repository import check_plan_sidecar, check_plan_tensorrt
from serving.spec import ModelSpec

CAM = ModelSpec("cam-n", input_hw=(128, 224))
TARGET = "11.4.0"  # a stand-in for the target's TensorRT: serving.ngc leaves it unconfirmed


@pytest.fixture
def target(monkeypatch):
    monkeypatch.setattr(ngc, "TENSORRT_VERSION", TARGET)
    return TARGET


def _plan(tmp_path, **doc):
    plan = tmp_path / "model_sm90.plan"
    plan.write_bytes(b"engine")
    doc.setdefault("spec_hash", CAM.spec_hash())
    doc.setdefault("profile", {"min": 1, "opt": 4, "max": 8})
    (tmp_path / "model_sm90.plan.json").write_text(json.dumps(doc))
    return plan


def test_a_plan_built_by_another_tensorrt_is_refused(tmp_path, target):
    plan = _plan(tmp_path, tensorrt_version="11.0.0.1")
    with pytest.raises(ServingError, match=r"built by TensorRT 11.0.0.1, but .* runs TensorRT"):
        check_plan_sidecar(plan, CAM, 8)
    with pytest.raises(ServingError, match="built by TensorRT 10.6.0"):
        check_plan_tensorrt(plan, "10.6.0", "10.5.0")  # a patch-level difference already matters


def test_a_plan_built_by_the_servers_tensorrt_is_accepted(tmp_path, target):
    check_plan_sidecar(_plan(tmp_path, tensorrt_version=target + ".18"), CAM, 8)
    check_plan_tensorrt(tmp_path / "x.plan", None)  # unknown: warned, not refused


def test_an_unpinned_target_tensorrt_is_named_and_taken_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(ngc, "TENSORRT_VERSION", None)
    monkeypatch.delenv(ngc.TENSORRT_VERSION_ENV, raising=False)
    with pytest.raises(ServingError, match=ngc.TENSORRT_VERSION_ENV):
        check_plan_tensorrt(tmp_path / "x.plan", "11.4.0.5")
    monkeypatch.setenv(ngc.TENSORRT_VERSION_ENV, "11.4.0")
    check_plan_tensorrt(tmp_path / "x.plan", "11.4.0.5")


def test_default_engine_file_is_the_newest_architecture_by_number():
    pytest.importorskip("tritonclient.grpc")
    plans = {"8.6": "model_sm86.plan", "9.0": "model_sm90.plan", "10.0": "model_sm100.plan"}
    cfg = network_config(CAM, RepositoryOptions(engine="tensorrt_plan"), plans)
    assert cfg.default_model_filename == "model_sm100.plan"  # "9.0" > "10.0" as strings
    assert dict(cfg.cc_model_filenames) == plans
