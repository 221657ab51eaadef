"""TensorRT compatibility check: what the pinned TensorRT's ONNX parser would reject or do differently.

Torch- and TensorRT-free (it needs ``onnx`` only), so it runs on every machine, before any GPU is
involved. :func:`check_graph` walks an ONNX graph and returns one :class:`Finding` per offending
node, each naming the node, the rule and the rule's source; :data:`RULES` is the one table of rules.

Severity: ``error`` - the pinned parser or builder refuses the graph; ``warning`` - TensorRT accepts
it but computes something that can differ from ONNX Runtime (a documented limit or behaviour).
``percept export --engine onnx`` (and ``import-onnx``) logs one summary line (a warning where the
parser would refuse the graph) and each finding at DEBUG (``percept -v``); ``--engine tensorrt``
fails on any error finding and logs the others as a warning block (see :func:`enforce`).

The sources are onnx-tensorrt's own files at its 10.x release branch and TensorRT's headers and
operator docs; each rule names the one it was checked against. The target is the parser inside
:data:`serving.ngc.TENSORRT_IMAGE` (the release in serving/ngc.py); TRT001 also lists the operators
added after 10.5 by onnx-tensorrt's Changelog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporters.export.trt_rules import (
    EFFICIENT_NMS_ATTRS,
    EFFICIENT_NMS_CANDIDATES,
    EFFICIENT_NMS_CANDIDATES_SMALL,
    KNOWN_PLUGINS,
    NMS_CANDIDATE_LIMIT,
    ONNX_BINDABLE,
    ONNX_DOUBLE,
    ONNX_FLOAT,
    ONNX_FLOAT16,
    ONNX_INT64,
    ONNX_UINT8,
    RULES,
    SUPPORTED_OPS,
    TOPK_MAX,
)
from serving import ngc
from serving.errors import ExportError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    rule: str
    node: str
    detail: str

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    def line(self) -> str:
        r = RULES[self.rule]
        return f"{r.severity} {r.id} {self.node}: {self.detail} [{r.summary}; source: {r.source}]"


# --- the check -------------------------------------------------------------------------------------
def check_graph(proto) -> list[Finding]:
    """Every finding of :data:`RULES` in ``proto`` (an ``onnx.ModelProto``), in graph order."""
    g = _Graph(proto.graph)
    found: list[Finding] = []
    found += _io_types(g)
    found += _uint8_inputs(g)
    for node in g.nodes:
        found += _node(g, node)
    return found


def check_file(path: str | Path) -> list[Finding]:
    import onnx

    return check_graph(onnx.load(str(path), load_external_data=False))


def enforce(findings: Iterable[Finding], engine: str, label: str) -> None:
    """``engine`` "tensorrt": raise :class:`ExportError` on errors, log the other findings as a
    warning block; "onnx": log a one-line summary (a warning when there are errors, else INFO) and
    each finding at DEBUG."""
    findings = list(findings)
    if not findings:
        return
    errors = [f for f in findings if f.severity == "error"]
    if engine == "tensorrt" and errors:
        nodes = ", ".join(f"{f.node} ({f.rule})" for f in errors)
        raise ExportError(
            f"{label}: the TensorRT ONNX parser of {ngc.TENSORRT_IMAGE} would reject {len(errors)} "
            f"node(s): {nodes}. " + " | ".join(f.line() for f in errors)
        )
    if engine == "tensorrt":  # what TensorRT accepts but computes differently: the user of the engine
        log.warning(
            "%s: TensorRT compatibility (%s), %d finding(s):", label, ngc.TENSORRT_IMAGE, len(findings)
        )
        for f in findings:
            log.warning("  %s", f.line())
        return
    # exporting for ONNX Runtime, the findings concern a later TensorRT build, which checks its own
    # graph (compat_stage on the variant): one line here, each finding at DEBUG (`percept -v`)
    rules = ", ".join(sorted({f.rule for f in findings}))
    log.log(
        logging.WARNING if errors else logging.INFO,
        "%s: TensorRT compatibility (%s): %d error(s), %d warning(s) (%s); they matter for "
        "--engine tensorrt, which checks its own graph; -v lists them",
        label,
        ngc.TENSORRT_IMAGE,
        len(errors),
        len(findings) - len(errors),
        rules,
    )
    for f in findings:
        log.debug("  %s", f.line())


class _Graph:
    def __init__(self, graph) -> None:
        self.graph = graph
        self.nodes = list(graph.node)
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in graph.initializer}
        self.constants = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}
        self.types = {}
        for vi in (*graph.input, *graph.output, *graph.value_info):
            self.types[vi.name] = vi.type

    def const_value(self, name: str):
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.constants.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_ints"):
                    return a.i if a.name == "value_int" else list(a.ints)
        return None

    def dims(self, name: str) -> list[int | str] | None:
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        dims = t.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _name(node) -> str:
    return node.name or f"{node.op_type}->{node.output[0] if node.output else '?'}"


def _io_types(g: _Graph) -> list[Finding]:
    found = []
    for kind, coll in (("input", g.graph.input), ("output", g.graph.output)):
        for vi in coll:
            if vi.name in g.initializers or not vi.type.HasField("tensor_type"):
                continue
            et = vi.type.tensor_type.elem_type
            where = f"graph {kind} {vi.name}"
            if et == ONNX_DOUBLE:
                found.append(Finding("TRT005", where, "DOUBLE"))
            elif et == ONNX_INT64:
                found.append(Finding("TRT010", where, "INT64"))
            elif et not in ONNX_BINDABLE:
                found.append(Finding("TRT004", where, f"ONNX element type {et}"))
    return found


def _uint8_inputs(g: _Graph) -> list[Finding]:
    found = []
    for vi in g.graph.input:
        if not vi.type.HasField("tensor_type") or vi.type.tensor_type.elem_type != ONNX_UINT8:
            continue
        for node in g.consumers.get(vi.name, []):
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if node.op_type == "Cast" and to in (ONNX_FLOAT, ONNX_FLOAT16):
                continue
            what = f"Cast to type {to}" if node.op_type == "Cast" else node.op_type
            found.append(Finding("TRT003", _name(node), f"UINT8 input {vi.name} feeds {what}"))
    return found


def _node(g: _Graph, node) -> list[Finding]:
    op = node.op_type
    domain = node.domain or ""
    if op in KNOWN_PLUGINS:
        return _efficient_nms(g, node)
    if domain not in ("", "ai.onnx") or op not in SUPPORTED_OPS:
        shown = f"{domain}::{op}" if domain else op
        where = f"the TensorRT of NGC {ngc.RELEASE}"
        return [Finding("TRT001", _name(node), f"{shown} has no importer in {where}")]
    if op == "ScatterND" and any(a.name == "reduction" for a in node.attribute):
        value = next(a.s.decode() for a in node.attribute if a.name == "reduction")
        return [Finding("TRT002", _name(node), f"reduction={value!r}")]
    if op == "TopK":
        k = g.const_value(node.input[1]) if len(node.input) > 1 else None
        if k is None:
            return [Finding("TRT006", _name(node), "K is computed, not a constant")]
        k = int(k if isinstance(k, int) else k.reshape(-1)[0])
        if k >= TOPK_MAX:
            return [Finding("TRT006", _name(node), f"K={k}")]
    if op == "Resize":
        bad = _resize_problems({a.name: helper_value(a) for a in node.attribute})
        return [Finding("TRT011", _name(node), "; ".join(bad))] if bad else []
    if op in ("MaxPool", "AveragePool", "LpPool"):
        dil = next((list(a.ints) for a in node.attribute if a.name == "dilations"), [])
        return [Finding("TRT012", _name(node), f"dilations={dil}")] if any(d != 1 for d in dil) else []
    if op == "NonMaxSuppression":
        dims = g.dims(node.input[0])
        n = dims[1] if dims and len(dims) == 3 else "unknown"
        detail = f"{n} candidate boxes per image (limit {NMS_CANDIDATE_LIMIT})"
        return [Finding("TRT007", _name(node), detail)]
    return []


_RESIZE_ALLOWED = {
    "coordinate_transformation_mode": (
        "half_pixel",
        "pytorch_half_pixel",
        "tf_half_pixel_for_nn",
        "asymmetric",
        "align_corners",
    ),
    "mode": ("nearest", "linear"),
    "nearest_mode": ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"),
}


def helper_value(attribute):
    from onnx import helper

    value = helper.get_attribute_value(attribute)
    return value.decode() if isinstance(value, bytes) else value


def _resize_problems(attrs: dict) -> list[str]:
    bad = [
        f"{name}={attrs[name]!r}"
        for name, allowed in _RESIZE_ALLOWED.items()
        if name in attrs and attrs[name] not in allowed
    ]
    if attrs.get("antialias", 0):
        bad.append("antialias=1")
    return bad


def _efficient_nms(g: _Graph, node) -> list[Finding]:
    found = []
    unknown = sorted(a.name for a in node.attribute if a.name not in EFFICIENT_NMS_ATTRS)
    attrs = {a.name for a in node.attribute}
    missing = sorted({"score_threshold", "iou_threshold", "max_output_boxes"} - attrs)
    problems = []
    if unknown:
        problems.append(f"unknown attributes {unknown}")
    if missing:
        problems.append(f"missing attributes {missing}")
    if len(node.input) not in (2, 3) or len(node.output) != 4:
        problems.append(f"{len(node.input)} inputs / {len(node.output)} outputs (want 2 or 3 / 4)")
    boxes = g.dims(node.input[0]) if node.input else None
    scores = g.dims(node.input[1]) if len(node.input) > 1 else None
    if boxes is not None and (len(boxes) != 3 or boxes[2] != 4):
        problems.append(f"boxes shape {boxes} (want [B,N,4])")
    if scores is not None and len(scores) != 3:
        problems.append(f"scores shape {scores} (want [B,N,C])")
    if problems:
        found.append(Finding("TRT009", _name(node), "; ".join(problems)))
    cap = (
        f"candidate cap {EFFICIENT_NMS_CANDIDATES} ({EFFICIENT_NMS_CANDIDATES_SMALL} on small-register GPUs)"
    )
    found.append(Finding("TRT008", _name(node), cap + ", suppression at IoU >= threshold"))
    return found


def compat_stage(path: str | Path, engine: str) -> list[Finding]:
    """The export stage: check what the engine will read and report per ``engine``.

    ``onnx``: ``path`` itself. ``tensorrt``: the TensorRT variant written next to it
    (``model.trt.onnx``, EfficientNMS_TRT in place of the NMS subgraph; trt_variant.py), which is
    the file the TensorRT build parses.
    """
    if engine == "tensorrt":
        from exporters.export.trt_variant import write_variant

        path = write_variant(path)
    findings = check_file(path)
    enforce(findings, engine, Path(path).name)
    return findings
