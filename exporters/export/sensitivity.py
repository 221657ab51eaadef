"""Per-layer INT8 sensitivity: which quantized Conv/MatMul layers add the most error.

Both the FP32 and the QDQ model are run on the same calibration frames with every quantized
layer's input and output exposed. A layer's *local* error is the relative L2 error of its output
minus that of its input (the error it adds, not the error it inherits from upstream); the layers
with the largest local error are the ones to keep in FP32 when INT8 misses a bound
(exporters.export.precision_stage). Calibration frames, never the validation split, are used.

The ranking is global, whatever head missed its bound: measured on the shipped cam-n at 384x640
(128 percentile calibration frames, 100 validation scenes), keeping the 4 layers that only the
failing heads (detection, depth) read moved nothing (unmatched 172 -> 165, depth p99 0.129 ->
0.129), while the 8 with the largest local error, early backbone layers that every head reads,
brought every head within its bounds (120 unmatched, depth p99 0.095): the error a head shows is
mostly inherited from the shared backbone.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from exporters.export.options import CalibrationOptions
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

SENSITIVITY_FRAMES = 8


def _with_outputs(path: Path, names: list[str]):
    import onnx

    proto = onnx.load(str(path))
    have = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    return proto.SerializeToString()


def _run(model: bytes, names: list[str], batches: list[dict[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in batches:
        for name, value in zip(names, sess.run(names, batch), strict=True):
            outs[name].append(np.asarray(value, dtype=np.float32))
    return outs


def _rel(ref: list[np.ndarray], cand: list[np.ndarray]) -> float:
    num = sum(float(np.sum((c - r) ** 2)) for r, c in zip(ref, cand, strict=True))
    den = sum(float(np.sum(r**2)) for r in ref)
    return float(np.sqrt(num / max(den, 1e-12)))


def layer_sensitivity(
    fp32: Path, int8: Path, spec: ModelSpec, layers: list[str], calibration: CalibrationOptions
) -> list[tuple[str, float]]:
    """(layer name, local relative error) for ``layers`` (node names), most sensitive first."""
    from dataclasses import replace

    import onnx

    from exporters.export.calibration import calibration_batches

    nodes = {n.name: n for n in onnx.load(str(fp32), load_external_data=False).graph.node}
    pairs = {name: (nodes[name].input[0], nodes[name].output[0]) for name in layers if name in nodes}
    names = sorted({t for pair in pairs.values() for t in pair})
    frames = replace(calibration, images=SENSITIVITY_FRAMES, batch=min(calibration.batch, SENSITIVITY_FRAMES))
    batches = list(calibration_batches(spec, frames))
    ref = _run(_with_outputs(fp32, names), names, batches)
    cand = _run(_with_outputs(int8, names), names, batches)
    error = {n: _rel(ref[n], cand[n]) for n in names}
    scores = [(name, error[out] - error[inp]) for name, (inp, out) in pairs.items()]
    return sorted(scores, key=lambda item: -item[1])


def scope_name(node) -> str:
    """The torch module path of a node (its name when it carries none), for reports."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in ast.literal_eval(prop.value) if s.startswith("net.")]
            if scopes:
                return scopes[-1]
    return node.name
