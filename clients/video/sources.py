"""Inputs of `percept video`: finding them, and decoding their frames (run in a decoder thread).

An input is a video file (anything OpenCV/FFmpeg opens), a KITTI-style sequence folder (image_2/ +
velodyne/ + calib.txt, read with world.kitti) for fusion models, or a folder of images (one
sequence, in natural order: frame2 before frame10). A folder is a KITTI sequence when world.kitti
says so (its calib.txt and image_2/), else its own image files are one input and its videos and
sequence sub-folders one input each. Frames come out as ``FrameItem`` with an HxWx3 uint8 **RGB**
image (OpenCV's BGR is converted here, once).
"""

from __future__ import annotations

import glob
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from serving.errors import SpecError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DEFAULT_IMAGE_FPS = 10.0  # an image folder has no frame rate: its video's, unless given (--fps)
MAX_CONSECUTIVE_BAD_FRAMES = 25  # past this many undecodable frames in a row the file is given up


class InputError(SpecError):
    """An input that cannot be read at all (missing, not a video, corrupt container)."""


@dataclass(frozen=True)
class InputSource:
    path: Path
    kind: str  # "video" | "kitti" | "images"
    name: str  # output sub-folder, unique within a run

    @property
    def fusion(self) -> bool:
        return self.kind == "kitti"


@dataclass
class FrameItem:
    index: int
    timestamp: float
    image: np.ndarray | None  # RGB; None when the frame could not be decoded
    points: np.ndarray | None = None
    projection: np.ndarray | None = None
    error: str | None = None
    name: str | None = None  # the image file of a frame of an image folder


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_name(base: str) -> str:
    """An input's sub-folder of ``--out``: one path component that stays inside it whatever the
    input was called (``..``, ``/``, control characters, a leading dot)."""
    name = _UNSAFE.sub("_", base).lstrip(".")[:200]
    return name or "input"


def is_kitti_folder(path: Path) -> bool:
    from world.kitti import is_kitti_sequence

    return path.is_dir() and is_kitti_sequence(path)


def natural_key(name: str) -> list:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compared as numbers)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (not its sub-folders), in natural order."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.name))


def discover(inputs: list[str]) -> list[InputSource]:
    """Expand files, folders (a KITTI sequence; or their images as one input, their videos and
    sequences one input each) and globs into named sources.

    A path that does not exist is still returned (kind "video") so that it is reported as failed
    while the other inputs run.
    """
    paths: list[Path] = []
    for raw in inputs:
        if any(ch in raw for ch in "*?["):
            matched = sorted(glob.glob(raw))
            if not matched:
                paths.append(Path(raw))
            paths += [Path(m) for m in matched]
        else:
            paths.append(Path(raw))
    found: list[tuple[Path, str]] = []
    for path in paths:
        if is_kitti_folder(path):
            found.append((path, "kitti"))
        elif path.is_dir():
            children = sorted(
                p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES or is_kitti_folder(p)
            )
            if image_files(path) or not children:
                found.append((path, "images"))  # none at all: reported as an empty folder
            found += [(c, "kitti" if is_kitti_folder(c) else "video") for c in children]
        else:
            found.append((path, "video"))
    single = [p for p, kind in found if kind == "video" and p.suffix.lower() in IMAGE_SUFFIXES]
    if len(single) > 1:
        log.warning(
            "%d image files given one by one (e.g. %s): each is an input of one frame; give their "
            "folder for one sequence and one video",
            len(single),
            single[0],
        )
    sources: list[InputSource] = []
    seen_paths: set[Path] = set()
    names: set[str] = set()
    for path, kind in found:
        key = path.resolve()
        if key in seen_paths:
            continue
        seen_paths.add(key)
        given = path.stem if kind == "video" else path.name
        base = output_name(given if given.strip(".") else path.resolve().name)  # "..": the folder's name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.add(name)
        sources.append(InputSource(path, kind, name))
    return sources


class VideoReader:
    """Frames of a video file, with undecodable frames reported instead of ending the stream early."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if not path.is_file():
            raise InputError(f"{path}: not a video file or KITTI sequence folder")
        self.path = path
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise InputError(f"{path}: cannot open as a video (corrupt or unsupported container)")
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 10.0
        self.frame_count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise InputError(f"{path}: no decodable frame (corrupt or empty video)")
        self._first: np.ndarray | None = first

    def frames(self, start: int = 0, seek: bool = False) -> Iterator[FrameItem]:
        """Frames from ``start`` on; the ones before are decoded-and-dropped (grab) to keep indices,
        or, with ``seek`` (a frame range of the Ray engine), skipped by a container seek that OpenCV
        confirms landed on ``start`` (grabbing again from frame 0 when it does not)."""
        index, bad_run = 0, 0
        if seek and start > 0 and self._seek(start):
            index, self._first = start, None
        try:
            while True:
                if self._first is not None:
                    ok, bgr, self._first = True, self._first, None
                elif index < start:
                    ok, bgr = self._cap.grab(), None
                else:
                    ok, bgr = self._cap.read()
                if not ok:
                    # a failed read inside the advertised length is a bad frame, past it the end
                    if index >= self.frame_count or bad_run >= MAX_CONSECUTIVE_BAD_FRAMES:
                        return
                    bad_run += 1
                    if index >= start:
                        yield FrameItem(index, index / self.fps, None, error="undecodable frame")
                    index += 1
                    continue
                bad_run = 0
                if index >= start:
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # type: ignore[arg-type]
                    yield FrameItem(index, index / self.fps, rgb)
                index += 1
        finally:
            self._cap.release()

    def _seek(self, start: int) -> bool:
        if self._cap.set(cv2.CAP_PROP_POS_FRAMES, start) and self._cap.get(cv2.CAP_PROP_POS_FRAMES) == start:
            return True
        log.warning("%s: seeking to frame %d failed; decoding from the start instead", self.path, start)
        self._cap.release()
        self._cap = cv2.VideoCapture(str(self.path))
        return False


class KittiReader:
    """Frames of a KITTI-style sequence folder (world.kitti); a corrupt frame becomes an error item."""

    def __init__(self, path: Path) -> None:
        from world.kitti import KittiError, KittiSequence

        self.path = path
        self._error = KittiError
        try:
            self._seq = KittiSequence(path)
        except KittiError as exc:
            raise InputError(str(exc)) from exc
        if not self._seq.has_lidar:
            raise InputError(f"{path}: no velodyne/ folder: a fusion model needs the LiDAR sweeps")
        self.frame_count = len(self._seq)
        ts = self._seq.timestamps
        span = ts[-1] - ts[0] if len(ts) > 1 else 0.0
        self.fps = (len(ts) - 1) / span if span > 0 else 10.0

    def frames(self, start: int = 0, seek: bool = False) -> Iterator[FrameItem]:
        for k in range(start, self.frame_count):  # frames are files: every start is a seek
            try:
                frame = self._seq.read(k)
            except self._error as exc:
                yield FrameItem(k, float(self._seq.timestamps[k]), None, error=str(exc))
                continue
            yield FrameItem(k, float(frame.timestamp), frame.image, frame.points, frame.projection)


class ImageFolderReader:
    """The image files of a folder as one sequence at ``fps``, in natural order; a file that cannot
    be decoded becomes an error item naming it, as an undecodable frame of a video does."""

    def __init__(self, path: Path, fps: float = DEFAULT_IMAGE_FPS) -> None:
        if not path.is_dir():
            raise InputError(f"{path}: no such folder")
        if fps <= 0:
            raise InputError(f"{path}: the frame rate of an image folder must be > 0, got {fps}")
        self.path = path
        self.files = image_files(path)
        if not self.files:
            kinds = " ".join(sorted(IMAGE_SUFFIXES))
            raise InputError(f"{path}: no images ({kinds}), videos or KITTI-style sequences in this folder")
        self.fps = float(fps)
        self.frame_count = len(self.files)

    def frames(self, start: int = 0, seek: bool = False) -> Iterator[FrameItem]:
        for k in range(start, self.frame_count):  # frames are files: every start is a seek
            file = self.files[k]
            bgr = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if bgr is None:
                yield FrameItem(
                    k, k / self.fps, None, error=f"{file}: cannot be decoded as an image", name=file.name
                )
                continue
            yield FrameItem(k, k / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), name=file.name)


Reader = VideoReader | KittiReader | ImageFolderReader


def open_reader(source: InputSource, image_fps: float = DEFAULT_IMAGE_FPS) -> Reader:
    """The reader of ``source``; ``image_fps``: the frame rate given to an image folder."""
    if source.kind == "kitti":
        return KittiReader(source.path)
    if source.kind == "images":
        return ImageFolderReader(source.path, image_fps)
    return VideoReader(source.path)
