"""Graph composition of `percept import-onnx`: the spec's in-graph steps around a foreign ONNX graph.

In front: uint8 NCHW ``images`` -> float -> (x - mean) / std (-> NHWC), the file's own input then
fed from it. Behind: box decoding per detection format (yolo rows with objectness, yolov8
channel-first, EfficientDet/HybridNets anchor deltas: the facts are in head_spec.py's docstring),
class-aware ``NonMaxSuppression`` and the fixed top-K (the algorithm of nms.py), argmax to a uint8
class map (lane over drivable over background; a sigmoid map thresholded, background implicit),
depth squeezed (relative inverse depth turned into metres) and cast to FP16. Tensors of the file
that carry a spec name are renamed ``original/<name>`` first. Validation of the file against its
head spec is import_validate.py's.
"""

from __future__ import annotations

import numpy as np

from exporters.export.head_spec import DetectionSpec, HeadSpec, SegmentationSpec
from exporters.export.import_validate import Layout, load_anchors
from serving.onnx_graph import GraphBuilder, rename_everywhere, tensor_attr
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, IMAGES, NUM_DETS, SEG_MASK, ModelSpec

__all__ = ["compose"]


def compose(proto, heads: HeadSpec, spec: ModelSpec, layout: Layout):
    """Add the in-graph steps to ``proto`` (modified in place and returned)."""
    from onnx import TensorProto, helper

    graph = proto.graph
    g = GraphBuilder(graph, "percept_import")
    spec_names = {t.name for t in spec.network_inputs + spec.network_outputs}
    renamed: dict[str, str] = {}
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {vi.name for vi in graph.input}
    for name in sorted(used & spec_names):
        renamed[name] = f"original/{name}"
        rename_everywhere(graph, name, renamed[name])

    def orig(name: str) -> str:
        return renamed.get(name, name)

    # front: uint8 NCHW images -> what the file expects
    h, w = layout.hw
    src_in = orig(heads.input.name)
    for vi in list(graph.input):
        if vi.name == src_in:
            graph.input.remove(vi)
    first_new = len(graph.node)
    x = IMAGES
    if heads.input.dtype == "float32":
        x = g.op("Cast", [IMAGES], to=TensorProto.FLOAT)
        mean = np.asarray(heads.input.mean, np.float32).reshape(1, 3, 1, 1)
        std = np.asarray(heads.input.std, np.float32).reshape(1, 3, 1, 1)
        x = g.op("Div", [g.op("Sub", [x, g.const(mean, "mean")]), g.const(std, "std")])
    if heads.input.layout == "NHWC":
        x = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    g.op("Identity", [x], out=src_in)
    nodes = list(graph.node)  # the front nodes go first: ONNX graphs are topologically sorted
    del graph.node[:]
    graph.node.extend(nodes[first_new:] + nodes[:first_new])
    graph.input.insert(0, helper.make_tensor_value_info(IMAGES, TensorProto.UINT8, ["batch", 3, h, w]))

    outputs = []
    if heads.detection:
        boxes, scores = _boxes_scores(g, heads.detection, orig, layout)
        _compose_nms(g, boxes, scores, spec, layout.anchors, len(heads.detection.classes))
        outputs += [NUM_DETS, DET_BOXES, DET_SCORES, DET_CLASSES]
    if heads.segmentation:
        g.op("Cast", [_compose_segmentation(g, heads.segmentation, orig)], out=SEG_MASK, to=TensorProto.UINT8)
        outputs.append(SEG_MASK)
    if heads.depth:
        dp = heads.depth
        d = g.op("Cast", [orig(dp.output)], to=TensorProto.FLOAT)
        dh, dw = spec.depth_hw
        d = g.op("Reshape", [d, g.const(np.array([-1, dh, dw], np.int64), "depth_shape")])
        if dp.scale != 1.0 or dp.kind == "relative":
            d = g.op("Mul", [d, g.const(np.array(dp.scale, np.float32))])
        if dp.kind == "relative":
            # inverse depth up to scale and shift -> metres; the floor keeps it within max_depth_m
            d = g.op("Add", [d, g.const(np.array(dp.shift, np.float32))])
            d = g.op("Max", [d, g.const(np.array(1.0 / spec.max_depth_m, np.float32))])
            d = g.op("Div", [g.const(np.array(1.0, np.float32)), d])
        g.op("Cast", [d], out=DEPTH, to=TensorProto.FLOAT16)
        outputs.append(DEPTH)

    del graph.output[:]
    dtypes = {
        "int32": TensorProto.INT32,
        "float32": TensorProto.FLOAT,
        "uint8": TensorProto.UINT8,
        "float16": TensorProto.FLOAT16,
    }
    for t in spec.network_outputs:
        graph.output.append(helper.make_tensor_value_info(t.name, dtypes[t.dtype], list(t.dims)))
    del graph.value_info[:]  # stale after the renames; shape inference rebuilds it
    return proto


def _compose_segmentation(g: GraphBuilder, sg: SegmentationSpec, orig) -> str:
    """int64 [B, H, W] class ids."""
    if sg.map and sg.activation == "sigmoid":
        logits = orig(sg.map)
        idx = g.op("ArgMax", [logits], axis=1, keepdims=1)
        best = g.op("Sigmoid", [g.op("GatherElements", [logits, idx], axis=1)])
        fg = g.op("GreaterOrEqual", [best, g.const(np.array(sg.threshold, np.float32))])
        ids = g.op(
            "Where", [fg, g.op("Add", [idx, g.const(np.array(1, np.int64))]), g.const(np.array(0, np.int64))]
        )
        return g.op("Squeeze", [ids, g.const(np.array([1], np.int64))])
    if sg.map:
        return g.op("ArgMax", [orig(sg.map)], axis=1, keepdims=0)
    assert sg.drivable is not None and sg.lane is not None
    drv = g.op("ArgMax", [orig(sg.drivable)], axis=1, keepdims=0)
    lane = g.op("ArgMax", [orig(sg.lane)], axis=1, keepdims=0)
    one, two, zero = (g.const(np.array(v, np.int64)) for v in (1, 2, 0))
    return g.op(
        "Where",
        [g.op("Equal", [lane, one]), two, g.op("Where", [g.op("Equal", [drv, one]), one, zero])],
    )


def _slice(g: GraphBuilder, x: str, start: int, end: int, axis: int) -> str:
    ints = [g.const(np.array([v], np.int64)) for v in (start, end, axis)]
    return g.op("Slice", [x, *ints])


def _boxes_scores(g: GraphBuilder, d: DetectionSpec, orig, layout: Layout) -> tuple[str, str]:
    """float32 boxes [B, N, 4] x1, y1, x2, y2 and scores [B, C, N] from the file's outputs."""
    from onnx import TensorProto

    c = len(d.classes)
    det = g.op("Cast", [orig(d.output)], to=TensorProto.FLOAT)
    if d.format == "anchors":
        assert d.scores is not None and d.anchors is not None
        boxes = _decode_anchor_deltas(g, det, _anchors(g, d, orig, layout.anchors), layout.hw)
        cls = g.op("Cast", [orig(d.scores)], to=TensorProto.FLOAT)
        if d.activation == "sigmoid":
            cls = g.op("Sigmoid", [cls])
        return boxes, g.op("Transpose", [cls], perm=[0, 2, 1])
    if d.format == "yolov8":
        det = g.op("Transpose", [det], perm=[0, 2, 1])  # [B, 4 + C, N] -> rows [B, N, 4 + C]
    if d.layout == "cxcywh":
        cxcy, wh = _slice(g, det, 0, 2, 2), _slice(g, det, 2, 4, 2)
        half = g.op("Mul", [wh, g.const(np.array(0.5, np.float32))])
        boxes = g.op("Concat", [g.op("Sub", [cxcy, half]), g.op("Add", [cxcy, half])], axis=2)
    else:
        boxes = _slice(g, det, 0, 4, 2)
    if d.format == "yolov8":
        cls = _slice(g, det, 4, 4 + c, 2)
        if d.activation == "sigmoid":
            cls = g.op("Sigmoid", [cls])
        return boxes, g.op("Transpose", [cls], perm=[0, 2, 1])
    obj, cls = _slice(g, det, 4, 5, 2), _slice(g, det, 5, 5 + c, 2)
    if d.activation == "sigmoid":
        obj, cls = g.op("Sigmoid", [obj]), g.op("Sigmoid", [cls])
    return boxes, g.op("Transpose", [g.op("Mul", [obj, cls])], perm=[0, 2, 1])


def _anchors(g: GraphBuilder, d: DetectionSpec, orig, n: int) -> str:
    """float32 [N, 4] y1, x1, y2, x2 anchors: the .npy as a constant, or the file's output."""
    from onnx import TensorProto

    npy = load_anchors(d)
    if npy is not None:
        return g.const(npy, "anchors")
    assert d.anchors is not None
    # [N, 4], [1, N, 4] or [B, N, 4] (the same anchors for every image) -> the first [N, 4]
    a = g.op("Cast", [orig(d.anchors)], to=TensorProto.FLOAT)
    a = g.op("Reshape", [a, g.const(np.array([-1, n, 4], np.int64))])
    return g.op("Gather", [a, g.const(np.array(0, np.int64))], axis=0)


def _decode_anchor_deltas(g: GraphBuilder, reg: str, anchors: str, hw: tuple[int, int]) -> str:
    """EfficientDet's BBoxTransform + ClipBoxes: deltas dy, dx, dh, dw [B, N, 4] on anchors
    y1, x1, y2, x2 [N, 4] -> x1, y1, x2, y2 [B, N, 4] clipped to the image."""
    y1a, x1a, y2a, x2a = (_slice(g, anchors, i, i + 1, 1) for i in range(4))  # [N, 1] each
    dy, dx, dh, dw = (_slice(g, reg, i, i + 1, 2) for i in range(4))  # [B, N, 1] each
    half = g.const(np.array(0.5, np.float32))
    ha, wa = g.op("Sub", [y2a, y1a]), g.op("Sub", [x2a, x1a])
    yca, xca = g.op("Mul", [g.op("Add", [y1a, y2a]), half]), g.op("Mul", [g.op("Add", [x1a, x2a]), half])
    yc = g.op("Add", [g.op("Mul", [dy, ha]), yca])
    xc = g.op("Add", [g.op("Mul", [dx, wa]), xca])
    h2 = g.op("Mul", [g.op("Mul", [g.op("Exp", [dh]), ha]), half])
    w2 = g.op("Mul", [g.op("Mul", [g.op("Exp", [dw]), wa]), half])
    corners = [g.op("Sub", [xc, w2]), g.op("Sub", [yc, h2]), g.op("Add", [xc, w2]), g.op("Add", [yc, h2])]
    boxes = g.op("Concat", corners, axis=2)
    h, w = hw
    limit = g.const(np.array([w, h, w, h], np.float32), "image_limit")
    return g.op("Min", [g.op("Max", [boxes, g.const(np.array(0.0, np.float32))]), limit])


def _compose_nms(g: GraphBuilder, boxes: str, scores: str, spec: ModelSpec, n: int, c: int) -> None:
    """Class-aware NMS and the fixed top-K (nms.py's algorithm) -> the four detection outputs."""
    from onnx import TensorProto

    k = spec.top_k
    selected = g.op(
        "NonMaxSuppression",
        [
            boxes,
            scores,
            g.const(np.array([spec.top_k], np.int64)),
            g.const(np.array([spec.iou_threshold], np.float32)),
            g.const(np.array([spec.score_threshold], np.float32)),
        ],
    )
    zero = tensor_attr(np.array([0.0], np.float32))  # float, not bool: see nms.nms_mask_onnx
    mask = g.op("ConstantOfShape", [g.op("Shape", [scores])], value=zero)
    count = g.op("Shape", [selected], start=0, end=1)
    ones = g.op("Expand", [g.const(np.array([1.0], np.float32)), count])
    keep = g.op("Greater", [g.op("ScatterND", [mask, selected, ones]), g.const(np.array(0.0, np.float32))])
    masked = g.op("Where", [keep, scores, g.const(np.array(-1.0, np.float32))])
    flat = g.op("Reshape", [masked, g.const(np.array([0, c * n], np.int64))])
    top, order = g.ops("TopK", [flat, g.const(np.array([k], np.int64))], 2, axis=1)
    valid = g.op("GreaterOrEqual", [top, g.const(np.array(0.0, np.float32))])
    num = g.op(
        "ReduceSum",
        [g.op("Cast", [valid], to=TensorProto.INT32), g.const(np.array([1], np.int64))],
        keepdims=0,
    )
    g.op("Identity", [num], out=NUM_DETS)
    zero64 = g.const(np.array(0, np.int64))
    cls_idx = g.op("Where", [valid, g.op("Div", [order, g.const(np.array(n, np.int64))]), zero64])
    g.op("Cast", [cls_idx], out=DET_CLASSES, to=TensorProto.INT32)
    box_idx = g.op("Mod", [order, g.const(np.array(n, np.int64))])
    idx3 = g.op("Unsqueeze", [box_idx, g.const(np.array([2], np.int64))])
    shape3 = g.op("Concat", [g.op("Shape", [box_idx]), g.const(np.array([4], np.int64))], axis=0)
    gathered = g.op("GatherElements", [boxes, g.op("Expand", [idx3, shape3])], axis=1)
    valid3 = g.op("Unsqueeze", [valid, g.const(np.array([2], np.int64))])
    g.op("Where", [valid3, gathered, g.const(np.array(0.0, np.float32))], out=DET_BOXES)
    g.op("Where", [valid, top, g.const(np.array(0.0, np.float32))], out=DET_SCORES)
