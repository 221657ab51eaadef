"""A rotating multi-beam LiDAR ray-cast against the same ground and boxes the camera sees."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from world.geometry import ray_boxes
from world.layout import PEDESTRIAN, Layout
from world.state import Frame


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
    t_ground = layout.road.ground.intersect(origin, dirs_w[:, 0], dirs_w[:, 1], dirs_w[:, 2])
    t_box, box_cls = _cast_boxes(frame, scanner, dirs_w)
    t = np.minimum(t_ground, t_box)
    keep = (t < scanner.max_range_m) & (t > scanner.min_range_m)
    t, dirs_l, dirs_w = t[keep], dirs_l[keep], dirs_w[keep]
    intensity = _ground_intensity(layout, origin + t[:, None] * dirs_w)
    on_box = t_box[keep] <= t_ground[keep]
    box_int = np.where(box_cls[keep] == PEDESTRIAN, 0.3, 0.55)
    intensity = np.where(on_box, box_int, intensity)
    # a little deterministic speckle on intensity only: ranges stay exact so depth checks are tight
    intensity = intensity * (0.9 + 0.2 * np.abs(np.sin(np.arange(len(t)) * 12.9898)))
    xyz = t[:, None] * dirs_l
    return np.concatenate([xyz, np.clip(intensity, 0.0, 1.0)[:, None]], axis=1).astype(np.float32)


def _cast_boxes(frame: Frame, scanner: Scanner, dirs_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest box hit per ray (inf if none) and the class of the box hit. Each box is tested only
    against the azimuth columns it can cover, seen from the LiDAR: a few percent of the rays."""
    n_az = len(np.arange(0.0, 360.0, scanner.azimuth_step_deg))
    t_box = np.full(len(dirs_w), np.inf)
    cls = np.full(len(dirs_w), -1, dtype=np.int64)
    boxes = frame.boxes
    rays = np.arange(len(dirs_w)).reshape(scanner.beams, n_az)
    for i in range(len(boxes.centres)):
        rel = (boxes.corners(i) - frame.lidar_origin) @ frame.lidar_rotation  # LiDAR frame
        dist = np.linalg.norm(rel, axis=1)
        if dist.min() > scanner.max_range_m:
            continue
        az = np.degrees(np.arctan2(rel[:, 1], rel[:, 0]))
        cols = _azimuth_columns(az, dist.min() < 4.0 * float(boxes.half[i].max()), scanner, n_az)
        sel = rays[:, cols].reshape(-1)
        t, hit = ray_boxes(
            frame.lidar_origin,
            dirs_w[sel],
            boxes.centres[i : i + 1],
            boxes.rotations[i : i + 1],
            boxes.half[i : i + 1],
        )
        closer = (hit >= 0) & (t < t_box[sel])
        t_box[sel[closer]] = t[closer]
        cls[sel[closer]] = boxes.classes[i]
    return t_box, cls


def _azimuth_columns(az_deg: np.ndarray, close: bool, scanner: Scanner, n_az: int) -> np.ndarray:
    if close:  # the box may surround or nearly surround the sensor: test every column
        return np.arange(n_az)
    # the smallest arc holding all corner azimuths (corners of a box not around the origin span < 180)
    ref = az_deg[0]
    rel = (az_deg - ref + 180.0) % 360.0 - 180.0
    lo, hi = ref + rel.min(), ref + rel.max()
    step = scanner.azimuth_step_deg
    return np.arange(int(np.floor(lo / step)) - 1, int(np.ceil(hi / step)) + 2) % n_az


def _ground_intensity(layout: Layout, pts: np.ndarray) -> np.ndarray:
    road = layout.road
    lat = road.ground.lateral(pts[:, 0], pts[:, 1])
    out = np.where(np.abs(lat) < road.half_width, 0.18, 0.3)
    dashes = np.mod(pts[:, 0], road.dash_period) < road.dash_length
    for off, solid, _ in road.boundaries():
        line = np.abs(lat - off) < road.marking_width / 2
        out = np.where(line & (solid | dashes), 0.75, out)
    return out
