"""Helpers of the real-tritonserver tests: raw gRPC calls, world scenes and their in-process reference.

The reference is the same ONNX file run in-process with ONNX Runtime and the same letterbox geometry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from serving import spec as S
from serving.letterbox import letterbox_image
from serving.lidar import project_to_depth_image
from tests.output_compare import output_differences  # noqa: F401 - re-exported for the tests

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import np_to_triton_dtype  # noqa: E402

SOURCE_HW = (360, 640)  # world scenes; letterboxed into the served 192x320 networks (scale 0.5)


# --- helpers ----------------------------------------------------------------------------------
def infer(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(url)
    try:
        tensors = []
        for name, arr in inputs.items():
            t = grpcclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
            t.set_data_from_numpy(arr)
            tensors.append(t)
        result = client.infer(model, tensors, client_timeout=120)
        return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}
    finally:
        client.close()


def stats(url: str, model: str) -> tuple[int, int]:
    client = grpcclient.InferenceServerClient(url)
    try:
        s = client.get_inference_statistics(model).model_stats[0]
        return int(s.inference_count), int(s.execution_count)
    finally:
        client.close()


def concurrently(fns: list[Callable[[], object]]) -> list[object]:
    """Run the calls at once (a barrier releases them together); exceptions are returned as values."""
    barrier = threading.Barrier(len(fns))
    out: list[object] = [None] * len(fns)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fns[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as served (intra_op_threads=1 in the test repository)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def scenes(seeds, hw=SOURCE_HW, lidar=False):
    from world import render_scene

    return [render_scene(seed, hw=hw, lidar=lidar) for seed in seeds]


def reference(spec, session, scene, resize_to_source=False) -> dict[str, np.ndarray]:
    """In-process pipeline: letterbox -> ONNX Runtime -> outputs in source terms."""
    boxed, lb = letterbox_image(
        scene.image, spec.input_hw, spec.letterbox.pad_value, spec.letterbox.allow_upscale
    )
    feeds = {S.IMAGES: boxed.transpose(2, 0, 1)[None].copy()}
    if spec.fusion:
        feeds[S.LIDAR_DEPTH] = project_to_depth_image(scene.points, scene.projection, spec.input_hw, lb)[None]
    names = [t.name for t in spec.network_outputs]
    raw = dict(zip(names, (v[0] for v in session.run(names, feeds)), strict=True))
    n = int(raw[S.NUM_DETS])
    boxes = np.zeros_like(raw[S.DET_BOXES])
    boxes[:n] = lb.boxes_to_source(raw[S.DET_BOXES][:n])
    return {
        S.NUM_DETS: np.array([n]),
        S.DET_BOXES: boxes,
        S.DET_SCORES: raw[S.DET_SCORES],
        S.DET_CLASSES: raw[S.DET_CLASSES],
        S.SEG_MASK: lb.crop_dense(raw[S.SEG_MASK], 1, resize_to_source),
        S.DEPTH: lb.crop_dense(raw[S.DEPTH], spec.depth_stride, resize_to_source),
    }


def pipeline_inputs(scene, fusion=False, encoded: bytes | None = None) -> dict[str, np.ndarray]:
    if encoded is not None:
        inputs = {S.IMAGE_ENCODED: np.frombuffer(encoded, np.uint8)[None]}
    else:
        inputs = {S.IMAGE: scene.image[None]}
    if fusion:
        inputs[S.POINTS] = scene.points[None]
        inputs[S.PROJECTION] = scene.projection[None]
    return inputs


def first(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop the batch axis of one request's outputs."""
    return {k: v[0] for k, v in outputs.items()}


def check_not_empty(outputs: dict[str, np.ndarray]) -> None:
    # numpy 2 under the wheel's stub returns outputs with zero bytes, silently (DESIGN.md)
    for name, arr in outputs.items():
        assert arr.size > 0 and arr.nbytes == arr.size * arr.itemsize, f"{name} came back empty: {arr.shape}"


ONE_POINT = np.array([[0, 0, 10, 1]], np.float32)  # one LiDAR return, for fusion pipelines
PROJ = np.array([[80, 0, 100, 0], [0, 80, 60, 0], [0, 0, 1, 0]], np.float32)


def check_pipelines_answer_with_their_heads(
    url: str, pipelines: dict, specs: dict, frame: np.ndarray
) -> None:
    """Each ensemble of ``pipelines`` (network spec name -> ensemble) is ready, reports the spec the
    repository holds, and answers ``frame`` with exactly the heads its network has."""
    from clients import PerceptionClient

    for net, ensemble in pipelines.items():
        with PerceptionClient(url, model=ensemble) as client:
            assert client.is_ready() and client.spec == specs[net]  # read from the server, not assumed
            lidar = {"points": ONE_POINT, "projection": PROJ} if client.spec.fusion else {}
            result = client.infer(frame=frame, **lidar)
        tasks = specs[net].tasks
        assert (result.detections is not None) == ("detection" in tasks), ensemble
        assert (result.seg is not None) == ("segmentation" in tasks), ensemble
        assert (result.depth is not None) == ("depth" in tasks), ensemble
        assert result.source_hw == frame.shape[:2]


_BROKEN_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("weights file is corrupt (test)")

    def execute(self, requests):
        return []
"""
_BROKEN_CONFIG = """name: "broken"
backend: "python"
max_batch_size: 0
input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""


def write_broken_model(repository: Path) -> None:
    """Add model ``broken`` to ``repository``: a python model whose initialize raises."""
    (repository / "broken" / "1").mkdir(parents=True)
    (repository / "broken" / "config.pbtxt").write_text(_BROKEN_CONFIG)
    (repository / "broken" / "1" / "model.py").write_text(_BROKEN_MODEL)
