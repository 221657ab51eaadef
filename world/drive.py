"""Record a drive through the world: an MP4 of the camera and, optionally, a KITTI-style folder."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from serving.errors import PerceptionError, SpecError
from serving.spec import DEFAULT_INPUT_HW
from world.kitti import write_kitti_sequence
from world.scene import Scene, render_sequence

log = logging.getLogger(__name__)


class VideoWriteError(PerceptionError):
    """OpenCV could not open or write the video file."""


@dataclass(frozen=True)
class DriveOptions:
    seconds: float = 5.0
    fps: float = 10.0
    hw: tuple[int, int] = DEFAULT_INPUT_HW
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise SpecError(f"seconds must be > 0, got {self.seconds}")
        if not 0 < self.fps <= 120:
            raise SpecError(f"fps must be in (0, 120], got {self.fps}")
        h, w = self.hw
        if h < 16 or w < 16 or h % 2 or w % 2:
            raise SpecError(f"video size {h}x{w} must be even and at least 16x16")

    @property
    def num_frames(self) -> int:
        return max(1, round(self.seconds * self.fps))


def record_drive(
    options: DriveOptions,
    video: str | os.PathLike | None = None,
    kitti: str | os.PathLike | None = None,
    overwrite: bool = False,
    on_frame: Callable[[Scene], None] | None = None,
) -> int:
    """Render ``options.num_frames`` frames once, streaming them to ``video`` (MP4, mp4v) and/or
    ``kitti`` (folder with LiDAR sweeps). Each output appears complete or not at all (written under a
    temporary name, renamed at the end). Returns the number of frames."""
    if video is None and kitti is None:
        raise SpecError("nothing to write: give a video path and/or a KITTI folder")
    if kitti is not None and Path(kitti).exists() and any(Path(kitti).iterdir()) and not overwrite:
        raise SpecError(f"{kitti}: exists and is not empty (overwrite to replace it)")
    frames = render_sequence(
        options.seed, options.num_frames, options.fps, options.hw, lidar=kitti is not None
    )
    with contextlib.ExitStack() as stack:
        mp4 = stack.enter_context(Mp4Writer(video, options.fps, options.hw, overwrite)) if video else None

        def tee() -> Iterator[Scene]:
            for scene in frames:
                if mp4 is not None:
                    mp4.write(scene.image)
                if on_frame is not None:
                    on_frame(scene)
                yield scene

        if kitti is not None:
            return write_kitti_sequence(kitti, tee(), overwrite=overwrite)
        return sum(1 for _ in tee())


class Mp4Writer:
    """cv2.VideoWriter (mp4v) on a temporary name next to ``path``, renamed to ``path`` when the
    ``with`` block ends without an exception and removed otherwise. Frames are RGB."""

    def __init__(
        self, path: str | os.PathLike, fps: float, hw: tuple[int, int], overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise SpecError(f"{self.path}: the video must be an .mp4 file")
        if self.path.exists() and not overwrite:
            raise VideoWriteError(f"{self.path}: exists (overwrite to replace it)")
        self.hw = hw
        self.count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}.mp4")
        h, w = hw
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (w, h))
        if not self.writer.isOpened():
            self.tmp.unlink(missing_ok=True)
            raise VideoWriteError(f"{self.path}: OpenCV cannot open an mp4v writer")

    def write(self, image: np.ndarray) -> None:
        if image.shape != (*self.hw, 3) or image.dtype != np.uint8:
            raise SpecError(f"frame {self.count}: {image.dtype} {image.shape} is not uint8 {self.hw}x3")
        self.writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.count += 1

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.release()
        try:
            if exc_type is None:
                if self.count == 0:
                    raise VideoWriteError(f"{self.path}: no frames to write")
                os.replace(self.tmp, self.path)
                log.info("wrote %d frames to %s", self.count, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def write_video(
    path: str | os.PathLike, scenes, fps: float, hw: tuple[int, int], overwrite: bool = False
) -> int:
    """Write the RGB images of ``scenes`` as an MP4 (OpenCV, mp4v); returns the frame count."""
    with Mp4Writer(path, fps, hw, overwrite) as mp4:
        for scene in scenes:
            mp4.write(scene.image)
    return mp4.count
