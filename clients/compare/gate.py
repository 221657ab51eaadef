"""The rollout gate: bounds per head, checked input by input.

The bounds are a row of the verification tolerance table (serving.tolerances.TOLERANCES): the row
of the candidate's precision (an FP16 / INT8 ONNX records it) unless ``--precision`` names one, and
a YAML file (``--bounds``) may override any of its fields::

    precision: fp16            # the row to start from (optional)
    seg_agreement: 0.995       # worst frame's pixel agreement, per input
    depth_rel_error: 0.02      # the depth_quantile of the relative error over valid pixels
    depth_quantile: 0.99
    det_iou: 0.9               # a matched pair: same class, IoU >= det_iou ...
    det_score_diff: 0.02       # ... and |score diff| <= det_score_diff
    max_unmatched_fraction: 0.05   # (missing + extra) / max(baseline, candidate), per class (as verify)

Per input: detection fails on a class whose unmatched fraction exceeds its bound, segmentation when
its worst frame's pixel agreement is below the bound, depth when the bounded quantile of the
relative error exceeds its bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from serving.errors import SpecError
from serving.tolerances import TOLERANCES, Tolerances

GATED = (
    "seg_agreement",
    "depth_rel_error",
    "depth_quantile",
    "det_iou",
    "det_score_diff",
    "max_unmatched_fraction",
)


class BoundsError(SpecError):
    """A bounds file that cannot be read or names what is not a bound."""


def load_bounds(precision: str | None, path: Path | None) -> tuple[str, Tolerances]:
    """(row name, bounds): ``precision``'s row (fp32 when None), then the YAML file's fields."""
    data: dict = {}
    if path is not None:
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BoundsError(f"bounds file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise BoundsError(f"bounds file {path}: expected a mapping of bound: value")
    row = str(data.pop("precision", None) or precision or "fp32")
    if row not in TOLERANCES:
        raise BoundsError(f"no tolerance row {row!r}: one of {', '.join(TOLERANCES)}")
    known = {f.name for f in fields(Tolerances)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BoundsError(f"bounds file {path}: unknown bound(s) {unknown}; known: {', '.join(GATED)}")
    try:
        bounds = replace(TOLERANCES[row], **{k: float(v) for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        raise BoundsError(f"bounds file {path}: {exc}") from None
    if bounds.depth_quantile not in (0.5, 0.9, 0.99, 1.0):
        raise BoundsError(f"depth_quantile {bounds.depth_quantile:g}: one of 0.5, 0.9, 0.99 or 1.0")
    return row, bounds


def bounds_dict(bounds: Tolerances) -> dict:
    return {k: v for k, v in asdict(bounds).items() if k in GATED}


@dataclass(frozen=True)
class Failure:
    input: str
    head: str
    cls: str | None
    measure: str
    value: float
    bound: float
    relation: str  # how the value should relate to the bound: "<=" or ">="

    def line(self) -> str:
        cls = f", class {self.cls}" if self.cls else ""
        bad = ">" if self.relation == "<=" else "<"
        where = f"FAIL input {self.input}, head {self.head}{cls}"
        return f"{where}: {self.measure} {self.value:.4g} {bad} {self.bound:g}"


def check(name: str, numbers: dict, bounds: Tolerances) -> list[Failure]:
    """The failures of one input's agreement numbers (InputAgreement.to_dict) against ``bounds``."""
    out: list[Failure] = []
    det = numbers.get("detection")
    if det is not None:
        worst = sorted(det["per_class"].items(), key=lambda kv: -kv[1]["unmatched_fraction"])
        for cls, c in worst:
            if c["unmatched_fraction"] > bounds.max_unmatched_fraction:
                measure = (
                    f"unmatched fraction (missing {c['missing']} of {c['baseline']}, "
                    f"extra {c['extra']} of {c['candidate']})"
                )
                out.append(
                    Failure(
                        name,
                        "detection",
                        cls,
                        measure,
                        c["unmatched_fraction"],
                        bounds.max_unmatched_fraction,
                        "<=",
                    )
                )
    seg = numbers.get("segmentation")
    if seg is not None and seg["worst_frame_agreement"] < bounds.seg_agreement:
        cls = min(seg["class_iou"], key=seg["class_iou"].get)
        measure = (
            f"pixel agreement of frame {seg['worst_frame']} (lowest class IoU {seg['class_iou'][cls]:.4f})"
        )
        out.append(
            Failure(
                name, "segmentation", cls, measure, seg["worst_frame_agreement"], bounds.seg_agreement, ">="
            )
        )
    depth = numbers.get("depth")
    if depth is not None:
        q = bounds.depth_quantile
        key = "max" if q >= 1.0 else f"p{round(q * 100)}"
        value = depth["rel_error"][key]
        if value > bounds.depth_rel_error:
            out.append(
                Failure(name, "depth", None, f"{key} relative error", value, bounds.depth_rel_error, "<=")
            )
    return out
