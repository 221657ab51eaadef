"""ONNX stage: the exported file has exactly the spec's tensors and behaves like the PyTorch model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from exporters.export.options import BatchProfile, OnnxOptions
from serving.errors import ExportError
from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, ModelSpec
from tests.exporters.export.fixtures import lively_network, random_inputs

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

ONNX_TYPES = {
    "uint8": "tensor(uint8)",
    "int32": "tensor(int32)",
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
}


@pytest.fixture(scope="module", params=["cam-n", "fusion-n"])
def exported(request, tmp_path_factory):
    from exporters.export import export_onnx

    net = lively_network(request.param)
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    export_onnx(net, path, OnnxOptions(profile=BatchProfile(1, 2, 4)), provenance_extra={"seed": 0})
    return net, path


def _run(path, inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


def test_onnx_tensors_equal_the_spec(exported):
    net, path = exported
    spec: ModelSpec = net.spec
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for got, want in ((sess.get_inputs(), spec.network_inputs), (sess.get_outputs(), spec.network_outputs)):
        assert [t.name for t in got] == [t.name for t in want]
        for g, w in zip(got, want, strict=True):
            assert g.type == ONNX_TYPES[w.dtype], g.name
            assert list(g.shape) == list(w.dims), g.name  # "batch" is the dynamic axis


def test_onnx_checker_opset_and_metadata_round_trip(exported):
    import onnx

    from exporters.export import read_onnx_spec, read_provenance
    from exporters.export.onnx_export import file_sha256

    net, path = exported
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert read_onnx_spec(path) == net.spec
    from serving.onnx_meta import read_spec  # the serving side's own reader (no exporters import)

    assert read_spec(path) == net.spec
    prov = read_provenance(path)
    assert prov["network"] == net.spec.name
    assert prov["input_hw"] == list(net.spec.input_hw)
    assert prov["det_classes"] == list(net.spec.det_classes)
    assert prov["seed"] == 0 and prov["checkpoint_sha256"] is None
    assert prov["torch"] and prov["onnx"] and prov["exported_at"]
    assert {p.key for p in proto.metadata_props} >= {"perception_spec", "provenance"}
    assert json.loads(next(p.value for p in proto.metadata_props if p.key == "perception_spec"))["name"] == (
        net.spec.name
    )
    assert len(file_sha256(path)) == 64


def test_onnx_matches_pytorch_eager(exported):
    from exporters.export.graph import build_export_graph, run_eager

    net, path = exported
    inputs = random_inputs(net.spec, 2, seed=1)
    ref = run_eager(build_export_graph(net, net.spec), inputs)
    got = _run(path, inputs)
    assert (got[NUM_DETS] == ref[NUM_DETS]).all() and ref[NUM_DETS].min() > 0
    np.testing.assert_allclose(got[DET_SCORES], ref[DET_SCORES], atol=1e-5)
    np.testing.assert_allclose(got[DET_BOXES], ref[DET_BOXES], atol=1e-3)
    assert (got[DET_CLASSES] == ref[DET_CLASSES]).all()
    assert (got["seg_mask"] == ref["seg_mask"]).mean() > 0.999
    np.testing.assert_allclose(got["depth"].astype(np.float32), ref["depth"].astype(np.float32), rtol=1e-3)


def test_dynamic_batch_gives_per_image_identical_results(exported):
    net, path = exported
    batch3 = random_inputs(net.spec, 3, seed=2)
    out3 = _run(path, batch3)
    for i in range(3):
        out1 = _run(path, {k: v[i : i + 1] for k, v in batch3.items()})
        for name, value in out1.items():
            assert np.array_equal(value[0], out3[name][i]), (name, i)


def test_rows_past_num_dets_are_zero_and_sorted(exported):
    net, path = exported
    out = _run(path, random_inputs(net.spec, 3, seed=3))
    k = net.spec.top_k
    for i, n in enumerate(out[NUM_DETS]):
        assert 0 < n <= k
        assert not out[DET_BOXES][i, n:].any() and not out[DET_SCORES][i, n:].any()
        assert not out[DET_CLASSES][i, n:].any()
        scores = out[DET_SCORES][i, :n]
        assert (scores > net.spec.score_threshold).all() and (np.diff(scores) <= 0).all()
        assert (out[DET_CLASSES][i, :n] < len(net.spec.det_classes)).all()


def test_nms_leaves_no_same_class_overlap_above_threshold(exported):
    from exporters.export.verify import box_iou

    net, path = exported
    out = _run(path, random_inputs(net.spec, 2, seed=4))
    for i, n in enumerate(out[NUM_DETS]):
        boxes, classes = out[DET_BOXES][i, :n], out[DET_CLASSES][i, :n]
        for c in np.unique(classes):
            iou = box_iou(boxes[classes == c], boxes[classes == c])
            np.fill_diagonal(iou, 0)
            assert iou.max(initial=0) <= net.spec.iou_threshold + 1e-6


def test_greedy_nms_reference_on_a_hand_made_case():
    from exporters.export.nms import greedy_nms_mask

    boxes = np.array([[[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7, 0.1], [0.2, 0.95, 0.3, 0.5]]], np.float32)  # [B=1, C=2, N=4]
    keep = greedy_nms_mask(boxes, scores, max_per_class=10, iou_threshold=0.5, score_threshold=0.25)
    # class 0: box 1 overlaps box 0 (IoU 0.82) and is dropped, box 3 is under the score threshold
    assert keep[0, 0].tolist() == [True, False, True, False]
    # class 1: box 1 wins, box 3 (IoU 0.82 with it) dropped, box 0 under threshold, box 2 kept
    assert keep[0, 1].tolist() == [False, True, True, False]
    capped = greedy_nms_mask(boxes, scores, max_per_class=1, iou_threshold=0.5, score_threshold=0.25)
    assert capped.sum(axis=2).tolist() == [[1, 1]]


def test_no_candidate_gives_zero_detections(tmp_path):
    """Every score under the threshold: NonMaxSuppression selects nothing, outputs are all zero."""
    from exporters.export import export_onnx
    from exporters.networks import build_network

    net = build_network("cam-n-det", (64, 96)).eval()  # its prior init scores ~1e-4 < 0.25
    path = export_onnx(net, tmp_path / "m.onnx", OnnxOptions(profile=BatchProfile(1, 1, 2)))
    out = _run(path, random_inputs(net.spec, 2))
    assert out[NUM_DETS].tolist() == [0, 0]
    assert not out[DET_BOXES].any() and not out[DET_SCORES].any()


def test_corrupt_onnx_is_one_clear_error(tmp_path):
    from exporters.export import read_onnx_spec
    from exporters.export.onnx_export import check_onnx

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ExportError, match="not a readable ONNX file|ONNX check failed"):
        read_onnx_spec(bad)
    with pytest.raises(ExportError, match="ONNX check failed"):
        check_onnx(bad, ModelSpec("cam-n"))


def test_export_failure_leaves_no_file(tmp_path):
    from exporters.export import export_onnx

    net = lively_network("cam-n", (64, 96))
    object.__setattr__(net, "spec", ModelSpec("cam-n", input_hw=(64, 96), top_k=10_000))
    with pytest.raises(ExportError, match="top_k 10000 exceeds"):
        export_onnx(net, tmp_path / "model.onnx", OnnxOptions())
    assert list(tmp_path.iterdir()) == []


def test_verification_matches_degenerate_boxes_by_their_corners():
    from exporters.export.options import Tolerances
    from exporters.export.verify import DetectionStats, compare_detections

    spec = ModelSpec("cam-n", input_hw=(64, 96), top_k=3)

    def out(boxes, scores):
        n = len(scores)
        b = np.zeros((1, 3, 4), np.float32)
        s = np.zeros((1, 3), np.float32)
        b[0, :n], s[0, :n] = boxes, scores
        return {
            NUM_DETS: np.array([n], np.int32),
            DET_BOXES: b,
            DET_SCORES: s,
            DET_CLASSES: np.zeros((1, 3), np.int32),
        }

    flat = [[10, 20, 50, 20], [0, 0, 8, 8]]  # a zero-height box and a normal one
    stats = DetectionStats()
    compare_detections(out(flat, [0.9, 0.8]), out(flat, [0.9, 0.8]), 0, spec, Tolerances(), stats)
    assert (stats.matched, stats.unmatched) == (2, 0)
    moved = [[10, 25, 50, 25], [0, 0, 8, 8]]
    stats = DetectionStats()
    compare_detections(out(flat, [0.9, 0.8]), out(moved, [0.9, 0.8]), 0, spec, Tolerances(), stats)
    assert (stats.matched, stats.unmatched) == (1, 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["cam-s", "cam-m", "fusion-s", "fusion-m", "cam-n-det", "cam-n-seg", "cam-n-depth"]
)
def test_every_registered_network_exports_to_its_spec(name, tmp_path):
    """The rest of the registry (cam-n and fusion-n are covered above) at a small size."""
    from exporters.export import export_onnx

    net = lively_network(name, (64, 96))
    path = export_onnx(net, tmp_path / "model.onnx", OnnxOptions(profile=BatchProfile(1, 1, 2)))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(o.name, list(o.shape)) for o in sess.get_outputs()] == [
        (t.name, list(t.dims)) for t in net.spec.network_outputs
    ]
    outputs = _run(path, random_inputs(net.spec, 2))
    for t in net.spec.network_outputs:
        assert outputs[t.name].dtype == np.dtype(t.dtype) and outputs[t.name].shape[0] == 2
