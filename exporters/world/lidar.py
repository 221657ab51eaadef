"""A rotating multi-beam LiDAR ray-cast against the same ground and boxes the camera sees."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from exporters.world.geometry import ray_boxes
from exporters.world.layout import PEDESTRIAN, Layout
from exporters.world.state import Frame


@dataclass(frozen=True)
class Scanner:
    beams: int = 32
    min_elevation_deg: float = -25.0
    max_elevation_deg: float = 3.0
    azimuth_step_deg: float = 0.3
    max_range_m: float = 100.0
    min_range_m: float = 1.0


DEFAULT_SCANNER = Scanner()


@functools.lru_cache(maxsize=4)
def _beam_directions(scanner: Scanner) -> np.ndarray:
    """[R,3] unit directions in the LiDAR frame (x forward, y left, z up), beam-major."""
    el = np.radians(np.linspace(scanner.min_elevation_deg, scanner.max_elevation_deg, scanner.beams))
    az = np.radians(np.arange(0.0, 360.0, scanner.azimuth_step_deg))
    el, az = np.meshgrid(el, az, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
    return dirs.reshape(-1, 3)


def scan(layout: Layout, frame: Frame, scanner: Scanner = DEFAULT_SCANNER) -> np.ndarray:
    """Points [M,4] float32: x, y, z in the LiDAR frame and an intensity in 0..1 per return."""
    dirs_l = _beam_directions(scanner)
    dirs_w = dirs_l @ frame.lidar_rotation.T
    origin = frame.lidar_origin
    ground = layout.road.ground
    t_ground = ground.intersect(origin, dirs_w[:, 0], dirs_w[:, 1], dirs_w[:, 2])
    boxes = frame.boxes
    near = _near_boxes(frame, scanner.max_range_m)
    t_box, idx = ray_boxes(origin, dirs_w, boxes.centres[near], boxes.rotations[near], boxes.half[near])
    t = np.minimum(t_ground, t_box)
    keep = (t < scanner.max_range_m) & (t > scanner.min_range_m)
    t, dirs_l, dirs_w = t[keep], dirs_l[keep], dirs_w[keep]
    on_box = t_box[keep] <= t_ground[keep]
    which = idx[keep]
    intensity = _ground_intensity(layout, origin + t[:, None] * dirs_w)
    if len(near):
        box_classes = boxes.classes[near][np.maximum(which, 0)]
        box_int = np.where(box_classes == PEDESTRIAN, 0.3, 0.55)
        intensity = np.where(on_box, box_int, intensity)
    # a little deterministic speckle on intensity only: ranges stay exact so depth checks are tight
    intensity = intensity * (0.9 + 0.2 * np.abs(np.sin(np.arange(len(t)) * 12.9898)))
    xyz = t[:, None] * dirs_l
    return np.concatenate([xyz, np.clip(intensity, 0.0, 1.0)[:, None]], axis=1).astype(np.float32)


def _near_boxes(frame: Frame, max_range: float) -> np.ndarray:
    dist = np.linalg.norm(frame.boxes.centres - frame.lidar_origin, axis=1)
    reach = np.linalg.norm(frame.boxes.half, axis=1)
    return np.flatnonzero(dist - reach < max_range)


def _ground_intensity(layout: Layout, pts: np.ndarray) -> np.ndarray:
    road = layout.road
    lat = road.ground.lateral(pts[:, 0], pts[:, 1])
    out = np.where(np.abs(lat) < road.half_width, 0.18, 0.3)
    dashes = np.mod(pts[:, 0], road.dash_period) < road.dash_length
    for off, solid, _ in road.boundaries():
        line = np.abs(lat - off) < road.marking_width / 2
        out = np.where(line & (solid | dashes), 0.75, out)
    return out
