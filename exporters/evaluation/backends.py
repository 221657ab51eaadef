"""Prediction backends for evaluation: a PyTorch model or an ONNX file, both producing one dict of
numpy arrays per image in the spec's output format. torch / onnxruntime are imported lazily."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exporters.evaluation.nms import postprocess_detections
from serving.errors import MissingDependencyError, SpecError
from serving.spec import DEPTH, IMAGES, LIDAR_DEPTH, SEG_MASK, ModelSpec

log = logging.getLogger(__name__)

# images uint8 [B,3,H,W], lidar float32 [B,1,H,W] or None -> one prediction dict per image
Predictor = Callable[[np.ndarray, np.ndarray | None], list[dict[str, np.ndarray]]]


def torch_predictor(model) -> Predictor:
    """Run a PerceptionNet eagerly; decode + NMS in numpy (mirrors the exported graph's rules)."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "export") from exc
    spec: ModelSpec = model.spec
    model.eval()

    def predict(images: np.ndarray, lidar: np.ndarray | None) -> list[dict[str, np.ndarray]]:
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images))
            ld = torch.from_numpy(np.ascontiguousarray(lidar)) if lidar is not None else None
            out = model(x, ld) if spec.fusion else model(x)
            results: list[dict[str, np.ndarray]] = [{} for _ in range(len(images))]
            if "det" in out:
                boxes, scores = model.decode_detections(out["det"])
                boxes_np, scores_np = boxes.float().numpy(), scores.float().numpy()
                for i, r in enumerate(results):
                    r.update(postprocess_detections(boxes_np[i], scores_np[i], spec))
            if "seg" in out:
                seg = out["seg"].argmax(1).to(torch.uint8).numpy()
                for i, r in enumerate(results):
                    r[SEG_MASK] = seg[i]
            if "depth" in out:
                depth = out["depth"][:, 0].to(torch.float16).numpy()
                for i, r in enumerate(results):
                    r[DEPTH] = depth[i]
        return results

    return predict


def onnx_predictor(path: Path, spec: ModelSpec | None = None) -> tuple[Predictor, ModelSpec]:
    """Run an exported ONNX file with ONNX Runtime (CPU); its outputs already follow the spec."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "export") from exc
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"ONNX file not found: {path}")
    if spec is None:
        spec = read_spec_from_onnx(path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    want = [t.name for t in spec.network_outputs]
    missing = sorted(set(want) - set(names))
    if missing:
        raise SpecError(f"{path}: ONNX outputs lack {missing} (has {names})")

    def predict(images: np.ndarray, lidar: np.ndarray | None) -> list[dict[str, np.ndarray]]:
        feeds = {IMAGES: np.ascontiguousarray(images, dtype=np.uint8)}
        if spec.fusion:
            if lidar is None:
                raise SpecError(f"{spec.name} is a fusion network and needs a LiDAR depth image")
            feeds[LIDAR_DEPTH] = np.ascontiguousarray(lidar, dtype=np.float32)
        outs = dict(zip(want, session.run(want, feeds), strict=True))
        return [{k: v[i] for k, v in outs.items()} for i in range(len(images))]

    return predict, spec


def read_spec_from_onnx(path: Path) -> ModelSpec:
    """The ModelSpec stored in an exported ONNX file's metadata (key ``perception_spec``)."""
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError("onnx", "export") from exc
    model = onnx.load(str(path), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    if "perception_spec" not in meta:
        raise SpecError(
            f"{path}: no 'perception_spec' in the ONNX metadata; was it written by percept export?"
        )
    import json

    return ModelSpec.from_dict(json.loads(meta["perception_spec"]))
