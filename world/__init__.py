"""The synthetic driving world (torch-free: numpy + OpenCV): scenes with ground truth for every head.

``render_scene(seed)`` gives one frame (image, 2D boxes + classes, seg, z-depth, LiDAR points and the
LiDAR->image projection); ``render_sequence(seed, n)`` a drive with ego-motion. Deterministic per seed.
"""

from world.layout import CLASS_NAMES
from world.raster import MIN_BOX_PX, MIN_VISIBLE_FRACTION
from world.scene import Scene, render_scene, render_sequence, world_fingerprint

__all__ = [
    "CLASS_NAMES",
    "MIN_BOX_PX",
    "MIN_VISIBLE_FRACTION",
    "Scene",
    "render_scene",
    "render_sequence",
    "world_fingerprint",
]
