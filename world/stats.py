"""Measurements of the world: rendering speed and the make-up of its ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from serving.spec import DEFAULT_INPUT_HW
from world.layout import CLASS_NAMES
from world.scene import render_scene

SMALL_BOX_PX = 32  # COCO's "small": area under 32x32 pixels


@dataclass(frozen=True)
class WorldStats:
    seeds: int
    hw: tuple[int, int]
    scenes_per_s: float  # camera only (image + boxes + seg + depth), CPU time of this process
    scenes_per_s_lidar: float  # the same with the LiDAR sweep
    wall_scenes_per_s: float  # camera only, wall clock (lower on a loaded machine)
    boxes: int
    small_box_share: float  # share of boxes with area < 32x32 pixels
    boxes_per_scene: float
    class_share: dict[str, float]
    occluded_share: float  # share of boxes whose object is partly hidden by another (< 95% visible)
    points_per_scene: float
    drivable_share: float  # of all pixels
    lane_share: float

    def as_dict(self) -> dict:
        return asdict(self)


def measure(
    seeds: int = 200, hw: tuple[int, int] = DEFAULT_INPUT_HW, on_scene: Callable[[], None] | None = None
) -> WorldStats:
    """Render ``seeds`` scenes without and (a quarter as many) with LiDAR; time and count them."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    areas, classes, occluded = [], [], 0
    drivable = lane = 0.0
    for seed in range(seeds):
        s = render_scene(seed, hw, lidar=False)
        areas.append((s.boxes[:, 2] - s.boxes[:, 0]) * (s.boxes[:, 3] - s.boxes[:, 1]))
        classes.append(s.classes)
        drivable += float((s.seg == 1).mean())
        lane += float((s.seg == 2).mean())
        if s.visible_fraction is not None:
            occluded += int((s.visible_fraction < 0.95).sum())
        if on_scene:
            on_scene()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n_lidar = max(1, seeds // 4)
    cpu1, points = time.process_time(), 0
    for seed in range(n_lidar):
        s = render_scene(seed, hw, lidar=True)
        points += len(s.points) if s.points is not None else 0
        if on_scene:
            on_scene()
    cpu_lidar = time.process_time() - cpu1
    area = np.concatenate(areas)
    cls = np.concatenate(classes)
    total = max(len(area), 1)
    return WorldStats(
        seeds=seeds,
        hw=hw,
        scenes_per_s=seeds / max(cpu, 1e-9),
        scenes_per_s_lidar=n_lidar / max(cpu_lidar, 1e-9),
        wall_scenes_per_s=seeds / max(wall, 1e-9),
        boxes=len(area),
        small_box_share=float((area < SMALL_BOX_PX**2).sum() / total),
        boxes_per_scene=len(area) / seeds,
        class_share={name: float((cls == k).sum() / total) for k, name in enumerate(CLASS_NAMES)},
        occluded_share=occluded / total,
        points_per_scene=points / n_lidar,
        drivable_share=drivable / seeds,
        lane_share=lane / seeds,
    )
