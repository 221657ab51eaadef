"""Input frames for a load test: rendered world scenes, an image folder or a video (torch-free)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from serving.errors import SpecError
from serving.spec import DEFAULT_INPUT_HW

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # HxWx3 uint8 RGB
    points: np.ndarray | None = None  # [N,4] float32 LiDAR points
    projection: np.ndarray | None = None  # [3,4] float32 LiDAR -> image pixels


def world_frames(count: int, seed: int = 0, hw: tuple[int, int] = DEFAULT_INPUT_HW) -> list[Frame]:
    """Render ``count`` scenes of the project's synthetic world (with LiDAR)."""
    try:
        from world import render_scene
    except ImportError as exc:
        raise SpecError(
            f"the synthetic world is not importable here ({exc}); pass --images DIR or --video FILE"
        ) from exc
    frames = []
    for i in range(count):
        scene = render_scene(seed + i, hw=hw, lidar=True)
        frames.append(Frame(np.ascontiguousarray(scene.image), scene.points, scene.projection))
    return frames


def folder_frames(folder: Path, count: int) -> list[Frame]:
    """Up to ``count`` images of a folder, sorted by name."""
    if not folder.is_dir():
        raise SpecError(f"image folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
    if not paths:
        raise SpecError(f"image folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    frames = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SpecError(f"cannot decode image {path}")
        frames.append(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return frames


def video_frames(path: Path, count: int) -> list[Frame]:
    """The first ``count`` frames of a video file."""
    if not path.is_file():
        raise SpecError(f"video {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    frames: list[Frame] = []
    try:
        while len(frames) < count:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    finally:
        cap.release()
    if not frames:
        raise SpecError(f"cannot decode any frame of video {path}")
    return frames


def load_frames(
    count: int = 8, images: Path | None = None, video: Path | None = None, seed: int = 0
) -> list[Frame]:
    """Frames from ``images`` or ``video`` when given, else rendered world scenes."""
    if count < 1:
        raise SpecError(f"need at least one frame, got {count}")
    if images is not None and video is not None:
        raise SpecError("give either an image folder or a video, not both")
    if images is not None:
        return folder_frames(images, count)
    if video is not None:
        return video_frames(video, count)
    return world_frames(count, seed)
