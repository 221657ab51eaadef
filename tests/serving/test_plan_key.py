"""The plan cache key: what a TensorRT plan is valid for, and the refusal of a plan built for another."""

from __future__ import annotations

import json

import pytest

from serving.errors import ServingError
from serving.plan_key import PlanKey, check_plan_key, main, parse_gpu_line, plan_key, stale_reason

SHA = "ab" * 32


def _key(**changes) -> PlanKey:
    args = {
        "onnx_sha256": SHA,
        "tensorrt_version": "11.4.0.7",
        "compute_capability": (9, 0),
        "gpu_name": "NVIDIA H100 80GB HBM3 ",
        "precision": "fp16",
        "profile": (1, 4, 8),
    }
    return plan_key(**{**args, **changes})


def _plan(tmp_path, key: PlanKey | None):
    plan = tmp_path / "model_sm90.plan"
    plan.write_bytes(b"engine")
    doc = {"plan_key": key.as_dict()} if key else {}
    plan.with_name(plan.name + ".json").write_text(json.dumps(doc))
    return plan


def test_the_key_is_normalised_and_round_trips_through_the_sidecar():
    key = _key()
    assert key.tensorrt_version == "11.4.0" and key.gpu_name == "NVIDIA H100 80GB HBM3"
    assert key.compute_capability == "9.0"
    assert PlanKey.from_dict(json.loads(json.dumps(key.as_dict()))) == key
    assert key.digest() == _key(tensorrt_version="11.4.0.99").digest()  # the build number: not part of it


@pytest.mark.parametrize(
    "change",
    [
        {"onnx_sha256": "cd" * 32},
        {"tensorrt_version": "11.5.0"},
        {"compute_capability": (8, 9)},
        {"gpu_name": "NVIDIA L4"},
        {"precision": "int8"},
        {"profile": (1, 8, 16)},
    ],
    ids=["onnx", "tensorrt", "compute-capability", "gpu-name", "precision", "profile"],
)
def test_a_plan_whose_key_differs_in_any_field_is_refused_naming_it(tmp_path, change):
    plan = _plan(tmp_path, _key())
    field = next(iter(change))
    with pytest.raises(ServingError, match=rf"built for another target \({field}: "):
        check_plan_key(plan, _key(**change))
    assert _key().digest() != _key(**change).digest()


def test_a_matching_plan_passes_and_missing_plans_or_keys_are_stale(tmp_path):
    check_plan_key(_plan(tmp_path, _key()), _key())
    assert "has no plan_key" in (stale_reason(_plan(tmp_path, None), _key()) or "")
    assert "does not exist" in (stale_reason(tmp_path / "none.plan", _key()) or "")


def test_a_key_that_cannot_describe_a_plan_is_refused():
    with pytest.raises(ServingError, match="precision"):
        _key(precision="bf16")
    with pytest.raises(ServingError, match="profile"):
        _key(profile=(4, 2, 8))


def test_nvidia_smi_answers_are_read_and_odd_ones_refused():
    assert parse_gpu_line("NVIDIA H100 80GB HBM3, 9.0\n") == ("NVIDIA H100 80GB HBM3", (9, 0))
    assert parse_gpu_line("Tesla T4, 7.5") == ("Tesla T4", (7, 5))
    with pytest.raises(ServingError, match="unexpected nvidia-smi answer"):
        parse_gpu_line("[N/A]")


def test_the_pod_check_exits_with_one_line_where_the_plan_is_stale(tmp_path, monkeypatch, capsys):
    import serving.plan_key as pk

    onnx = tmp_path / "model.fp16.onnx"
    onnx.write_bytes(b"onnx")
    monkeypatch.setattr(pk, "node_gpu", lambda index=0: ("NVIDIA H100 80GB HBM3", (9, 0)))
    good = plan_key(pk.file_sha256(onnx), "11.4.0", (9, 0), "NVIDIA H100 80GB HBM3", "fp16", (1, 4, 8))
    _plan(tmp_path, good)
    args = ["check", str(tmp_path), "--onnx", str(onnx), "--precision", "fp16", "--profile", "1,4,8"]
    assert main([*args, "--tensorrt-version", "11.4.0"]) == 0
    assert main([*args, "--tensorrt-version", "11.5.0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorrt_version: 11.4.0 -> 11.5.0" in err[0]
