"""The export graph: PerceptionNet plus the in-graph post-processing the spec's outputs need.

``ExportGraph(net, spec)(images[, lidar_depth])`` returns the spec's ``network_outputs`` in order:
detections decoded and NMS'd to a fixed top-K (model-input pixels), the segmentation argmax as a
uint8 class map and depth as FP16 metres squeezed to [B, H/s, W/s]. The same module is exported to
ONNX and run eagerly as the PyTorch reference of verification.
"""

from __future__ import annotations

import numpy as np

from serving.errors import ExportError, MissingDependencyError
from serving.spec import DEPTH, DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, SEG_MASK, ModelSpec

try:
    import torch
except ImportError as exc:  # pragma: no cover - the export extra brings torch
    raise MissingDependencyError("torch", "export") from exc

from exporters.export.nms import nms_op, top_k_from_mask


class ExportGraph(torch.nn.Module):
    """``net`` (a PerceptionNet) with decode + NMS, argmax and the FP16 depth cast."""

    def __init__(self, net: torch.nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self._nms = nms_op()

    def forward(self, images, lidar_depth=None):
        spec = self.spec
        raw = self.net(images, lidar_depth) if spec.fusion else self.net(images)
        out = {}
        if "detection" in spec.tasks:
            boxes, scores = self.net.decode_detections(raw["det"])  # [B,A,4], [B,A,C]
            scores_t = scores.transpose(1, 2).contiguous()  # [B,C,A], as NonMaxSuppression wants
            keep = self._nms(boxes, scores_t, spec.top_k, spec.iou_threshold, spec.score_threshold)
            num, b, s, c = top_k_from_mask(boxes, scores_t, keep, spec.top_k)
            out.update({NUM_DETS: num, DET_BOXES: b, DET_SCORES: s, DET_CLASSES: c})
        if "segmentation" in spec.tasks:
            out[SEG_MASK] = torch.argmax(raw["seg"], dim=1).to(torch.uint8)
        if "depth" in spec.tasks:
            out[DEPTH] = raw["depth"].squeeze(1).to(torch.float16)
        return tuple(out[t.name] for t in spec.network_outputs)


def build_export_graph(net, spec: ModelSpec) -> ExportGraph:
    """Wrap ``net`` (with ``spec``) for export; eval mode, no gradients."""
    _check_top_k(net, spec)
    model = ExportGraph(net, spec).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _check_top_k(net, spec: ModelSpec) -> None:
    if "detection" not in spec.tasks or not hasattr(net, "anchor_points"):
        return
    points, _ = net.anchor_points()
    candidates = int(points.shape[0]) * len(spec.det_classes)
    if candidates < spec.top_k:
        raise ExportError(
            f"top_k {spec.top_k} exceeds the {candidates} candidates "
            f"of a {spec.input_hw[0]}x{spec.input_hw[1]} input"
        )


def run_eager(model: ExportGraph, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the export graph on numpy inputs keyed by spec input names -> numpy outputs by name."""
    spec = model.spec
    args = [torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in spec.network_inputs]
    with torch.inference_mode():
        outs = model(*args)
    return {t.name: o.numpy() for t, o in zip(spec.network_outputs, outs, strict=True)}
