"""Scenes and sequences: a sampled layout rendered at an instant into an image and its ground truth."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW
from world.kitti import KittiCalib
from world.layout import Layout, sample_layout
from world.lidar import scan
from world.raster import MIN_BOX_PX, MIN_VISIBLE_FRACTION, Buffers, render_camera
from world.state import Frame, frame_at


@dataclass
class Scene:
    """One rendered frame with ground truth for every head (see the world's README section).

    ``boxes`` are the tight pixel bounds ``x1, y1, x2, y2`` (x2, y2 exclusive edges) of each object's
    visible pixels after occlusion; an object is left out when less than ``MIN_VISIBLE_FRACTION`` of
    its unoccluded in-image silhouette is visible, or its visible box is narrower or shorter than
    ``MIN_BOX_PX`` pixels. ``instance`` is the per-pixel agent map (0 none, k = agent k-1) the boxes
    were taken from, ``instance_ids`` the value of each box's object in it, ``visible_fraction`` the
    share of each object's unoccluded silhouette that is visible (1.0 = not occluded).
    """

    image: np.ndarray  # uint8 HxWx3 RGB
    boxes: np.ndarray  # float32 [N,4] xyxy pixels
    classes: np.ndarray  # int32 [N]: 0 car, 1 truck, 2 pedestrian
    seg: np.ndarray  # uint8 HxW: 0 background, 1 drivable, 2 lane marking
    depth: np.ndarray  # float32 HxW z-depth metres, 0 where undefined (sky, terrain past 200 m)
    points: np.ndarray | None  # float32 [M,4] x,y,z,intensity in the LiDAR frame
    projection: np.ndarray  # float32 [3,4] LiDAR -> image pixels
    timestamp: float
    instance: np.ndarray | None = None  # int16 HxW
    instance_ids: np.ndarray | None = None  # int32 [N]
    visible_fraction: np.ndarray | None = None  # float32 [N]: visible / unoccluded in-image pixels
    calib: KittiCalib | None = None


def _check_seed(seed: int) -> int:
    if int(seed) != seed or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_hw(hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in hw)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"image size must be (height, width), got {hw!r}") from exc
    if h < 16 or w < 16:
        raise SpecError(f"image size {h}x{w} is too small (at least 16x16)")
    return h, w


def render_scene(
    seed: int, hw: tuple[int, int] = DEFAULT_INPUT_HW, lidar: bool = True, *, flat: bool = False
) -> Scene:
    """Render the world of ``seed`` at t=0. ``flat``: a straight, level road and no camera yaw, for
    checks against closed-form geometry."""
    hw = _check_hw(hw)
    layout = sample_layout(_check_seed(seed), 0.0, flat)
    return _render(layout, frame_at(layout, 0.0, hw), hw, lidar)


def render_sequence(
    seed: int, num_frames: int, fps: float = 10.0, hw: tuple[int, int] = DEFAULT_INPUT_HW, lidar: bool = True
) -> Iterator[Scene]:
    """Frames of a drive along the road at ``fps`` (timestamps k / fps): the ego vehicle and the
    traffic move, the world is the same throughout. Arguments are checked before the first frame."""
    hw = _check_hw(hw)
    if num_frames < 1:
        raise SpecError(f"num_frames must be >= 1, got {num_frames}")
    if not fps > 0:
        raise SpecError(f"fps must be > 0, got {fps}")
    layout = sample_layout(_check_seed(seed), num_frames / fps, False)
    return (_render(layout, frame_at(layout, k / fps, hw), hw, lidar) for k in range(num_frames))


@functools.lru_cache(maxsize=1)
def world_fingerprint() -> str:
    """A short hash of what the world renders (a small scene with LiDAR and all its ground truth):
    it changes whenever rendering changes, so caches of rendered scenes can be keyed by it."""
    scene = render_scene(0, (96, 160), lidar=True)
    digest = hashlib.sha256()
    for array in (
        scene.image,
        scene.boxes,
        scene.classes,
        scene.seg,
        scene.depth,
        scene.points,
        scene.projection,
    ):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def _render(layout: Layout, frame: Frame, hw: tuple[int, int], lidar: bool) -> Scene:
    buf = render_camera(layout, frame, hw)
    boxes, classes, ids, visible = _boxes(buf, [a.cls for a in layout.agents])
    rot, trans = frame.lidar_to_camera()
    p2 = np.concatenate([frame.camera.K, np.zeros((3, 1))], axis=1)
    calib = KittiCalib(p2=p2, r0_rect=np.eye(3), tr_velo_to_cam=np.concatenate([rot, trans[:, None]], axis=1))
    image = cv2.convertScaleAbs(buf.image, alpha=255.0)  # rounds and saturates to uint8
    return Scene(
        image=image,
        boxes=boxes,
        classes=classes,
        seg=buf.seg,
        depth=buf.depth,
        points=scan(layout, frame) if lidar else None,
        projection=calib.projection,
        timestamp=float(frame.time),
        instance=buf.instance,
        instance_ids=ids,
        visible_fraction=visible,
        calib=calib,
    )


def _boxes(buf: Buffers, agent_classes: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    out, classes, ids, fractions = [], [], [], []
    for i, sil in sorted(buf.silhouettes.items()):
        if sil is None:
            continue
        (y0, y1, x0, x1), full = sil
        mine = buf.instance[y0:y1, x0:x1] == i + 1
        visible = int(mine.sum())
        if visible == 0 or visible < MIN_VISIBLE_FRACTION * full:
            continue
        ys = np.flatnonzero(mine.any(axis=1))
        xs = np.flatnonzero(mine.any(axis=0))
        box = (x0 + xs[0], y0 + ys[0], x0 + xs[-1] + 1, y0 + ys[-1] + 1)
        if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
            continue
        out.append(box)
        classes.append(agent_classes[i])
        ids.append(i + 1)
        fractions.append(min(visible / full, 1.0))
    return (
        np.array(out, np.float32).reshape(-1, 4),
        np.array(classes, np.int32),
        np.array(ids, np.int32),
        np.array(fractions, np.float32),
    )
