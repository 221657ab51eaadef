"""What a person checks first on an imported model's answers, and the warnings where a head is very
likely mis-specified (`percept import-onnx --images`).

Verification (import_validate.py, verify.py) proves that the composed graph computes what the head
spec says; it cannot tell whether the head spec says what the network means: a spec that reads
TwinLiteNet's two background-first maps as one sigmoid map verifies perfectly and serves nonsense.
A trained network on road images does show reliable facts, and a wrong key breaks them:

* segmentation: background (sky, buildings, cars) covers a large part of a dashcam frame; the
  drivable area is the road ahead, not the whole frame; lane markings are thin lines; a map of one
  class everywhere is no answer at all;
* detection: boxes have x2 > x1 and y2 > y1; they do not cover the frame; a detector does not fill
  its top-K on every image (that needs every candidate above the score threshold);
* depth: metres of a road scene lie between tens of centimetres and a few hundred metres, vary
  across the frame, and grow from the bottom of the frame (the road in front of the car) upwards.

Each warning names the head-spec keys (head_spec.py's names) to look at. The statistics are taken
over the letterboxed content (padding cut away), in model-input pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exporters.export.head_spec import HeadSpec
from serving import spec as S
from serving.letterbox import Letterbox
from serving.spec import ModelSpec

__all__ = ["Finding", "Thresholds", "THRESHOLDS", "check", "image_stats", "summarise"]


@dataclass(frozen=True)
class Thresholds:
    """Measured with the shipped cam-n on 30 validation world scenes (right head spec, 240x400
    frames letterboxed to 192x320): background 0.52..0.94 of each frame, drivable 0.04..0.47, lane
    0.002..0.025; 0..5 detections, no inverted box, largest 15 % of the frame; depth medians
    4.7..6.8 m, (p95 - p5) / median >= 0.2, bottom-band / middle-band median 0.84..0.99. Dashcam
    footage (BDD100K, KITTI) sits in the same ranges: sky and surroundings above the horizon, the
    road ahead below, lane paint a few percent. The bounds below leave a wide margin on both."""

    background_min: float = 0.05  # the background class covers at least this (median image)
    foreground_max: float = 0.60  # no other class covers more (median image): "72 % drivable"
    lane_max: float = 0.15  # a class named lane covers at most this (median image)
    one_class: float = 0.99  # one class this much of every image: the map says nothing
    inverted_max: float = 0.2  # share of boxes with x2 < x1 or y2 < y1
    box_area_max: float = 0.5  # median box area over the content area
    depth_median_m: tuple[float, float] = (0.5, 500.0)  # a road scene's median depth, metres
    depth_spread_min: float = 0.05  # (p95 - p5) / median: below it the map is flat
    depth_bottom_over_middle_max: float = 1.1  # the road in front of the car is nearer than the middle


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Finding:
    """One plausibility warning: the head, what was seen, the head-spec keys to look at."""

    head: str
    message: str
    keys: tuple[str, ...]

    def line(self) -> str:
        return f"{self.head}: {self.message} (check {', '.join(self.keys)})"

    def to_dict(self) -> dict:
        return {"head": self.head, "message": self.message, "keys": list(self.keys)}


# --- per image ------------------------------------------------------------------------------------
def image_stats(spec: ModelSpec, outputs: dict[str, np.ndarray], lb: Letterbox) -> dict:
    """One image's outputs (batch axis removed) -> the numbers of each head."""
    out: dict = {}
    content_h, content_w = lb.resized_hw
    if S.SEG_MASK in outputs:
        seg = lb.crop_dense(np.asarray(outputs[S.SEG_MASK]), 1, False)
        counts = np.bincount(seg.reshape(-1), minlength=len(spec.seg_classes))
        out["segmentation"] = {
            "fractions": {
                (spec.seg_classes[i] if i < len(spec.seg_classes) else str(i)): round(float(c) / seg.size, 4)
                for i, c in enumerate(counts)
            }
        }
    if S.NUM_DETS in outputs:
        n = int(np.asarray(outputs[S.NUM_DETS]).reshape(-1)[0])
        boxes = np.asarray(outputs[S.DET_BOXES], np.float32).reshape(-1, 4)[:n]
        scores = np.asarray(outputs[S.DET_SCORES], np.float32).reshape(-1)[:n]
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        area = np.abs(w * h) / float(content_h * content_w)
        out["detection"] = {
            "count": n,
            "inverted": int(((w < 0) | (h < 0)).sum()),
            "area_fraction": [round(float(a), 4) for a in area],
            "scores": [round(float(s), 3) for s in scores],
        }
    if S.DEPTH in outputs:
        d = lb.crop_dense(np.asarray(outputs[S.DEPTH]), spec.depth_stride, False).astype(np.float32)
        finite = d[np.isfinite(d)]
        rows = d.shape[0]
        bottom, middle = d[int(rows * 0.8) :], d[int(rows * 0.4) : int(rows * 0.6)]
        p5, p50, p95 = np.percentile(finite, [5, 50, 95]) if finite.size else (np.nan,) * 3
        out["depth"] = {
            "min": float(finite.min()) if finite.size else None,
            "p5": float(p5),
            "median": float(p50),
            "p95": float(p95),
            "max": float(finite.max()) if finite.size else None,
            "non_finite": int(d.size - finite.size),
            "bottom_over_middle": _ratio(bottom, middle),
        }
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> float | None:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not a.size or not b.size or np.median(b) <= 0:
        return None
    return round(float(np.median(a) / np.median(b)), 4)


# --- over the images ------------------------------------------------------------------------------
def summarise(per_image: list[dict]) -> dict:
    """Per head, over the images: class fractions (median, min, max), detections per image and their
    size distribution, the depth range."""
    out: dict = {}
    seg = [s["segmentation"]["fractions"] for s in per_image if "segmentation" in s]
    if seg:
        out["segmentation"] = {
            name: {
                "median": round(float(np.median([f[name] for f in seg])), 4),
                "min": min(f[name] for f in seg),
                "max": max(f[name] for f in seg),
            }
            for name in seg[0]
        }
    det = [s["detection"] for s in per_image if "detection" in s]
    if det:
        areas = [a for d in det for a in d["area_fraction"]]
        q = np.percentile(areas, [0, 50, 90, 100]).round(4).tolist() if areas else []
        out["detection"] = {
            "per_image": [d["count"] for d in det],
            "total": sum(d["count"] for d in det),
            "inverted": sum(d["inverted"] for d in det),
            "area_fraction": dict(zip(("min", "median", "p90", "max"), q, strict=True)) if q else {},
        }
    depth = [s["depth"] for s in per_image if "depth" in s]
    if depth:
        finite = [d for d in depth if d["min"] is not None]
        out["depth"] = {
            "min": min((d["min"] for d in finite), default=None),
            "median": float(np.median([d["median"] for d in finite])) if finite else None,
            "max": max((d["max"] for d in finite), default=None),
            "non_finite": sum(d["non_finite"] for d in depth),
        }
    return out


def check(
    heads: HeadSpec, spec: ModelSpec, per_image: list[dict], t: Thresholds = THRESHOLDS
) -> list[Finding]:
    """The plausibility warnings of ``per_image`` (image_stats of each image)."""
    if not per_image:
        return []
    findings: list[Finding] = []
    if heads.segmentation:
        findings += _check_segmentation(heads, spec, [s["segmentation"]["fractions"] for s in per_image], t)
    if heads.detection:
        findings += _check_detection(spec, [s["detection"] for s in per_image], t)
    if heads.depth:
        findings += _check_depth([s["depth"] for s in per_image], t)
    return findings


def _check_segmentation(heads: HeadSpec, spec: ModelSpec, fr: list[dict], t: Thresholds) -> list[Finding]:
    sg = heads.segmentation
    assert sg is not None
    names = list(fr[0])
    median = {n: float(np.median([f[n] for f in fr])) for n in names}
    background = names[0]  # class id 0: what the contract draws as nothing
    if sg.map and sg.activation == "sigmoid":
        # background is implicit: where no channel reaches the threshold. Maps with a background
        # channel (softmax-trained, e.g. TwinLiteNet's) read this way put class 0 almost nowhere
        channel_keys: tuple[str, ...] = (
            "segmentation.activation",
            "segmentation.map",
            "segmentation.threshold",
        )
        why = "maps with a background channel (TwinLiteNet, YOLOP: two 2-channel maps) need drivable/lane"
    else:
        channel_keys = ("segmentation.classes",)
        why = "classes must name the channels in order, the background channel first"
    out = []
    one = [n for n in names if all(f[n] >= t.one_class for f in fr)]
    if one:
        out.append(
            Finding(
                "segmentation",
                f"class {one[0]!r} covers >= {t.one_class:.0%} of every image: the map says nothing",
                ("segmentation.activation", "segmentation.threshold", "input.mean", "input.std"),
            )
        )
        return out
    if median[background] < t.background_min:
        out.append(
            Finding(
                "segmentation",
                f"class 0 {background!r} covers {median[background]:.1%} of the median image "
                f"(a road scene has sky and surroundings: expected >= {t.background_min:.0%}); {why}",
                channel_keys,
            )
        )
    for n in names[1:]:
        if median[n] > t.foreground_max:
            out.append(
                Finding(
                    "segmentation",
                    f"class {n!r} covers {median[n]:.1%} of the median image "
                    f"(expected <= {t.foreground_max:.0%}); {why}",
                    channel_keys,
                )
            )
    for n in names:
        if "lane" in n.lower() and median[n] > t.lane_max:
            out.append(
                Finding(
                    "segmentation",
                    f"class {n!r} covers {median[n]:.1%} of the median image: lane markings are thin "
                    f"lines (expected <= {t.lane_max:.0%}); {why}",
                    channel_keys,
                )
            )
    if "background" in names and names.index("background") != 0:
        out.append(
            Finding(
                "segmentation",
                f"'background' is class {names.index('background')}; the contract's class 0 is background",
                ("segmentation.classes",),
            )
        )
    return out


def _check_detection(spec: ModelSpec, det: list[dict], t: Thresholds) -> list[Finding]:
    out = []
    total = sum(d["count"] for d in det)
    inverted = sum(d["inverted"] for d in det)
    if total and inverted / total > t.inverted_max:
        out.append(
            Finding(
                "detection",
                f"{inverted} of {total} boxes have x2 < x1 or y2 < y1: the box columns are not read "
                "as the file writes them",
                ("detection.layout", "detection.format"),
            )
        )
    areas = [a for d in det for a in d["area_fraction"]]
    if areas and float(np.median(areas)) > t.box_area_max:
        out.append(
            Finding(
                "detection",
                f"the median box covers {float(np.median(areas)):.0%} of the frame",
                ("detection.layout", "detection.format"),
            )
        )
    if all(d["count"] >= spec.top_k for d in det):
        low = min((min(d["scores"]) for d in det if d["scores"]), default=0.0)
        out.append(
            Finding(
                "detection",
                f"every image fills top_k {spec.top_k} (lowest score {low:.2f}): every candidate passes "
                "the score threshold, as when probabilities go through a second sigmoid",
                ("detection.activation", "score_threshold"),
            )
        )
    elif total == 0:
        out.append(
            Finding(
                "detection",
                f"no detection on any of the {len(det)} images (expected on road scenes with traffic)",
                ("detection.activation", "detection.classes", "score_threshold"),
            )
        )
    return out


def _check_depth(depth: list[dict], t: Thresholds) -> list[Finding]:
    out = []
    bad = sum(d["non_finite"] for d in depth)
    if bad:
        out.append(
            Finding(
                "depth", f"{bad} depth values are not finite (FP16 overflows above 65504 m)", ("depth.scale",)
            )
        )
    finite = [d for d in depth if d["min"] is not None]
    if not finite:
        return out
    median = float(np.median([d["median"] for d in finite]))
    lo, hi = t.depth_median_m
    if not lo <= median <= hi:
        out.append(
            Finding(
                "depth",
                f"median depth {median:.4g} m is outside a road scene's {lo:g}..{hi:g} m "
                "(a unit off: millimetres, decimetres?)",
                ("depth.scale", "depth.kind"),
            )
        )
    spread = [(d["p95"] - d["p5"]) / d["median"] for d in finite if d["median"] > 0]
    if spread and max(spread) < t.depth_spread_min:
        out.append(
            Finding(
                "depth",
                f"depth is constant across every image ((p95 - p5) / median <= {max(spread):.3f})",
                ("depth.output", "depth.kind", "depth.scale"),
            )
        )
    ratios = [d["bottom_over_middle"] for d in finite if d["bottom_over_middle"] is not None]
    if ratios and float(np.median(ratios)) > t.depth_bottom_over_middle_max:
        out.append(
            Finding(
                "depth",
                f"the bottom of the frame is {float(np.median(ratios)):.2f}x farther than its middle "
                "(the road in front of a forward camera is nearest): inverse depth read as metres?",
                ("depth.kind", "depth.shift"),
            )
        )
    return out
