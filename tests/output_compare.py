"""Output comparison of two batched output dicts, free of tritonclient (the GPU kit imports it
where no tritonclient is installed)."""

from __future__ import annotations

import numpy as np


def output_differences(ref: dict, cand: dict, spec, tolerances) -> list[str]:
    """What differs beyond ``tolerances`` between two batched output dicts (the verification
    stage's own per-head comparisons); empty when they agree."""
    from exporters.export.verify import DetectionStats, compare_detections, depth_rel_error, seg_agreement
    from serving.spec import DEPTH, NUM_DETS, SEG_MASK

    # a served raw model answers num_dets as [B, 1] (one element per request), ONNX Runtime as [B]
    ref, cand = ({**out, NUM_DETS: np.asarray(out[NUM_DETS]).reshape(-1)} for out in (ref, cand))
    problems = []
    stats = DetectionStats()
    n = len(ref[SEG_MASK])
    for i in range(n):
        compare_detections(ref, cand, i, spec, tolerances, stats)
        agreement = seg_agreement(ref[SEG_MASK][i], cand[SEG_MASK][i])
        if agreement < tolerances.seg_agreement:
            problems.append(f"image {i}: seg agreement {agreement:.4f} < {tolerances.seg_agreement}")
        errors = depth_rel_error(ref[DEPTH][i], cand[DEPTH][i])
        q = float(np.quantile(errors, tolerances.depth_quantile))
        if q > tolerances.depth_rel_error:
            problems.append(f"image {i}: depth relative error {q:.3g} > {tolerances.depth_rel_error}")
    total = max(stats.reference, stats.candidate, 1)
    if stats.unmatched > tolerances.max_unmatched_fraction * total:
        problems.append(f"detections: {stats.unmatched} of {total} unmatched ({stats})")
    return problems


# --- the raw network --------------------------------------------------------------------------
