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
from serving.agreement import (  # the measures; re-exported for the stage's users
    DetectionStats,
    box_iou,
    compare_detections,
    depth_rel_error,
    seg_agreement,
)
from serving.errors import ExportError
from serving.spec import DEPTH, IMAGES, LIDAR_DEPTH, SEG_MASK, ModelSpec

log = logging.getLogger(__name__)
__all__ = ["DetectionStats", "box_iou", "compare_detections", "depth_rel_error", "seg_agreement", "verify"]

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


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
