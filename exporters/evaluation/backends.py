"""Prediction backends for evaluation: a PyTorch model or an ONNX file, both producing one dict of
numpy arrays per image in the spec's output format (the scoring itself stays torch-free).
torch / onnxruntime / onnx are imported lazily."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from serving.errors import MissingDependencyError, SpecError
from serving.spec import IMAGES, LIDAR_DEPTH, ModelSpec

log = logging.getLogger(__name__)

# images uint8 [B,3,H,W], lidar float32 [B,1,H,W] or None -> one prediction dict per image
Predictor = Callable[[np.ndarray, np.ndarray | None], list[dict[str, np.ndarray]]]


def _feeds(spec: ModelSpec, images: np.ndarray, lidar: np.ndarray | None) -> dict[str, np.ndarray]:
    """The network inputs of one batch, named and typed by the spec."""
    feeds = {IMAGES: np.ascontiguousarray(images, dtype=np.uint8)}
    if spec.fusion:
        if lidar is None:
            raise SpecError(f"{spec.name} is a fusion network and needs a LiDAR depth image")
        feeds[LIDAR_DEPTH] = np.ascontiguousarray(lidar, dtype=np.float32)
    return feeds


def _per_image(outputs: dict[str, np.ndarray], batch: int) -> list[dict[str, np.ndarray]]:
    return [{k: v[i] for k, v in outputs.items()} for i in range(batch)]


def torch_predictor(model) -> Predictor:
    """Run a PerceptionNet eagerly through the export stage's export graph, so decode, class-aware
    NMS (its numpy reference kernel), argmax and the FP16 depth cast are the very rules the exported
    ONNX graph applies: the torch and ONNX backends score alike."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("torch", "export") from exc
    from exporters.export.graph import build_export_graph, run_eager

    spec: ModelSpec = model.spec
    graph = build_export_graph(model, spec)

    def predict(images: np.ndarray, lidar: np.ndarray | None) -> list[dict[str, np.ndarray]]:
        return _per_image(run_eager(graph, _feeds(spec, images, lidar)), len(images))

    return predict


def onnx_predictor(path: Path, spec: ModelSpec | None = None) -> tuple[Predictor, ModelSpec]:
    """Run an exported ONNX file with ONNX Runtime (CPU); its outputs already follow the spec."""
    from serving.ort_session import create_session

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"ONNX file not found: {path}")
    if spec is None:
        from serving.onnx_meta import read_spec

        spec = read_spec(path)
    session = create_session(path, intra_op_threads=2, error=SpecError, extra="export")
    names = [o.name for o in session.get_outputs()]
    want = [t.name for t in spec.network_outputs]
    missing = sorted(set(want) - set(names))
    if missing:
        raise SpecError(f"{path}: ONNX outputs lack {missing} (has {names})")

    def predict(images: np.ndarray, lidar: np.ndarray | None) -> list[dict[str, np.ndarray]]:
        outs = dict(zip(want, session.run(want, _feeds(spec, images, lidar)), strict=True))
        return _per_image(outs, len(images))

    return predict, spec
