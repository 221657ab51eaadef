"""TensorRT compatibility check: one tiny generated graph per rule is flagged; real graphs pass."""

from __future__ import annotations

import logging

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from exporters.export.trt_compat import RULES, check_graph, enforce  # noqa: E402
from serving.errors import ExportError  # noqa: E402

F, U8, I64 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT64


def _model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dtype, dims):
    return helper.make_tensor_value_info(name, dtype, dims)


def _rules(proto) -> list[str]:
    return [f.rule for f in check_graph(proto)]


def test_every_rule_has_a_source_and_a_severity():
    for r in RULES.values():
        assert r.severity in ("error", "warning") and r.source and r.summary


def test_unsupported_operator_is_flagged():
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    m = _model([node], [_vi("x", F, [4])], [_vi("y", F, [None])])
    found = check_graph(m)
    assert [(f.rule, f.node) for f in found] == [("TRT001", "uniq")]


def test_custom_domain_operator_is_flagged():
    node = helper.make_node("MyOp", ["x"], ["y"], name="mine", domain="com.example")
    m = _model([node], [_vi("x", F, [4])], [_vi("y", F, [4])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    assert _rules(m) == ["TRT001"]


def test_scatternd_with_reduction_none_is_flagged_and_without_it_is_not():
    inputs = [_vi("d", F, [4]), _vi("u", F, [1])]
    idx = numpy_helper.from_array(np.array([[1]], np.int64), "i")
    with_attr = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="scatter", reduction="none")
    found = check_graph(_model([with_attr], inputs, [_vi("y", F, [4])], [idx]))
    assert [(f.rule, f.node) for f in found] == [("TRT002", "scatter")]
    plain = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="scatter")
    assert _rules(_model([plain], inputs, [_vi("y", F, [4])], [idx])) == []


def test_uint8_input_feeding_anything_but_a_float_cast_is_flagged():
    cast = helper.make_node("Cast", ["images"], ["f"], name="to_float", to=F)
    shape = helper.make_node("Shape", ["images"], ["s"], name="shape_of_images", start=0, end=1)
    m = _model(
        [cast, shape], [_vi("images", U8, ["batch", 3, 8, 8])], [_vi("f", F, None), _vi("s", I64, [1])]
    )
    found = [f for f in check_graph(m) if f.rule == "TRT003"]
    assert [f.node for f in found] == ["shape_of_images"]
    to_int = helper.make_node("Cast", ["images"], ["i"], name="to_int32", to=TensorProto.INT32)
    m = _model([to_int], [_vi("images", U8, [1, 3])], [_vi("i", TensorProto.INT32, [1, 3])])
    assert _rules(m) == ["TRT003"]


def test_unbindable_and_down_cast_io_types_are_flagged():
    node = helper.make_node("Identity", ["x"], ["y"], name="id")
    m = _model([node], [_vi("x", TensorProto.UINT16, [2])], [_vi("y", TensorProto.UINT16, [2])])
    assert _rules(m) == ["TRT004", "TRT004"]
    m = _model([node], [_vi("x", TensorProto.DOUBLE, [2])], [_vi("y", TensorProto.DOUBLE, [2])])
    assert _rules(m) == ["TRT005", "TRT005"]
    m = _model([node], [_vi("x", I64, [2])], [_vi("y", I64, [2])])
    assert _rules(m) == ["TRT010", "TRT010"]


def test_topk_k_must_be_a_small_constant():
    k_big = numpy_helper.from_array(np.array([4000], np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=1)
    outs = [_vi("v", F, None), _vi("i", I64, None)]
    m = _model([node], [_vi("x", F, [1, 5000])], outs, [k_big])
    assert "TRT006" in _rules(m)
    m = _model([node], [_vi("x", F, [1, 5000]), _vi("k", I64, [1])], outs)
    assert "TRT006" in _rules(m)
    ok = numpy_helper.from_array(np.array([100], np.int64), "k")
    assert "TRT006" not in _rules(_model([node], [_vi("x", F, [1, 5000])], outs, [ok]))


def test_resize_outside_tensorrts_modes_is_flagged():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    ins, outs = [_vi("x", F, [1, 1, 4, 4])], [_vi("y", F, [1, 1, 8, 8])]

    def resize(**attrs):
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", **attrs)
        return _rules(_model([node], ins, outs, [scales]))

    assert resize(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor") == []
    assert resize(mode="linear", coordinate_transformation_mode="half_pixel") == []
    assert resize(mode="cubic") == ["TRT011"]
    assert resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize") == ["TRT011"]
    assert resize(mode="linear", antialias=1) == ["TRT011"]


def test_dilated_pooling_is_flagged():
    ins, outs = [_vi("x", F, [1, 1, 8, 8])], [_vi("y", F, None)]
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2], dilations=[2, 2])
    assert _rules(_model([node], ins, outs)) == ["TRT012"]
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[2, 2])
    assert _rules(_model([node], ins, outs)) == []


def test_nonmaxsuppression_is_flagged_with_its_candidate_count():
    node = helper.make_node("NonMaxSuppression", ["b", "s"], ["sel"], name="nms")
    m = _model([node], [_vi("b", F, [1, 6000, 4]), _vi("s", F, [1, 3, 6000])], [_vi("sel", I64, [None, 3])])
    found = [f for f in check_graph(m) if f.rule == "TRT007"]
    assert len(found) == 1 and "6000" in found[0].detail and found[0].severity == "warning"


def test_efficient_nms_plugin_is_known_and_a_malformed_one_is_flagged():
    outs = ["n", "bx", "sc", "cl"]
    good = helper.make_node(
        "EfficientNMS_TRT",
        ["b", "s"],
        outs,
        name="enms",
        score_threshold=0.25,
        iou_threshold=0.45,
        max_output_boxes=100,
        background_class=-1,
        score_activation=0,
        class_agnostic=0,
        box_coding=0,
        plugin_version="1",
    )
    ins = [_vi("b", F, ["B", 10, 4]), _vi("s", F, ["B", 10, 3])]
    out_vi = [_vi(o, F, None) for o in outs]
    assert _rules(_model([good], ins, out_vi)) == ["TRT008"]  # a documented limit, not an error
    bad = helper.make_node("EfficientNMS_TRT", ["b", "s"], outs, name="enms", score_thresh=0.2)
    found = check_graph(_model([bad], [_vi("b", F, ["B", 10, 5]), ins[1]], out_vi))
    assert [f.rule for f in found] == ["TRT009", "TRT008"]
    assert "score_thresh" in found[0].detail and "[B,N,4]" in found[0].detail


def test_enforce_fails_tensorrt_naming_the_nodes_and_summarises_for_onnx(caplog):
    node = helper.make_node("Unique", ["x"], ["y"], name="uniq")
    found = check_graph(_model([node], [_vi("x", F, [4])], [_vi("y", F, [None])]))
    with pytest.raises(ExportError, match=r"uniq \(TRT001\)"):
        enforce(found, "tensorrt", "model.onnx")
    with caplog.at_level(logging.DEBUG, logger="exporters.export.trt_compat"):
        enforce(found, "onnx", "model.onnx")
    # exporting for ONNX Runtime: one summary line (a warning: the parser would refuse the graph),
    # each finding only at DEBUG (`percept -v`)
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(shown) == 1 and shown[0].levelno == logging.WARNING
    assert "1 error(s), 0 warning(s) (TRT001)" in shown[0].getMessage()
    assert any("TRT001 uniq" in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    enforce([], "tensorrt", "model.onnx")  # nothing to say, nothing raised


def test_enforce_shows_warnings_in_full_for_tensorrt_and_in_one_info_line_for_onnx(caplog):
    node = helper.make_node("Cast", ["x"], ["y"], name="cast", to=F)
    found = check_graph(_model([node], [_vi("x", I64, [4])], [_vi("y", F, [4])]))
    assert [f.severity for f in found] == ["warning"]
    with caplog.at_level(logging.INFO, logger="exporters.export.trt_compat"):
        enforce(found, "onnx", "model.onnx")
    assert [(r.levelno, "(TRT010)" in r.getMessage()) for r in caplog.records] == [(logging.INFO, True)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="exporters.export.trt_compat"):
        enforce(found, "tensorrt", "model.trt.onnx")
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "TRT010 graph input x: INT64" in caplog.records[1].getMessage()


# --- real graphs ------------------------------------------------------------------------------------
def _errors(path) -> list[str]:
    from exporters.export.trt_compat import check_file

    return [f.line() for f in check_file(path) if f.severity == "error"]


@pytest.mark.parametrize("network", ["cam-n", "fusion-n"])
def test_exported_networks_pass_the_check(exported_onnx, network):
    assert _errors(exported_onnx[network]) == []


def test_an_imported_yolop_layout_graph_passes_the_check(tmp_path):
    pytest.importorskip("torch")
    from exporters.export.import_onnx import import_onnx, load_head_spec
    from exporters.export.options import BatchProfile
    from tests.exporters.export.test_import_onnx import _heads_file, write_yolop_onnx

    source = write_yolop_onnx(tmp_path / "yolop.onnx")
    out = tmp_path / "model.onnx"
    import_onnx(source, load_head_spec(_heads_file(tmp_path)), out, BatchProfile(1, 1, 8))
    assert _errors(out) == []
    from exporters.export.trt_variant import write_variant

    assert _errors(write_variant(out)) == []  # and its TensorRT variant (EfficientNMS_TRT)


@pytest.mark.parametrize("network", ["cam-n", "fusion-n"])
def test_the_frame_graphs_pass_the_check_as_onnx_and_around_the_tensorrt_variant(
    exported_onnx, network, tmp_path
):
    """What TensorRT will execute of the frame model: Resize with computed sizes, Pad and Slice with
    computed starts, integer shape arithmetic on the frame's shape (serving.frame_graph); around the
    network, and around its TensorRT variant (EfficientNMS_TRT), which is what a frame plan parses."""
    import onnx

    from exporters.export.trt_variant import tensorrt_variant
    from serving.frame_graph import frame_model
    from serving.onnx_meta import read_spec

    spec = read_spec(exported_onnx[network])
    network_proto = onnx.load(str(exported_onnx[network]))
    for name, proto in (
        ("frame.onnx", frame_model(network_proto, spec)),
        ("frame.trt.onnx", frame_model(tensorrt_variant(network_proto, spec), spec)),
    ):
        path = tmp_path / name
        onnx.save(proto, str(path))  # no checker: EfficientNMS_TRT is not an ONNX op
        assert _errors(path) == [], name
