"""The TensorRT variant: EfficientNMS_TRT replaces the NMS subgraph; the contract's outputs are kept."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from exporters.export.trt_compat import check_file, compat_stage  # noqa: E402
from exporters.export.trt_variant import PLUGIN, variant_path, write_variant  # noqa: E402
from serving.onnx_meta import read_spec  # noqa: E402
from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS  # noqa: E402


@pytest.fixture(scope="module")
def variant(exported_onnx, tmp_path_factory):
    import shutil

    src = tmp_path_factory.mktemp("variant") / "model.onnx"
    shutil.copyfile(exported_onnx["cam-n"], src)
    return src, write_variant(src)


def _by_output(graph):
    return {o: n for n in graph.node for o in n.output}


def test_variant_is_written_next_to_the_onnx():
    assert variant_path("/x/model.onnx").as_posix() == "/x/model.trt.onnx"


def test_variant_has_the_plugin_with_the_specs_attributes(variant):
    src, path = variant
    spec = read_spec(src)
    proto = onnx.load(str(path))
    plugins = [n for n in proto.graph.node if n.op_type == PLUGIN]
    assert len(plugins) == 1
    p = plugins[0]
    assert p.domain == ""  # namespace "" for the >=10.10 parser, which reads it from the domain
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in p.attribute}
    assert attrs == {
        "score_threshold": pytest.approx(spec.score_threshold),
        "iou_threshold": pytest.approx(spec.iou_threshold),
        "max_output_boxes": spec.top_k,
        "background_class": -1,
        "score_activation": 0,
        "class_agnostic": 0,
        "box_coding": 0,
    }
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"NonMaxSuppression", "ScatterND", "TopK"}  # the ONNX tail is pruned


def test_plugin_inputs_are_boxes_bn4_and_scores_bnc(variant):
    src, path = variant
    original = onnx.load(str(src))
    nms = next(n for n in original.graph.node if n.op_type == "NonMaxSuppression")
    proto = onnx.load(str(path))
    p = next(n for n in proto.graph.node if n.op_type == PLUGIN)
    assert p.input[0] == nms.input[0]  # [B, N, 4] corner boxes, as NonMaxSuppression had them
    producer = _by_output(proto.graph)[p.input[1]]
    assert producer.op_type == "Transpose" and producer.input[0] == nms.input[1]
    assert list(onnx.helper.get_attribute_value(producer.attribute[0])) == [0, 2, 1]  # [B,C,N] -> [B,N,C]


def test_variant_keeps_the_contract_outputs_and_dtypes(variant):
    src, path = variant
    original, proto = onnx.load(str(src)), onnx.load(str(path))
    assert [(o.name, o.type) for o in proto.graph.output] == [(o.name, o.type) for o in original.graph.output]
    made = _by_output(proto.graph)
    p = next(n for n in proto.graph.node if n.op_type == PLUGIN)
    num, boxes, scores, classes = p.output
    # num_detections [B,1] int32 -> the contract's [B]; rows past num_dets zeroed
    assert made[NUM_DETS].op_type == "Reshape" and made[NUM_DETS].input[0] == num
    for name, src_out in ((DET_BOXES, boxes), (DET_SCORES, scores), (DET_CLASSES, classes)):
        assert made[name].op_type == "Where" and made[name].input[1] == src_out
    init = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    zero_i = init[made[DET_CLASSES].input[2]]
    assert zero_i.dtype == np.int32  # classes stay int32, as the plugin and the contract have them
    assert init[made[DET_SCORES].input[2]].dtype == np.float32


def test_compat_check_passes_the_variant_and_tensorrt_stage_uses_it(variant):
    src, path = variant
    found = check_file(path)
    assert [f.rule for f in found if f.severity == "error"] == []
    assert "TRT008" in {f.rule for f in found}  # the plugin's 5000-candidate cap, reported
    compat_stage(src, "tensorrt")  # writes and checks the variant; raises on an error finding
    assert variant_path(src).is_file()


def test_the_plugin_input_shapes_reach_the_check_and_a_wrong_one_is_trt009(variant):
    from exporters.export.trt_compat import check_graph

    _, path = variant
    proto = onnx.load(str(path))
    plugin = next(n for n in proto.graph.node if n.op_type == PLUGIN)
    shapes = {vi.name: vi for vi in proto.graph.value_info}
    assert plugin.input[0] in shapes and plugin.input[1] in shapes  # inferred again after the edit
    boxes = shapes[plugin.input[0]].type.tensor_type.shape.dim
    assert len(boxes) == 3 and boxes[2].dim_value == 4
    assert "TRT009" not in {f.rule for f in check_graph(proto)}
    boxes[2].dim_value = 5  # a plugin fed [B,N,5]: the shape half of TRT009 must catch it
    found = [f for f in check_graph(proto) if f.rule == "TRT009"]
    assert found and "boxes shape" in found[0].line()


def test_the_tail_behind_the_plugin_gives_the_contract_in_onnx_runtime(variant):
    """The plugin stood in for by constants (ONNX Runtime does not know it): the tail reshapes
    num_detections to [B], zeroes rows past it and keeps the contract's dtypes."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import helper, numpy_helper

    src, path = variant
    spec = read_spec(src)
    proto = onnx.load(str(path))
    p = next(n for n in proto.graph.node if n.op_type == PLUGIN)
    k, rng = spec.top_k, np.random.default_rng(0)
    fake = {  # what EfficientNMS_TRT returns for a batch of 2, garbage past num_detections
        p.output[0]: np.array([[3], [0]], np.int32),
        p.output[1]: rng.random((2, k, 4), dtype=np.float32) + 1,
        p.output[2]: rng.random((2, k), dtype=np.float32) + 1,
        p.output[3]: rng.integers(1, 3, (2, k)).astype(np.int32),
    }
    nodes = [n for n in proto.graph.node if n is not p]
    consts = [
        helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))
        for name, value in fake.items()
    ]
    del proto.graph.node[:]
    proto.graph.node.extend(consts + nodes)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    images = np.zeros((2, 3, *spec.input_hw), np.uint8)
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(names, {"images": images}), strict=True))
    assert got[NUM_DETS].dtype == np.int32 and got[NUM_DETS].tolist() == [3, 0]
    assert got[DET_CLASSES].dtype == np.int32 and got[DET_BOXES].dtype == np.float32
    assert got[DET_BOXES].shape == (2, k, 4) and got[DET_SCORES].shape == (2, k)
    np.testing.assert_array_equal(got[DET_BOXES][0, :3], fake[p.output[1]][0, :3])
    np.testing.assert_array_equal(got[DET_CLASSES][0, :3], fake[p.output[3]][0, :3])
    assert not got[DET_BOXES][0, 3:].any() and not got[DET_SCORES][1].any() and not got[DET_CLASSES][1].any()
