"""A picture of one scene and its ground truth: image with boxes, segmentation, depth, LiDAR."""

from __future__ import annotations

import cv2
import numpy as np

from serving.lidar import project_to_depth_image
from world.layout import CLASS_NAMES
from world.scene import Scene

_BOX_BGR = ((0, 0, 255), (255, 128, 0), (0, 200, 0))  # car, truck, pedestrian
_SEG_BGR = np.array([[0, 0, 0], [128, 64, 128], [0, 230, 255]], np.uint8)
MAX_DEPTH_SHOWN_M = 80.0


def preview(scene: Scene) -> np.ndarray:
    """BGR uint8 picture, 2x2 panels: image + boxes | seg over image | depth | LiDAR depth."""
    h, w = scene.image.shape[:2]
    image = cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR)
    boxed = image.copy()
    for box, cls in zip(scene.boxes.astype(int), scene.classes, strict=True):
        colour = _BOX_BGR[int(cls) % len(_BOX_BGR)]
        cv2.rectangle(boxed, (box[0], box[1]), (box[2] - 1, box[3] - 1), colour, 1)
        if box[2] - box[0] >= 20:
            cv2.putText(boxed, CLASS_NAMES[int(cls)], (box[0], max(box[1] - 2, 8)), 0, 0.35, colour, 1)
    seg = cv2.addWeighted(image, 0.4, _SEG_BGR[scene.seg], 0.6, 0.0)
    depth = _colour_depth(scene.depth)
    if scene.points is not None:
        sparse = project_to_depth_image(scene.points, scene.projection, (h, w))[0]
        lidar = _colour_depth(cv2.dilate(sparse, np.ones((2, 2), np.uint8)))
    else:
        lidar = np.zeros_like(image)
    return np.vstack([np.hstack([boxed, seg]), np.hstack([depth, lidar])])


def _colour_depth(depth: np.ndarray) -> np.ndarray:
    """Near = warm, far = cool; undefined (0) black."""
    scaled = np.clip(255.0 * (1.0 - depth / MAX_DEPTH_SHOWN_M), 0, 255).astype(np.uint8)
    out = cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO)
    out[depth <= 0] = 0
    return out
