"""`percept compare --scenes N`: where ground truth exists (the world's validation scenes), the
metric deltas too. Each scene is rendered at the models' input size (the letterbox is the identity,
as in clients.evaluation) and goes to both sides like a frame of an input; both sides' predictions
are scored against the scene's ground truth by an evaluator the caller brings
(exporters.evaluation.Evaluator: clients may not import the model side, the CLI joins the two).

Gated: |d mAP@0.5|, |d mIoU| and |d AbsRel| (candidate minus baseline) within the row's
``d_map50`` / ``d_miou`` / ``d_abs_rel``, the verification stage's metric-parity bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clients.compare.gate import Failure
from clients.video.sources import FrameItem, InputSource
from serving.spec import ModelSpec
from serving.tolerances import Tolerances

NAME = "world-scenes"
# metric, head, bound (a field of Tolerances)
DELTAS = (
    ("map50", "detection", "d_map50"),
    ("miou", "segmentation", "d_miou"),
    ("abs_rel", "depth", "d_abs_rel"),
)


@dataclass(frozen=True)
class GroundTruth:
    seeds: tuple[int, ...]  # world scene seeds (exporters.evaluation.validation_seeds(N))
    evaluator: Callable[[ModelSpec], Any]  # spec -> an object with add(prediction, scene) and result()


def source(spec: ModelSpec) -> InputSource:
    return InputSource(Path(NAME), "kitti" if spec.fusion else "video", NAME)


def items(spec: ModelSpec, seeds: tuple[int, ...]) -> Iterator[tuple[FrameItem, Any]]:
    """(frame, scene) of every seed, rendered at the model's input size (LiDAR for a fusion model)."""
    from world import render_scene

    for i, seed in enumerate(seeds):
        scene = render_scene(seed, hw=spec.input_hw, lidar=spec.fusion)
        lidar = (scene.points, scene.projection) if spec.fusion else (None, None)
        yield FrameItem(i, i / 10.0, scene.image, *lidar), scene


class Scoring:
    """Both sides' predictions scored against the scenes' ground truth."""

    def __init__(self, truth: GroundTruth, spec: ModelSpec) -> None:
        self.spec = spec
        self.evaluators = truth.evaluator(spec), truth.evaluator(spec)

    def add(self, scene: Any, base, cand) -> None:
        from clients.evaluation import prediction_from_result

        for ev, result in zip(self.evaluators, (base, cand), strict=True):
            ev.add(prediction_from_result(result, self.spec), scene)

    def result(self) -> dict:
        base, cand = (ev.result() for ev in self.evaluators)
        delta = {k: cand[k] - base[k] for k, _, _ in DELTAS if k in base and k in cand}
        return {"baseline": base, "candidate": cand, "delta": delta}


def check_deltas(metrics: dict, bounds: Tolerances) -> list[Failure]:
    out = []
    for key, head, bound_name in DELTAS:
        if key in metrics["delta"]:
            d, bound = metrics["delta"][key], getattr(bounds, bound_name)
            if abs(d) > bound:
                out.append(Failure(NAME, head, None, f"|d {key}| vs ground truth", abs(d), bound, "<="))
    return out
