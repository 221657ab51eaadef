"""The TensorRT variant of an exported ONNX: ``EfficientNMS_TRT`` in place of the NMS subgraph.

ONNX Runtime keeps the exported graph (``NonMaxSuppression`` -> ``ScatterND`` keep mask -> ``TopK``,
see nms.py); TensorRT parses ``model.trt.onnx``, written from the same file by :func:`write_variant`.
Why a plugin instead of TensorRT's own ``NonMaxSuppression`` import:

* TensorRT's INMSLayer considers at most 5000 candidates per image and its selected indices have a
  data-dependent shape, which then feeds Shape -> Expand -> ScatterND (trt_compat TRT007);
* EfficientNMS_TRT has fixed-shape outputs that are this project's detection contract: boxes
  ``[B,N,4]`` + scores ``[B,N,C]`` in; ``num_detections [B,1] int32``, ``detection_boxes [B,K,4]``,
  ``detection_scores [B,K]`` (the input's float type), ``detection_classes [B,K] int32`` out, sorted
  by score, ``max_output_boxes`` per image, per-class NMS unless ``class_agnostic``
  (NVIDIA/TensorRT plugin/efficientNMSPlugin/README.md).

Semantics kept: the spec's score/IoU thresholds and top-K, corner boxes (``box_coding`` 0), scores
already activated (``score_activation`` 0), no background class (-1), class-aware NMS. Rows past
``num_dets`` are zeroed here (the README only says they are not valid), and ``num_detections`` is
reshaped to the contract's ``[B]``. What differs from ONNX (documented, reported as TRT008): only
the 5000 highest scores above the threshold reach the NMS kernel (2000 on GPUs with fewer than
65536 registers per block: EfficientNMSPlugin::initialize), a score equal to the threshold is kept
where ONNX keeps only scores above it, and a box is suppressed at IoU >= the threshold where ONNX
NonMaxSuppression suppresses only above it.

The plugin node lives in the default domain with no ``plugin_namespace``: the parser's fallback
importer looks the op_type up in the plugin registry (onnx-tensorrt docs/faq.md), and from 10.10 on
it also reads the namespace from the node's domain (onnx-tensorrt docs/Changelog.md 10.10), where
EfficientNMS_TRT's namespace is "". Such a file is for TensorRT only: onnx.checker and ONNX Runtime
do not know the op.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from serving.errors import ExportError
from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, ModelSpec

log = logging.getLogger(__name__)

PLUGIN = "EfficientNMS_TRT"
DETECTION_OUTPUTS = (NUM_DETS, DET_BOXES, DET_SCORES, DET_CLASSES)
_PREFIX = "percept_trt/"


def variant_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.trt.onnx``."""
    p = Path(onnx_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".trt.onnx")


def plugin_attributes(spec: ModelSpec) -> dict[str, float | int]:
    """EfficientNMS_TRT's parameters for ``spec`` (names and meaning: the plugin's README)."""
    return {
        "score_threshold": float(spec.score_threshold),
        "iou_threshold": float(spec.iou_threshold),
        "max_output_boxes": int(spec.top_k),
        "background_class": -1,
        "score_activation": 0,
        "class_agnostic": 0,
        "box_coding": 0,
    }


def tensorrt_variant(proto, spec: ModelSpec):
    """A copy of ``proto`` whose NMS subgraph is EfficientNMS_TRT (unchanged without detection)."""
    from onnx import ModelProto, helper, numpy_helper

    out = ModelProto()
    out.CopyFrom(proto)
    graph = out.graph
    nms = [n for n in graph.node if n.op_type == "NonMaxSuppression"]
    if not nms:
        return out
    if len(nms) != 1:
        raise ExportError(f"expected one NonMaxSuppression node, found {len(nms)}")
    boxes, scores_bcn = nms[0].input[0], nms[0].input[1]
    for n in graph.node:  # the ONNX detection tail stays behind, dead, and is pruned below
        n.output[:] = [_PREFIX + "onnx/" + o if o in DETECTION_OUTPUTS else o for o in n.output]

    k = int(spec.top_k)

    def const(name: str, value: np.ndarray) -> str:
        graph.initializer.append(numpy_helper.from_array(value, _PREFIX + name))
        return _PREFIX + name

    def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        graph.node.append(
            helper.make_node(op, inputs, outputs, name=_PREFIX + op + "_" + outputs[0], **attrs)
        )

    t = _PREFIX
    node("Transpose", [scores_bcn], [t + "scores_bnc"], perm=[0, 2, 1])
    node(
        PLUGIN,
        [boxes, t + "scores_bnc"],
        [t + "num", t + "boxes", t + "scores", t + "classes"],
        **plugin_attributes(spec),
    )
    node("Reshape", [t + "num", const("flat", np.array([-1], np.int64))], [NUM_DETS])
    rows = const("rows", np.arange(k, dtype=np.int32).reshape(1, k))
    node("Less", [rows, t + "num"], [t + "valid"])  # [1,K] < [B,1] -> [B,K]
    node("Unsqueeze", [t + "valid", const("axis2", np.array([2], np.int64))], [t + "valid3"])
    node("Where", [t + "valid3", t + "boxes", const("zero_f", np.array(0.0, np.float32))], [DET_BOXES])
    node("Where", [t + "valid", t + "scores", _PREFIX + "zero_f"], [DET_SCORES])
    node("Where", [t + "valid", t + "classes", const("zero_i", np.array(0, np.int32))], [DET_CLASSES])
    _prune(graph)
    return with_shapes(out)


def with_shapes(proto):
    """``proto`` with its value_info inferred again: the removed tail's entries are stale, and the
    compatibility check's TRT009 reads the plugin inputs' shapes ([B,N,4], [B,N,C]) from value_info
    (without it that half of the rule never ran). ONNX shape inference skips the op it does not know
    (EfficientNMS_TRT, non-strict mode) and infers everything upstream of it."""
    from onnx import shape_inference

    del proto.graph.value_info[:]
    return shape_inference.infer_shapes(proto, strict_mode=False)


def _prune(graph) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
            for a in node.attribute:  # subgraphs (If/Loop) read outer names too
                for sub in [a.g, *a.graphs]:
                    needed.update(i for n in sub.node for i in n.input)
    removed = len(graph.node) - len(keep)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    log.debug("TensorRT variant: pruned %d nodes of the ONNX NMS tail", removed)


def write_variant(onnx_path: str | Path) -> Path:
    """Write ``model.trt.onnx`` next to ``onnx_path`` (spec from its metadata); returns its path."""
    import onnx

    from serving.onnx_meta import read_spec

    path = variant_path(onnx_path)
    proto = tensorrt_variant(onnx.load(str(onnx_path)), read_spec(onnx_path))
    tmp = path.with_name(path.name + ".partial")
    onnx.save(proto, str(tmp))  # no onnx.checker: EfficientNMS_TRT is not an ONNX op
    tmp.replace(path)
    return path
