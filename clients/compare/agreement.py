"""How a candidate agrees with the baseline on one input, head by head, with no ground truth.

* detection: the verification stage's one-to-one matcher (serving.agreement.compare_detections:
  same class, IoU >= ``det_iou``, |score diff| <= ``det_score_diff``, near-tie NMS swaps and
  borderline detections set apart); per class the matched / missing / extra counts and rates, and
  the IoU and score-difference distributions of the matched pairs;
* segmentation: pixel agreement per frame, and the per-class IoU of the candidate's class map against
  the baseline's (a confusion matrix over every pixel);
* depth: the per-pixel relative error over the valid baseline pixels (finite, > 0), its p50 / p90 /
  p99 (and the maximum) over all of them and over the near range (baseline depth <= ``NEAR_M``).
  The quantiles come from a histogram with 1 % wide logarithmic bins (a fleet's logs do not fit in
  memory; each quantile is reported as its bin's upper edge, so it is never under-stated); the
  maximum is exact.

Both sides' maps are compared at the baseline's resolution; a candidate with another input size is
brought there (nearest neighbour for classes, linear for depth) through source pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clients.results import PerceptionResult
from serving.agreement import DetectionStats, compare_detections, depth_rel_error, seg_agreement
from serving.spec import DET_BOXES, DET_CLASSES, DET_SCORES, NUM_DETS, ModelSpec
from serving.tolerances import Tolerances

NEAR_M = 20.0
QUANTILES = (0.5, 0.9, 0.99)
_EDGES = np.concatenate([[0.0], np.geomspace(1e-7, 1e3, 1611)])  # 1 % per bin, then overflow


def _as_outputs(result: PerceptionResult) -> dict[str, np.ndarray]:
    dets = result.detections or ()
    return {
        NUM_DETS: np.array([len(dets)], np.int32),
        DET_BOXES: np.array([d.box for d in dets], np.float32).reshape(1, -1, 4),
        DET_SCORES: np.array([d.score for d in dets], np.float32).reshape(1, -1),
        DET_CLASSES: np.array([d.class_id for d in dets], np.int32).reshape(1, -1),
    }


def _same_grid(base: PerceptionResult, cand: PerceptionResult, which: str) -> tuple[np.ndarray, np.ndarray]:
    b, c = getattr(base, which), getattr(cand, which)
    if b.shape == c.shape:
        return b, c
    b, c = getattr(base, f"{which}_at_source")(), getattr(cand, f"{which}_at_source")()
    if b.shape != c.shape:  # different sources cannot happen: both sides saw the same frame
        raise ValueError(f"{which} maps of {b.shape} and {c.shape}")
    return b, c


class _Histogram:
    def __init__(self) -> None:
        self.counts = np.zeros(len(_EDGES), np.int64)
        self.max = 0.0

    def add(self, values: np.ndarray) -> None:
        if values.size:
            self.counts += np.bincount(np.searchsorted(_EDGES, values, side="left"), minlength=len(_EDGES))[
                : len(_EDGES)
            ]
            self.max = max(self.max, float(values.max()))

    def quantile(self, q: float) -> float:
        total = int(self.counts.sum())
        if total == 0:
            return 0.0
        if q >= 1.0:
            return self.max
        k = int(np.searchsorted(np.cumsum(self.counts), q * total, side="left"))
        return min(float(_EDGES[min(k, len(_EDGES) - 1)]), self.max)

    def summary(self) -> dict:
        out = {f"p{round(q * 100)}": self.quantile(q) for q in QUANTILES}
        return {**out, "max": self.max, "pixels": int(self.counts.sum())}


@dataclass
class FrameAgreement:
    """One frame's numbers (for the plots over frames and the worst-frame gallery)."""

    index: int
    det_unmatched: int = 0
    det_total: int = 0
    seg_agreement: float | None = None
    depth_p90: float | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class InputAgreement:
    """The agreement of candidate with baseline over the frames of one input."""

    name: str
    spec: ModelSpec
    tolerances: Tolerances
    frames: list[FrameAgreement] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.spec.seg_classes)
        self.det = DetectionStats(events=True)
        self.counts = np.zeros((2, len(self.spec.det_classes)), np.int64)  # baseline, candidate per class
        self.confusion = np.zeros((n, n), np.int64)  # baseline class x candidate class
        self.depth_all, self.depth_near = _Histogram(), _Histogram()

    @property
    def heads(self) -> tuple[str, ...]:
        return tuple(self.spec.tasks)

    def add(self, index: int, base: PerceptionResult, cand: PerceptionResult) -> FrameAgreement:
        frame = FrameAgreement(index)
        if "detection" in self.spec.tasks:
            stats = DetectionStats(events=True)
            compare_detections(_as_outputs(base), _as_outputs(cand), 0, self.spec, self.tolerances, stats)
            self._merge(stats)
            for side, result in enumerate((base, cand)):
                for d in result.detections or ():
                    self.counts[side, d.class_id] += 1
            frame.det_unmatched = stats.unmatched
            frame.det_total = max(stats.reference, stats.candidate)
        if "segmentation" in self.spec.tasks:
            b, c = _same_grid(base, cand, "seg")
            n = len(self.spec.seg_classes)
            flat = b.astype(np.int64).reshape(-1) * n + np.minimum(c, n - 1).astype(np.int64).reshape(-1)
            self.confusion += np.bincount(flat, minlength=n * n).reshape(n, n)
            frame.seg_agreement = seg_agreement(b, c)
        if "depth" in self.spec.tasks:
            b, c = _same_grid(base, cand, "depth")
            valid = np.isfinite(b) & (b > 0)
            errors = depth_rel_error(b[valid], c[valid])
            errors = np.where(np.isfinite(errors), errors, np.inf)
            self.depth_all.add(errors)
            self.depth_near.add(errors[b[valid].astype(np.float32) <= NEAR_M])
            frame.depth_p90 = float(np.quantile(errors, 0.9)) if errors.size else 0.0
        self.frames.append(frame)
        return frame

    def _merge(self, s: DetectionStats) -> None:
        d = self.det
        for name in ("reference", "candidate", "matched", "borderline", "unmatched", "missing", "extra"):
            setattr(d, name, getattr(d, name) + getattr(s, name))
        for name in ("matched_classes", "missing_classes", "extra_classes", "borderline_classes"):
            getattr(d, name).extend(getattr(s, name))
        d.ious.extend(s.ious)
        d.score_diffs.extend(s.score_diffs)

    # --- the numbers ----------------------------------------------------------------------------
    def detection(self) -> dict:
        d, k = self.det, len(self.spec.det_classes)
        per_class = {}
        for c, name in enumerate(self.spec.det_classes):
            n_base, n_cand = int(self.counts[0, c]), int(self.counts[1, c])
            matched, missing, extra, border = (
                int(np.bincount(np.asarray(v, np.int64), minlength=k)[c]) if v else 0
                for v in (d.matched_classes, d.missing_classes, d.extra_classes, d.borderline_classes)
            )
            per_class[name] = {
                "baseline": n_base,
                "candidate": n_cand,
                "matched": matched,
                "missing": missing,
                "extra": extra,
                "borderline": border,
                "matched_rate": matched / n_base if n_base else 1.0,
                "missing_rate": missing / n_base if n_base else 0.0,
                "extra_rate": extra / n_cand if n_cand else 0.0,
                "unmatched_fraction": (missing + extra) / max(n_base, n_cand, 1),
            }
        ious, diffs = np.asarray(d.ious), np.abs(np.asarray(d.score_diffs))
        return {
            "per_class": per_class,
            "matched": d.matched,
            "baseline": d.reference,
            "candidate": d.candidate,
            "iou": _spread(ious, low=True),
            "abs_score_diff": _spread(diffs, low=False),
            "mean_score_diff": float(np.mean(d.score_diffs)) if d.score_diffs else 0.0,
        }

    def segmentation(self) -> dict:
        m = self.confusion
        inter = np.diag(m).astype(np.float64)
        union = m.sum(0) + m.sum(1) - inter
        iou = {
            name: float(inter[i] / union[i]) if union[i] else 1.0
            for i, name in enumerate(self.spec.seg_classes)
        }
        agreements = [f.seg_agreement for f in self.frames if f.seg_agreement is not None]
        worst = int(np.argmin(agreements)) if agreements else 0
        return {
            "pixel_agreement": float(inter.sum() / max(m.sum(), 1)),
            "worst_frame_agreement": float(agreements[worst]) if agreements else 1.0,
            "worst_frame": self.frames[worst].index if agreements else None,
            "class_iou": iou,
        }

    def depth(self) -> dict:
        return {"rel_error": self.depth_all.summary(), "near": {"max_m": NEAR_M, **self.depth_near.summary()}}

    def to_dict(self) -> dict:
        heads = {
            "detection": self.detection,
            "segmentation": self.segmentation,
            "depth": self.depth,
        }
        return {"frames": len(self.frames), **{h: heads[h]() for h in self.heads}}


def _spread(values: np.ndarray, low: bool) -> dict:
    if not values.size:
        return {}
    qs = (0.0, 0.05, 0.5) if low else (0.5, 0.95, 1.0)
    return {
        ("min" if q == 0 else "max" if q == 1 else f"p{round(q * 100)}"): float(np.quantile(values, q))
        for q in qs
    }
