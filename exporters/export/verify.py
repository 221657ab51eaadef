"""Stage 2: run an exported artifact and compare it with its reference on seeded world scenes.

Per head, on every scene of the validation split slice:

* detection: the two top-K lists matched one to one (same class, IoU >= ``det_iou``,
  |score diff| <= ``det_score_diff``). A detection may go unmatched only when it is *borderline*:
  its score lies within ``det_score_diff`` of the score threshold (or of the K-th score when the
  list is full), it overlaps a same-class detection with an IoU within ``BORDER_IOU`` of the NMS
  threshold, or it swapped places with an unmatched same-class box of nearly the same score that
  it overlaps above the NMS threshold (flat image regions give exact ties; which box NMS keeps
  then depends on the last bits). Tiny numeric differences legitimately flip such decisions;
* segmentation: the class maps agree on >= ``seg_agreement`` of the pixels (worst image);
* depth: the ``depth_quantile`` of the per-pixel relative error <= ``depth_rel_error``;
* metric parity (exporters.evaluation against the world's ground truth): |d mAP@0.5|,
  |d mIoU| and |d AbsRel| within bounds.

A runner is any ``dict[input name -> batched numpy] -> dict[output name -> batched numpy]``
(PyTorch eager, ONNX Runtime, a TensorRT engine), so every backend is verified the same way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exporters.export.options import Tolerances, VerifyOptions
from serving.errors import ExportError
from serving.spec import (
    DEPTH,
    DET_BOXES,
    DET_CLASSES,
    DET_SCORES,
    IMAGES,
    LIDAR_DEPTH,
    NUM_DETS,
    SEG_MASK,
    ModelSpec,
)

log = logging.getLogger(__name__)

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
BORDER_IOU = 1e-3
SAME_BOX_PX = 1e-2


def ort_runner(path: str | Path, providers: list[str] | None = None) -> Runner:
    """ONNX Runtime session on ``path`` as a runner."""
    from serving.ort_session import create_session

    sess = create_session(path, providers=providers, log_severity=3, error=ExportError, extra="export")
    names = [o.name for o in sess.get_outputs()]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(names, inputs), strict=True))

    return run


# --- inputs -------------------------------------------------------------------------------------
def scene_inputs(spec: ModelSpec, scene) -> dict[str, np.ndarray]:
    """One world scene -> the network's inputs (no batch axis), rendered at the model size."""
    inputs = {IMAGES: np.ascontiguousarray(scene.image.transpose(2, 0, 1))}
    if spec.fusion:
        from serving.lidar import project_to_depth_image

        if scene.points is None:
            raise ExportError("a fusion network needs scenes rendered with LiDAR")
        inputs[LIDAR_DEPTH] = project_to_depth_image(scene.points, scene.projection, spec.input_hw)
    return inputs


def render_batches(spec: ModelSpec, seeds: list[int], batch: int) -> Iterator[tuple[dict, list]]:
    """(batched inputs, scenes) over the world scenes of ``seeds``."""
    try:
        from world import render_scene
    except ImportError as exc:
        raise ExportError(f"verification needs the synthetic world (world): {exc}") from exc
    for start in range(0, len(seeds), batch):
        scenes = [render_scene(s, hw=spec.input_hw, lidar=spec.fusion) for s in seeds[start : start + batch]]
        per = [scene_inputs(spec, sc) for sc in scenes]
        yield {t.name: np.stack([p[t.name] for p in per]) for t in spec.network_inputs}, scenes


def validation_seeds(n: int) -> list[int]:
    from exporters.evaluation import validation_seeds as seeds

    return seeds(n)


# --- per-head comparisons -----------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes [N,4] x [M,4]."""
    a = a.astype(np.float64)[:, None]
    b = b.astype(np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class DetectionStats:
    reference: int = 0
    candidate: int = 0
    matched: int = 0
    borderline: int = 0
    unmatched: int = 0
    min_iou: float = 1.0
    max_score_diff: float = 0.0


def _dets(out: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = int(out[NUM_DETS][i])
    return out[DET_BOXES][i, :n], out[DET_SCORES][i, :n], out[DET_CLASSES][i, :n]


def _borderline(boxes, scores, classes, j: int, spec: ModelSpec, tol: Tolerances) -> bool:
    s = float(scores[j])
    if abs(s - spec.score_threshold) <= tol.det_score_diff:
        return True
    if len(scores) == spec.top_k and abs(s - float(scores.min())) <= tol.det_score_diff:
        return True
    same = np.flatnonzero((classes == classes[j]) & (np.arange(len(classes)) != j))
    if len(same):
        iou = box_iou(boxes[j : j + 1], boxes[same])[0]
        if (np.abs(iou - spec.iou_threshold) <= BORDER_IOU).any():
            return True
    return False


def compare_detections(
    ref: dict, cand: dict, i: int, spec: ModelSpec, tol: Tolerances, stats: DetectionStats
) -> None:
    rb, rs, rc = _dets(ref, i)
    cb, cs, cc = _dets(cand, i)
    stats.reference += len(rs)
    stats.candidate += len(cs)
    iou = box_iou(rb, cb) if len(rb) and len(cb) else np.zeros((len(rb), len(cb)))
    if len(rb) and len(cb):
        # degenerate (zero-area) boxes have no IoU with anything, not even themselves: such a pair
        # matches when the corners agree to within SAME_BOX_PX
        same = np.abs(rb[:, None, :] - cb[None, :, :]).max(axis=2) <= SAME_BOX_PX
        iou = np.where(same, np.maximum(iou, 1.0), iou)
    used = np.zeros(len(cb), dtype=bool)
    matched_ref = np.zeros(len(rb), dtype=bool)
    for r in np.argsort(-rs, kind="stable"):
        ok = (~used) & (cc == rc[r]) & (iou[r] >= tol.det_iou) & (np.abs(cs - rs[r]) <= tol.det_score_diff)
        if not ok.any():
            continue
        c = int(np.argmax(np.where(ok, iou[r], -1)))
        used[c] = matched_ref[r] = True
        stats.matched += 1
        stats.min_iou = min(stats.min_iou, float(iou[r, c]))
        stats.max_score_diff = max(stats.max_score_diff, float(abs(cs[c] - rs[r])))
    # near-tie swaps: two boxes that suppress each other with scores within the tolerance; which
    # one NMS keeps is decided by the last bits of the scores (or the sort order of exact ties)
    for r in np.flatnonzero(~matched_ref):
        swap = (
            (~used)
            & (cc == rc[r])
            & (iou[r] > spec.iou_threshold)
            & (np.abs(cs - rs[r]) <= tol.det_score_diff)
        )
        if swap.any():
            used[int(np.argmax(swap))] = matched_ref[r] = True
            stats.borderline += 2
    for boxes, scores, classes, hit in ((rb, rs, rc, matched_ref), (cb, cs, cc, used)):
        for j in np.flatnonzero(~hit):
            if _borderline(boxes, scores, classes, int(j), spec, tol):
                stats.borderline += 1
            else:
                stats.unmatched += 1


def seg_agreement(ref: np.ndarray, cand: np.ndarray) -> float:
    return float((ref == cand).mean())


def depth_rel_error(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    r = ref.astype(np.float32)
    c = cand.astype(np.float32)
    return (np.abs(c - r) / np.maximum(np.abs(r), 1e-3)).reshape(-1)


# --- the report ---------------------------------------------------------------------------------
@dataclass
class HeadResult:
    head: str
    passed: bool
    line: str
    numbers: dict = field(default_factory=dict)


@dataclass
class VerifyReport:
    label: str
    scenes: int
    heads: list[HeadResult]
    metrics: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)  # e.g. the INT8 layers kept in FP32

    @property
    def passed(self) -> bool:
        return all(h.passed for h in self.heads)

    def lines(self) -> list[str]:
        return [h.line for h in self.heads]

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "passed": self.passed,
            "scenes": self.scenes,
            "heads": {h.head: {"passed": h.passed, **h.numbers} for h in self.heads},
            "metrics": self.metrics,
            "inference_seconds": self.seconds,
            **({"notes": self.notes} if self.notes else {}),
        }

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def _fmt(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def verify(
    candidate: Runner,
    reference: Runner,
    spec: ModelSpec,
    options: VerifyOptions,
    label: str = "onnxruntime vs pytorch",
    seeds: list[int] | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Compare ``candidate`` with ``reference`` on validation scenes; the report says pass/fail."""
    tol = options.tolerances
    seeds = validation_seeds(options.scenes) if seeds is None else seeds
    det = DetectionStats()
    seg_worst, seg_sum, images = 1.0, 0.0, 0
    depth_errors: list[np.ndarray] = []
    evaluators = _evaluators(spec) if options.metrics else None
    seconds = {"reference": 0.0, "candidate": 0.0}  # inference only, for the report (not a check)
    batches = render_batches(spec, seeds, options.batch)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, total=-(-len(seeds) // options.batch), desc=f"verify {label}", unit="batch")
    for inputs, scenes in batches:
        t0 = time.perf_counter()
        ref = reference(inputs)
        t1 = time.perf_counter()
        cand = candidate(inputs)
        seconds["reference"] += t1 - t0
        seconds["candidate"] += time.perf_counter() - t1
        _check_outputs(cand, spec, len(scenes))
        for i, scene in enumerate(scenes):
            images += 1
            if "detection" in spec.tasks:
                compare_detections(ref, cand, i, spec, tol, det)
            if "segmentation" in spec.tasks:
                a = seg_agreement(ref[SEG_MASK][i], cand[SEG_MASK][i])
                seg_worst, seg_sum = min(seg_worst, a), seg_sum + a
            if "depth" in spec.tasks:
                depth_errors.append(depth_rel_error(ref[DEPTH][i], cand[DEPTH][i]))
            if evaluators is not None:
                for ev, out in zip(evaluators, (ref, cand), strict=True):
                    ev.add({k: v[i] for k, v in out.items()}, scene)
    metrics = _metric_parity(evaluators) if evaluators is not None else {}
    delta = {**metrics.get("delta", {}), "map": metrics.get("delta_map")}
    heads: list[HeadResult] = []
    if "detection" in spec.tasks:
        heads.append(_detection_result(det, tol, delta))
    if "segmentation" in spec.tasks:
        heads.append(_segmentation_result(seg_worst, seg_sum / max(images, 1), tol, delta))
    if "depth" in spec.tasks:
        heads.append(_depth_result(np.concatenate(depth_errors), tol, delta))
    report = VerifyReport(label, images, heads, metrics, seconds)
    for line in report.lines():
        log.debug("%s: %s", label, line)
    return report


def _check_outputs(out: dict[str, np.ndarray], spec: ModelSpec, batch: int) -> None:
    for t in spec.network_outputs:
        if t.name not in out:
            raise ExportError(f"the artifact did not return output {t.name!r}")
        arr = out[t.name]
        want = (batch, *t.dims[1:])
        if arr.dtype != np.dtype(t.dtype) or tuple(arr.shape) != want:
            raise ExportError(
                f"output {t.name!r} is {arr.dtype} {arr.shape}, the spec wants {t.dtype} {want}"
            )


def _evaluators(spec: ModelSpec):
    from exporters.evaluation import Evaluator

    return Evaluator(spec), Evaluator(spec)


def _metric_parity(evaluators) -> dict:
    ref, cand = (ev.result() for ev in evaluators)
    delta = {k: cand[k] - ref[k] for k in ("map50", "miou", "abs_rel") if k in ref}
    if "map50_95" in ref:  # reported (detection head's d_map), not bounded
        delta_map = cand["map50_95"] - ref["map50_95"]
        return {"reference": ref, "candidate": cand, "delta": delta, "delta_map": delta_map}
    return {"reference": ref, "candidate": cand, "delta": delta}


def _detection_result(s: DetectionStats, tol: Tolerances, delta: dict) -> HeadResult:
    total = max(s.reference, s.candidate, 1)
    ok = s.unmatched <= tol.max_unmatched_fraction * total
    d_map = delta.get("map50")
    if d_map is not None:
        ok = ok and abs(d_map) <= tol.d_map50
    line = (
        f"detection     {_fmt(ok)}  matched {s.matched}/{s.reference} (candidate {s.candidate}, "
        f"borderline {s.borderline}, unmatched {s.unmatched})  min IoU {s.min_iou:.4f} (>= {tol.det_iou})  "
        f"max |d score| {s.max_score_diff:.2e} (<= {tol.det_score_diff:g})"
    )
    if d_map is not None:
        line += f"  d mAP50 {d_map:+.4f} (<= {tol.d_map50:g})"
    numbers = {
        "reference": s.reference,
        "candidate": s.candidate,
        "matched": s.matched,
        "borderline": s.borderline,
        "unmatched": s.unmatched,
        "min_iou": s.min_iou,
        "max_score_diff": s.max_score_diff,
        "d_map50": d_map,
        "d_map": delta.get("map"),
    }
    return HeadResult("detection", ok, line, numbers)


def _segmentation_result(worst: float, mean: float, tol: Tolerances, delta: dict) -> HeadResult:
    ok = worst >= tol.seg_agreement
    d_miou = delta.get("miou")
    if d_miou is not None:
        ok = ok and abs(d_miou) <= tol.d_miou
    line = (
        f"segmentation  {_fmt(ok)}  pixel agreement worst {worst * 100:.4f}% mean {mean * 100:.4f}% "
        f"(>= {tol.seg_agreement * 100:g}%)"
    )
    if d_miou is not None:
        line += f"  d mIoU {d_miou:+.4f} (<= {tol.d_miou:g})"
    return HeadResult(
        "segmentation", ok, line, {"worst_agreement": worst, "mean_agreement": mean, "d_miou": d_miou}
    )


def _depth_result(errors: np.ndarray, tol: Tolerances, delta: dict) -> HeadResult:
    q = float(np.quantile(errors, tol.depth_quantile)) if len(errors) else 0.0
    ok = q <= tol.depth_rel_error
    d_abs = delta.get("abs_rel")
    if d_abs is not None:
        ok = ok and abs(d_abs) <= tol.d_abs_rel
    which = "max" if tol.depth_quantile >= 1.0 else f"p{tol.depth_quantile * 100:g}"
    line = f"depth         {_fmt(ok)}  {which} relative error {q:.2e} (<= {tol.depth_rel_error:g})"
    if d_abs is not None:
        line += f"  d AbsRel {d_abs:+.5f} (<= {tol.d_abs_rel:g})"
    numbers = {
        "rel_error": q,
        "quantile": tol.depth_quantile,
        "mean_rel_error": float(errors.mean()),
        "d_abs_rel": d_abs,
    }
    return HeadResult("depth", ok, line, numbers)
