"""Two runs of one model on two engines, compared head by head with the verification stage's
checks (exporters.export.verify): a served model against ONNX Runtime, a frame engine against its
frame graph. Torch-free and tritonclient-free (the GPU kit imports it where neither is installed)."""

from __future__ import annotations

import numpy as np

from exporters.export.options import Tolerances
from exporters.export.verify import DetectionStats, compare_detections, depth_rel_error, seg_agreement
from serving.spec import ModelSpec


def output_differences(ref: dict, cand: dict, spec: ModelSpec, tolerances: Tolerances) -> list[str]:
    """What differs beyond ``tolerances`` between two batched output dicts of the same model (the
    per-head comparisons of this stage, for the heads ``ref`` has); empty when they agree. For two
    runs of one file on two engines: a served model against ONNX Runtime, a frame engine against
    its frame graph."""
    from serving.spec import DEPTH, NUM_DETS, SEG_MASK

    # a served model answers num_dets as [B, 1] (one element per request), ONNX Runtime as [B]
    ref, cand = (
        {**out, NUM_DETS: np.asarray(out[NUM_DETS]).reshape(-1)} if NUM_DETS in out else out
        for out in (ref, cand)
    )
    problems = []
    stats = DetectionStats()
    n = len(next(iter(ref.values())))
    for i in range(n):
        if NUM_DETS in ref:
            compare_detections(ref, cand, i, spec, tolerances, stats)
        if SEG_MASK in ref:
            agreement = seg_agreement(ref[SEG_MASK][i], cand[SEG_MASK][i])
            if agreement < tolerances.seg_agreement:
                problems.append(f"image {i}: seg agreement {agreement:.4f} < {tolerances.seg_agreement}")
        if DEPTH in ref:
            errors = depth_rel_error(ref[DEPTH][i], cand[DEPTH][i])
            q = float(np.quantile(errors, tolerances.depth_quantile))
            if q > tolerances.depth_rel_error:
                problems.append(f"image {i}: depth relative error {q:.3g} > {tolerances.depth_rel_error}")
    total = max(stats.reference, stats.candidate, 1)
    if stats.unmatched > tolerances.max_unmatched_fraction * total:
        problems.append(f"detections: {stats.unmatched} of {total} unmatched ({stats})")
    return problems
