"""Is this export current? One key (weights, options, graph-shaping sources) recorded at export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from exporters.export import freshness
from exporters.export.options import BatchProfile, OnnxOptions

HW = (64, 96)


def test_the_key_changes_with_weights_options_size_and_seed(tmp_path):
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"weights one")
    key = freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt), HW)
    assert key == freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt), HW)
    assert key != freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt, opset=17), HW)
    assert key != freshness.export_key(
        "cam-n", OnnxOptions(checkpoint=ckpt, profile=BatchProfile(1, 2, 4)), HW
    )
    assert key != freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt), (96, 128))
    assert key != freshness.export_key("fusion-n", OnnxOptions(checkpoint=ckpt), HW)
    assert key == freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt), HW, seed=5)  # weights win
    assert freshness.export_key("cam-n", None, HW, 0) != freshness.export_key("cam-n", None, HW, 1)
    ckpt.write_bytes(b"weights two")  # same path, retrained: a different key
    assert key != freshness.export_key("cam-n", OnnxOptions(checkpoint=ckpt), HW)


def test_a_change_to_the_nms_code_changes_the_source_hash(tmp_path, monkeypatch):
    for source in freshness.GRAPH_SOURCES:
        src, dst = freshness.ROOT / source, tmp_path / source
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    monkeypatch.setattr(freshness, "ROOT", tmp_path)
    before = freshness.graph_sources_hash.__wrapped__()
    nms = tmp_path / "exporters" / "export" / "nms.py"
    nms.write_text(nms.read_text() + "\n# a change to the NMS\n")
    assert freshness.graph_sources_hash.__wrapped__() != before


def test_missing_or_foreign_files_are_not_current(tmp_path):
    assert not freshness.export_is_current(tmp_path / "none.onnx", "cam-n")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    assert not freshness.export_is_current(tmp_path / "junk.onnx", "cam-n")


def test_export_if_stale_reuses_a_current_file_and_redoes_a_stale_one(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from serving.onnx_meta import read_provenance

    path = tmp_path / "cam-n" / "model.onnx"
    options = OnnxOptions(profile=BatchProfile(1, 1, 2))
    freshness.export_if_stale("cam-n", path, options, input_hw=HW)
    prov = read_provenance(path)
    assert prov[freshness.KEY] == freshness.export_key("cam-n", options, HW)
    assert prov["batch_profile"] == {"min": 1, "opt": 1, "max": 2}
    assert freshness.export_is_current(path, "cam-n", options, HW)
    assert not freshness.export_is_current(path, "cam-n", options, HW, seed=1)
    stamp = path.stat().st_mtime_ns
    assert freshness.export_if_stale("cam-n", path, options, input_hw=HW) == path
    assert path.stat().st_mtime_ns == stamp  # current: not exported again
    monkeypatch.setattr(freshness, "graph_sources_hash", lambda: "the NMS code changed")
    assert not freshness.export_is_current(path, "cam-n", options, HW)
    calls = []
    monkeypatch.setattr(
        "exporters.export.onnx_export.export_onnx", lambda *a, **k: calls.append(a) or Path(a[1])
    )
    freshness.export_if_stale("cam-n", path, options, input_hw=HW)
    assert len(calls) == 1
