"""Strongly typed reduced precision: the verified FP32 ONNX -> an FP16-typed ONNX or a QDQ INT8 ONNX.

TensorRT is moving to strongly typed networks (10.12 deprecates, 11 removes the FP16/INT8 builder
flags and implicit calibrators): the precision travels in the ONNX itself, and the same file runs in
ONNX Runtime, so it is verified here on CPU like the FP32 one.

* FP16 (``onnxruntime.transformers.float16``): the network body in FP16; the uint8 input and its
  Cast, and every post-processing node (box decode, NMS, top-K, argmax, the FP16 depth cast) stay
  as exported, so the outputs keep the spec's dtypes.
* INT8 (``onnxruntime.quantization.quantize_static``): explicit quantization as TensorRT wants it:
  QDQ format, signed INT8 with zero-point 0 for activations (symmetric) and weights (per channel,
  axis 0), Q/DQ only at the inputs of Conv/MatMul, biases left in FP32 (TensorRT has no INT32 DQ),
  post-processing excluded. Calibration (entropy or percentile) runs over the calibration feed
  (world frames from the training seeds, or a user's image folder) of :mod:`calibration`.

The post-processing is told apart from the network by the exporter's name scopes: the torch
exporter stores each node's module path (``pkg.torch.onnx.name_scopes``); nodes inside the
``net`` submodule of :class:`exporters.export.graph.ExportGraph` are the network, the rest is
post-processing.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Iterable
from pathlib import Path

from exporters.export.options import CalibrationOptions
from serving.errors import ExportError, MissingDependencyError, SpecError
from serving.spec import PROVENANCE_KEY, ModelSpec

log = logging.getLogger(__name__)

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
NETWORK_SCOPE = "net"  # ExportGraph.net
QUANTIZED_OPS = ("Conv", "MatMul")
CALIBRATION_METHODS = ("entropy", "percentile")
ONNX_UINT8 = 2


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc
    return onnx


def _in_network(node) -> bool | None:
    """True inside ExportGraph.net, False outside, None when the node carries no name scopes."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return len(scopes) > 1 and scopes[1] == NETWORK_SCOPE
    return None


def postprocessing_nodes(proto) -> list[str]:
    """Names of the nodes outside the network body (ExportGraph's decode/NMS/argmax/casts).

    ExportError when the graph carries no name scopes (not written by :mod:`onnx_export`)."""
    seen = [(node.name, _in_network(node)) for node in proto.graph.node]
    if not any(flag is True for _, flag in seen):
        raise ExportError(
            "the ONNX carries no torch exporter name scopes: cannot tell the network from its "
            "post-processing (reduced precision needs a file written by `percept export`)"
        )
    # a node without scopes (added by an optimizer pass) is kept at full precision
    return [name for name, flag in seen if flag is not True]


def input_casts(proto) -> list[str]:
    """The Cast nodes that read a uint8 graph input (TensorRT: a uint8 input may only feed a Cast)."""
    uint8 = {v.name for v in proto.graph.input if v.type.tensor_type.elem_type == ONNX_UINT8}
    return [n.name for n in proto.graph.node if n.op_type == "Cast" and set(n.input) & uint8]


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` so that every node follows its producers (the FP16 converter appends
    the Cast nodes it inserts at the end, which onnx.checker rejects)."""
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ExportError(f"the converted graph has a cycle or a dangling input at {rest[0].name}")
        pending = rest
    copies = [type(n)() for n in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


def _finish(proto, path: Path, spec: ModelSpec, precision: str, extra: dict) -> Path:
    """Provenance says the precision; checked against the spec (names, dtypes, dims) and written."""
    import json

    from exporters.export.onnx_export import save_checked, set_metadata

    meta = {p.key: p.value for p in proto.metadata_props}
    prov = json.loads(meta[PROVENANCE_KEY]) if PROVENANCE_KEY in meta else {}
    prov.update({"precision": precision, **extra})
    set_metadata(proto, spec, prov)
    save_checked(proto, Path(path), spec)
    return Path(path)


# --- FP16 ------------------------------------------------------------------------------------------
def to_fp16(src: str | Path, dst: str | Path, spec: ModelSpec) -> Path:
    """The FP32 export ``src`` as an FP16-typed ONNX at ``dst`` (post-processing kept as is)."""
    onnx = _onnx()
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "export") from exc
    proto = onnx.load(str(src))
    blocked = sorted(set(postprocessing_nodes(proto)) | set(input_casts(proto)))
    try:
        proto = convert_float_to_float16(
            proto,
            keep_io_types=True,  # float graph I/O (lidar_depth) stays FP32, as the contract says
            op_block_list=list(DEFAULT_OP_BLOCK_LIST),
            node_block_list=blocked,
        )
    except Exception as exc:
        raise ExportError(f"FP16 conversion of {src} failed: {type(exc).__name__}: {exc}") from exc
    topological_sort(proto.graph)
    del proto.graph.value_info[:]  # the converter leaves stale FP32 value infos; re-inferred on save
    log.info("fp16: %d post-processing / input nodes kept at their exported types", len(blocked))
    return _finish(proto, Path(dst), spec, "fp16", {"fp32_nodes": len(blocked)})


# --- INT8 ------------------------------------------------------------------------------------------
class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over :func:`calibration.calibration_batches`.

    onnxruntime's histogram calibrators (entropy, percentile) keep every frame's intermediate
    outputs until the end of ``collect_data`` (``CalibMaxIntermediateOutputs`` is read by MinMax
    only): measured at 384x640, 128 frames held 8.5 GB and 512 frames ran a 24 GB machine out of
    memory. With ``__len__`` and ``set_range`` quantize_static calls ``collect_data`` once per
    ``CalibStridedMinMax`` batches instead, and the histograms are merged chunk by chunk.
    """

    def __init__(self, spec: ModelSpec, options: CalibrationOptions) -> None:
        from exporters.export.calibration import calibration_batches

        self.batches = calibration_batches(spec, options)
        self.total = options.images // options.batch  # world frames: exactly this many batches
        self.stop = self.total
        self.count = 0

    def __len__(self) -> int:
        return self.total

    def set_range(self, start_index: int, end_index: int) -> None:
        self.stop = end_index  # ranges come in order, each starting where the last one ended

    def get_next(self):
        if self.count >= self.stop:
            return None
        batch = next(self.batches, None)
        if batch is not None:
            self.count += 1
        return batch


def calibration_stride(batches: int, most: int = 4) -> int:
    """Batches per ``collect_data`` call: the largest divisor of ``batches`` up to ``most``
    (quantize_static wants the total divisible by it)."""
    return max(d for d in range(1, most + 1) if batches % d == 0)


def quantizable_nodes(proto, exclude: Iterable[str] = ()) -> list[str]:
    """Conv/MatMul nodes of the network body, minus ``exclude`` (kept in higher precision)."""
    post = set(postprocessing_nodes(proto)) | set(exclude)
    return [n.name for n in proto.graph.node if n.op_type in QUANTIZED_OPS and n.name not in post]


def to_int8(
    src: str | Path,
    dst: str | Path,
    spec: ModelSpec,
    calibration: CalibrationOptions,
    exclude: Iterable[str] = (),
) -> Path:
    """The FP32 export ``src`` as a QDQ INT8 ONNX at ``dst``; ``exclude`` names Conv/MatMul nodes
    kept in FP32 (:func:`keep_fp32` on the fully quantized graph: one calibration either way)."""
    onnx = _onnx()
    proto, extra = _quantize(src, spec, calibration, Path(dst))
    exclude = sorted(exclude)
    if exclude:
        fp32 = onnx.load(str(src))
        proto = keep_fp32(proto, fp32, exclude)
        extra["int8_nodes"] = len(quantizable_nodes(fp32, exclude))
    extra["fp32_kept"] = exclude
    return _finish(proto, Path(dst), spec, "int8", extra)


def _quantize(src: str | Path, spec: ModelSpec, calibration: CalibrationOptions, dst: Path):
    """Every Conv/MatMul of the network body quantized: (QDQ ModelProto, provenance extra)."""
    onnx = _onnx()
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "export") from exc
    if calibration.method not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}")
    proto = onnx.load(str(src))
    nodes = quantizable_nodes(proto)
    method = CalibrationMethod.Entropy if calibration.method == "entropy" else CalibrationMethod.Percentile
    tmp = dst.with_name(dst.name + ".qdq")
    reader = _Reader(spec, calibration)
    if len(reader) == 0:
        raise SpecError(f"calibration needs at least one batch of {calibration.batch} images")
    # bounded memory: a histogram chunk every few batches (see _Reader); world frames only, where the
    # number of batches is known before the first one is rendered
    stride = {"CalibStridedMinMax": calibration_stride(len(reader))} if calibration.source == "world" else {}
    log.info("int8: %d Conv/MatMul nodes, %s calibration", len(nodes), calibration.method)
    try:
        quantize_static(
            proto,
            tmp,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_quantize=nodes,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={
                "ActivationSymmetric": True,  # TensorRT: zero-point 0
                "WeightSymmetric": True,
                "QuantizeBias": False,  # TensorRT dequantizes INT8 only; it fuses the FP32 bias
                # Q/DQ at the inputs of Conv/MatMul only (TensorRT's placement): a Q/DQ on a conv
                # output would split Conv+SiLU fusion and quantize the heads' raw predictions
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
                "CalibPercentile": 99.99,
                **stride,
            },
        )
        quantized = onnx.load(str(tmp))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"INT8 quantization of {src} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    extra = {
        "calibration": {
            "source": str(calibration.source),
            "method": calibration.method,
            "batches": reader.count,
        },
        "int8_nodes": len(nodes),
    }
    return quantized, extra


def keep_fp32(qdq, fp32, layers: Iterable[str]):
    """The QDQ graph ``qdq`` with the Conv/MatMul nodes ``layers`` back in FP32: each reads its
    FP32 activation and weights (from ``fp32``, the graph it was quantized from) instead of their
    DequantizeLinear outputs; Q/DQ nodes and quantized weights nobody reads any more are dropped.
    The other layers keep the scales of the one calibration (no recalibration per fallback step)."""
    keep = set(layers)
    source = {n.name: n for n in fp32.graph.node if n.name in keep}
    missing = keep - source.keys()
    if missing:
        raise ExportError(f"cannot keep in FP32: no node {sorted(missing)[0]} in the FP32 graph")
    weights = {t.name: t for t in fp32.graph.initializer}
    have = {t.name for t in qdq.graph.initializer}
    for node in qdq.graph.node:
        if node.name in keep:
            del node.input[:]
            node.input.extend(source[node.name].input)
            for name in source[node.name].input:
                if name in weights and name not in have:
                    qdq.graph.initializer.append(weights[name])
                    have.add(name)
    _unquantize_unused(qdq.graph, keep)
    _drop_unread(qdq.graph)
    return qdq


def _unquantize_unused(graph, keep: set[str]) -> None:
    """onnxruntime points *every* reader of a quantized tensor at its DequantizeLinear output (a
    residual Add, a Concat); a Q/DQ pair that no quantized layer reads any more is taken out, so
    those readers see the FP32 tensor as they would had the layers never been quantized."""
    producers = {o: n for n in graph.node for o in n.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    for dq in [n for n in graph.node if n.op_type == "DequantizeLinear"]:
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue  # a weight's DequantizeLinear: dropped with its layer
        users = readers.get(dq.output[0], [])
        if any(u.op_type in QUANTIZED_OPS and u.name not in keep for u in users):
            continue
        for user in users:
            for i, name in enumerate(user.input):
                if name == dq.output[0]:
                    user.input[i] = q.input[0]


def exclude_layers(
    int8: str | Path, fp32: str | Path, dst: str | Path, spec: ModelSpec, layers: Iterable[str]
) -> Path:
    """The calibrated QDQ file ``int8`` with ``layers`` kept in FP32 (:func:`keep_fp32`), checked
    and written to ``dst``; its provenance names them (``fp32_kept``)."""
    onnx = _onnx()
    layers = sorted(layers)
    proto = keep_fp32(onnx.load(str(int8)), onnx.load(str(fp32)), layers)
    int8_nodes = len(quantizable_nodes(onnx.load(str(fp32), load_external_data=False), layers))
    return _finish(proto, Path(dst), spec, "int8", {"fp32_kept": layers, "int8_nodes": int8_nodes})


def _drop_unread(graph) -> None:
    """Remove nodes none of whose outputs is read (by a node or as a graph output), then unread
    initializers."""
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {i for n in graph.node for i in n.input}
    for init in [t for t in graph.initializer if t.name not in read]:
        graph.initializer.remove(init)
