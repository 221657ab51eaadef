"""Verification bounds per precision, one table for every engine that runs a reduced precision.

FP32 (ONNX Runtime, TensorRT FP32 engines) differs from PyTorch by kernel choice only: the default
:class:`~exporters.export.options.Tolerances` hold (borderline NMS decisions excepted). FP16 carries
~3 decimal digits through ~40 layers: class maps may flip on boundaries, depth is bounded at the 99th
percentile, a few low-margin detections may differ. INT8 is looser again; the metric deltas are what
a deployment should watch. The FP16-typed and QDQ INT8 ONNX files (exporters.export.precision) are
verified in ONNX Runtime with the same bounds their TensorRT engines are.
"""

from __future__ import annotations

from exporters.export.options import Tolerances

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
