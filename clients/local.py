"""In-process backend: the exported ONNX network run with ONNX Runtime, no server.

Same letterbox and decoding as the served pipeline (serving.letterbox), so `percept video
--backend local` gives the same results as the server. The spec is read from the ONNX metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from clients import codec
from clients.results import PerceptionResult
from serving.errors import ClientError, SpecError
from serving.ort_session import create_session
from serving.spec import SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)


class LocalModel:
    def __init__(self, onnx_path: str | Path, threads: int = 0, resize_to_source: bool = False) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise SpecError(f"ONNX model not found: {path}")
        self._session = create_session(path, intra_op_threads=threads, error=SpecError, extra="client")
        meta = self._session.get_modelmeta().custom_metadata_map
        spec = codec.spec_from_parameters(meta)
        if spec is None:
            raise SpecError(f"{path} has no {SPEC_KEY!r} metadata: export it with `percept export`")
        self.spec: ModelSpec = spec
        self.path = path
        self.resize_to_source = resize_to_source
        self._outputs = [o.name for o in self._session.get_outputs()]

    def infer(
        self,
        image: bytes | None = None,
        frame: np.ndarray | None = None,
        points: np.ndarray | None = None,
        projection: np.ndarray | None = None,
    ) -> PerceptionResult:
        rgb = codec.to_rgb(image, frame)
        lidar = codec.check_lidar(self.spec, points, projection)
        inputs, lb = codec.network_inputs(self.spec, rgb, lidar)
        try:
            values = self._session.run(self._outputs, inputs)
        except Exception as exc:
            raise ClientError(f"ONNX Runtime failed on {self.path.name}: {exc}") from exc
        outputs = {name: v[0] for name, v in zip(self._outputs, values, strict=True)}
        return codec.result_from_network(self.spec, outputs, lb, self.resize_to_source)
