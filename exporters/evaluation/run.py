"""Evaluate a predictor on validation scenes rendered by the world."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from exporters.evaluation.backends import Predictor, onnx_predictor, torch_predictor
from exporters.evaluation.evaluate import Evaluator
from exporters.evaluation.split import validation_seeds
from serving.errors import MissingDependencyError, SpecError
from serving.lidar import project_to_depth_image
from serving.spec import ModelSpec

log = logging.getLogger(__name__)


def _lidar_image(scene, hw: tuple[int, int]) -> np.ndarray:
    if scene.points is None:
        raise SpecError("a fusion network needs scenes rendered with LiDAR points")
    return project_to_depth_image(scene.points, scene.projection, hw)


# world scenes of one batch -> one prediction dict per scene (the served backend predicts from the
# scene itself: the frame plus its LiDAR points and projection, which the server projects)
ScenePredictor = Callable[[Sequence[Any]], list[dict[str, np.ndarray]]]


def _over_scenes(predict: Predictor, spec: ModelSpec) -> ScenePredictor:
    """An in-process predictor (network inputs) as a scene predictor."""

    def run(scenes: Sequence[Any]) -> list[dict[str, np.ndarray]]:
        images = np.stack([sc.image.transpose(2, 0, 1) for sc in scenes])
        lidar = np.stack([_lidar_image(sc, spec.input_hw) for sc in scenes]) if spec.fusion else None
        return predict(images, lidar)

    return run


def evaluate_scenes(
    predict: ScenePredictor,
    spec: ModelSpec,
    seeds: Iterable[int] | None = None,
    num_scenes: int = 200,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, float]:
    """Render each validation scene at the spec's input size, predict, and score; metrics dict."""
    from world import render_scene

    seeds = list(seeds) if seeds is not None else validation_seeds(num_scenes)
    hw = spec.input_hw
    ev = Evaluator(spec)
    start = time.perf_counter()
    bar = tqdm(total=len(seeds), desc=f"eval {spec.name}", unit="scene", disable=not progress)
    for i in range(0, len(seeds), batch_size):
        scenes = [render_scene(s, hw=hw, lidar=spec.fusion) for s in seeds[i : i + batch_size]]
        for pred, scene in zip(predict(scenes), scenes, strict=True):
            ev.add(pred, scene)
        bar.update(len(scenes))
    bar.close()
    metrics = ev.result()
    metrics["seconds"] = time.perf_counter() - start
    log.info("evaluated %s on %d scenes in %.1fs", spec.name, len(seeds), metrics["seconds"])
    return metrics


def evaluate_predictor(
    predict: Predictor,
    spec: ModelSpec,
    seeds: Iterable[int] | None = None,
    num_scenes: int = 200,
    batch_size: int = 4,
    progress: bool = True,
) -> dict[str, float]:
    """:func:`evaluate_scenes` for a predictor of network inputs (torch or ONNX Runtime)."""
    return evaluate_scenes(_over_scenes(predict, spec), spec, seeds, num_scenes, batch_size, progress)


def evaluate_model(
    network: str | None = None,
    checkpoint: Path | None = None,
    backend: str = "torch",
    onnx_path: Path | None = None,
    num_scenes: int = 200,
    threads: int = 2,
    progress: bool = True,
) -> tuple[ModelSpec, dict[str, float]]:
    """Score a checkpoint (torch backend; default: the shipped one) or an exported ONNX file
    (onnx backend; the spec comes from its metadata) on the first ``num_scenes`` validation scenes."""
    if backend == "onnx":
        if onnx_path is None:
            raise SpecError("the onnx backend needs the path of an exported .onnx file")
        predict, spec = onnx_predictor(Path(onnx_path))
        if network is not None and spec.name != network:
            raise SpecError(f"{onnx_path} holds network {spec.name}, not {network}")
    elif backend == "torch":
        if network is None and checkpoint is None:
            raise SpecError("name a network or a checkpoint to evaluate")
        try:
            import torch
        except ImportError as exc:
            raise MissingDependencyError("torch", "export") from exc
        from exporters.networks import load_checkpoint

        torch.set_num_threads(threads)
        if checkpoint is None:
            from exporters.weights import default_checkpoint

            checkpoint = default_checkpoint(str(network))
        model, _ = load_checkpoint(checkpoint, network=network)
        predict, spec = torch_predictor(model), model.spec
    else:
        raise SpecError(f"unknown backend {backend!r}; use torch or onnx")
    return spec, evaluate_predictor(predict, spec, num_scenes=num_scenes, progress=progress)
