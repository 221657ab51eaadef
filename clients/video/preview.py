"""One image's network outputs drawn as `percept video` draws a served frame (render.annotate):
what `percept import-onnx --images` writes beside an imported model, so that a person sees the
heads on their own images before serving them."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from clients.codec import result_from_network
from clients.video.render import annotate
from serving.letterbox import Letterbox
from serving.spec import ModelSpec


def draw_network_outputs(
    rgb: np.ndarray, spec: ModelSpec, outputs: Mapping[str, np.ndarray], lb: Letterbox, header: str = ""
) -> np.ndarray:
    """An RGB source image and the network outputs of it (batch axis removed) -> annotated BGR."""
    result = result_from_network(spec, outputs, lb)
    return annotate(
        rgb, result, header=header, depth_head="depth" in spec.tasks, det_classes=spec.det_classes
    )
