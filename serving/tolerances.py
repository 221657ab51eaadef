"""Verification bounds per precision, one table for every engine that runs a reduced precision; the
export's verification stage checks an artifact with them, `percept compare` gates a rollout.

FP32 (ONNX Runtime, TensorRT FP32 engines) differs from PyTorch by kernel choice only: the default
:class:`Tolerances` hold (borderline NMS decisions excepted). FP16 carries
~3 decimal digits through ~40 layers: class maps may flip on boundaries, depth is bounded at the 99th
percentile, a few low-margin detections may differ. INT8 is looser again; the metric deltas are what
a deployment should watch. The FP16-typed and QDQ INT8 ONNX files (exporters.export.precision) are
verified in ONNX Runtime with the same bounds their TensorRT engines are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerances:
    """Bounds of one verification; the export fails when one is exceeded.

    ``depth_quantile`` picks which quantile of the per-pixel relative depth error is bounded
    (1.0 = the maximum). ``max_unmatched_fraction`` lets a few detections go unmatched (only used by
    the reduced-precision TensorRT bounds; FP32 ONNX allows none beyond the borderline ones).
    """

    seg_agreement: float = 0.999
    depth_rel_error: float = 1e-3
    depth_quantile: float = 1.0
    det_iou: float = 0.99
    det_score_diff: float = 1e-3
    max_unmatched_fraction: float = 0.0
    d_map50: float = 0.005
    d_miou: float = 0.005
    d_abs_rel: float = 0.001


TOLERANCES: dict[str, Tolerances] = {
    "fp32": Tolerances(),
    "fp16": Tolerances(
        seg_agreement=0.99,
        depth_rel_error=0.02,
        depth_quantile=0.99,
        det_iou=0.9,
        det_score_diff=0.02,
        max_unmatched_fraction=0.05,
        d_map50=0.02,
        d_miou=0.01,
        d_abs_rel=0.005,
    ),
    # not a precision: a JPEG at least twice the model size decoded at a reduced DCT scale instead of
    # in full (serving.processing.decode_factor), scored against world ground truth both ways
    # (tests/exporters/export/test_reduced_decode.py); metric deltas as FP16's
    "jpeg_dct": Tolerances(d_map50=0.02, d_miou=0.01, d_abs_rel=0.005),
    "int8": Tolerances(
        seg_agreement=0.97,
        depth_rel_error=0.1,
        depth_quantile=0.99,
        det_iou=0.8,
        det_score_diff=0.1,
        max_unmatched_fraction=0.15,
        d_map50=0.05,
        d_miou=0.03,
        d_abs_rel=0.02,
    ),
}
