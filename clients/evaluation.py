"""A served pipeline as a predictor for `percept eval --backend triton` (torch-free).

Each scene's frame goes to the ensemble at the size it was rendered, the served spec's input size,
so the letterbox is the identity (scale 1, no padding): boxes "in source pixels" are model-input
pixels and the dense maps come back at model resolution (1/depth_stride for depth), exactly what
an in-process ONNX Runtime run gives. That keeps the comparison exact without ``resize_to_source``,
whose resampling would add a difference of its own. Fusion pipelines get the scene's LiDAR points
and projection and project them on the server, as a real client does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clients.client import PerceptionClient
from clients.options import ClientOptions
from clients.results import PerceptionResult
from serving import spec as S
from serving.errors import SpecError
from serving.spec import ModelSpec


def prediction_from_result(result: PerceptionResult, spec: ModelSpec) -> dict[str, np.ndarray]:
    """One served result as a prediction in the spec's tensor names (the evaluator's input)."""
    out: dict[str, np.ndarray] = {}
    if result.detections is not None:
        dets = result.detections
        out[S.NUM_DETS] = np.array([len(dets)], np.int32)
        out[S.DET_BOXES] = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
        out[S.DET_SCORES] = np.array([d.score for d in dets], np.float32)
        out[S.DET_CLASSES] = np.array([d.class_id for d in dets], np.int32)
    if result.seg is not None:
        out[S.SEG_MASK] = result.seg
    if result.depth is not None:
        out[S.DEPTH] = result.depth
    missing = [t for t in spec.tasks if not _has_head(out, t)]
    if missing:
        raise SpecError(f"the served {spec.name} answered without its {missing} head(s)")
    return out


def _has_head(prediction: dict[str, np.ndarray], task: str) -> bool:
    key = {"detection": S.NUM_DETS, "segmentation": S.SEG_MASK, "depth": S.DEPTH}[task]
    return key in prediction


class ServedPredictor:
    """Scenes (world ``Scene``: ``image`` HxWx3 RGB, ``points``, ``projection``) -> predictions of
    the served pipeline ``model``; its spec is read from the server."""

    def __init__(self, url: str, model: str, options: ClientOptions | None = None) -> None:
        self._client = PerceptionClient(url, options, model=model)
        self.spec = self._client.spec

    def __call__(self, scenes: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        return [self.predict(scene) for scene in scenes]

    def predict(self, scene: Any) -> dict[str, np.ndarray]:
        frame = np.ascontiguousarray(scene.image, dtype=np.uint8)
        if frame.shape[:2] != self.spec.input_hw:
            raise SpecError(
                f"scene rendered at {frame.shape[:2]}, the served {self.spec.name} takes "
                f"{self.spec.input_hw}: render at the model's size for an exact comparison"
            )
        points = projection = None
        if self.spec.fusion:
            if scene.points is None:
                raise SpecError("a fusion pipeline needs scenes rendered with LiDAR points")
            points, projection = scene.points, scene.projection
        result = self._client.infer(frame=frame, points=points, projection=projection)
        return prediction_from_result(result, self.spec)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServedPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
