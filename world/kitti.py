"""KITTI-style sequence folders: camera frames, LiDAR sweeps and calibration (torch-free).

Layout, as the KITTI odometry / raw logs use it::

    DIR/image_2/000000.png ...    left colour camera, 8-bit PNG
    DIR/velodyne/000000.bin ...   float32 x, y, z, reflectance per point, LiDAR frame (optional)
    DIR/calib.txt                 "P2: 12 numbers", "R0_rect: 9 numbers", "Tr_velo_to_cam: 12 numbers"
    DIR/times.txt                 one timestamp (seconds) per frame (optional)

The LiDAR -> image projection is ``P2 @ R0_rect @ Tr_velo_to_cam`` (R0_rect and Tr extended to 4x4).
Odometry-style calib files naming the LiDAR->camera transform ``Tr`` and lacking R0_rect read the
same (R0_rect = identity), and so do KITTI raw synced drives (image_02/data/, velodyne_points/data/,
calib_cam_to_cam.txt + calib_velo_to_cam.txt beside the drive or in its date folder). Frames come
back RGB, with ``projection`` float32 [3,4], so that
``serving.lidar.project_to_depth_image(points, projection, hw)`` gives a fusion network's input.
"""

from __future__ import annotations

import datetime
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from serving.errors import PerceptionError

log = logging.getLogger(__name__)

IMAGE_DIR = "image_2"
VELODYNE_DIR = "velodyne"
CALIB_FILE = "calib.txt"
TIMES_FILE = "times.txt"
RAW_IMAGE_DIR = "image_02/data"
RAW_VELODYNE_DIR = "velodyne_points/data"
TIMESTAMPS_FILE = "timestamps.txt"
DEFAULT_FPS = 10.0  # KITTI's camera/LiDAR rate; timestamps when times.txt is absent


class KittiError(PerceptionError, ValueError):
    """A KITTI-style folder that is missing a part or holds a corrupt file."""


@dataclass(frozen=True)
class KittiCalib:
    p2: np.ndarray  # [3,4] rectified camera -> image_2 pixels
    r0_rect: np.ndarray  # [3,3] reference camera -> rectified camera
    tr_velo_to_cam: np.ndarray  # [3,4] LiDAR -> reference camera

    @property
    def projection(self) -> np.ndarray:
        """float32 [3,4] LiDAR -> image_2 pixels."""
        r0 = np.eye(4)
        r0[:3, :3] = self.r0_rect
        tr = np.eye(4)
        tr[:3, :] = self.tr_velo_to_cam
        return (np.asarray(self.p2, np.float64) @ r0 @ tr).astype(np.float32)

    @classmethod
    def from_projection(cls, projection: np.ndarray) -> KittiCalib:
        """Split a 3x4 LiDAR->pixel matrix into P2 = [K|0], R0_rect = I, Tr = [R|t] (RQ decomposition)."""
        proj = np.asarray(projection, np.float64)
        k, rot, centre_h = cv2.decomposeProjectionMatrix(proj)[:3]
        centre = (centre_h[:3] / centre_h[3]).reshape(3)
        k = k / k[2, 2]
        tr = np.concatenate([rot, (-rot @ centre)[:, None]], axis=1)
        return cls(np.concatenate([k, np.zeros((3, 1))], axis=1), np.eye(3), tr)

    def to_text(self) -> str:
        # repr() of a float is the shortest string that parses back to the same double, so the
        # projection read back is bit-identical to the one written
        def row(name: str, m: np.ndarray) -> str:
            return name + ": " + " ".join(repr(float(v)) for v in np.asarray(m, np.float64).reshape(-1))

        return (
            "\n".join(
                [row("P2", self.p2), row("R0_rect", self.r0_rect), row("Tr_velo_to_cam", self.tr_velo_to_cam)]
            )
            + "\n"
        )

    @classmethod
    def parse(cls, text: str, source: str = CALIB_FILE) -> KittiCalib:
        values: dict[str, np.ndarray] = {}
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            key, sep, rest = line.partition(":")
            if not sep:
                raise KittiError(f"{source}:{n}: expected 'NAME: numbers', got {line[:60]!r}")
            try:
                values[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
            except ValueError as exc:
                raise KittiError(f"{source}:{n}: {key.strip()} holds a non-number") from exc
        p2 = _matrix(values, ("P2",), (3, 4), source)
        tr = _matrix(values, ("Tr_velo_to_cam", "Tr"), (3, 4), source)
        r0 = _matrix(values, ("R0_rect",), (3, 3), source) if "R0_rect" in values else np.eye(3)
        return cls(p2, r0, tr)


def _matrix(
    values: dict[str, np.ndarray], names: tuple[str, ...], shape: tuple[int, int], source: str
) -> np.ndarray:
    for name in names:
        if name in values:
            v = values[name]
            if v.size != shape[0] * shape[1]:
                raise KittiError(f"{source}: {name} needs {shape[0] * shape[1]} numbers, got {v.size}")
            if not np.isfinite(v).all():
                raise KittiError(f"{source}: {name} holds NaN or Inf")
            return v.reshape(shape)
    raise KittiError(f"{source}: no {' / '.join(names)} line")


@dataclass
class KittiFrame:
    index: int
    image: np.ndarray  # uint8 HxWx3 RGB
    points: np.ndarray | None  # float32 [M,4] x, y, z, reflectance (None without velodyne/)
    projection: np.ndarray  # float32 [3,4]
    timestamp: float
    calib: KittiCalib | None = None


class KittiSequence:
    """An opened, validated KITTI-style folder; frames are decoded lazily, in order.

    Two layouts are recognised: the odometry/object one this project writes (``image_2/``,
    ``velodyne/``, ``calib.txt``, ``times.txt``) and KITTI raw's synced drives (``image_02/data/``,
    ``velodyne_points/data/``, ``image_02/timestamps.txt``, with ``calib_cam_to_cam.txt`` and
    ``calib_velo_to_cam.txt`` in the drive folder or its parent, the date folder).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise KittiError(f"{self.directory}: not a directory")
        if (self.directory / IMAGE_DIR).is_dir():
            self._open_odometry()
        elif (self.directory / RAW_IMAGE_DIR).is_dir():
            self._open_raw()
        else:
            raise KittiError(
                f"{self.directory}: no {IMAGE_DIR}/ (or raw {RAW_IMAGE_DIR}/): not a KITTI-style sequence"
            )
        self.projection = self.calib.projection

    def _open_odometry(self) -> None:
        self.image_paths = _frames(self.directory / IMAGE_DIR)
        calib_path = self.directory / CALIB_FILE
        if not calib_path.is_file():
            raise KittiError(f"{self.directory}: missing {CALIB_FILE}")
        self.calib = KittiCalib.parse(calib_path.read_text(errors="replace"), str(calib_path))
        self.velodyne_paths = _sweeps(self.directory / VELODYNE_DIR, self.image_paths)
        self.timestamps = _read_times(self.directory / TIMES_FILE, len(self.image_paths))

    def _open_raw(self) -> None:
        self.image_paths = _frames(self.directory / RAW_IMAGE_DIR)
        self.calib = _raw_calib(self.directory)
        self.velodyne_paths = _sweeps(self.directory / RAW_VELODYNE_DIR, self.image_paths)
        stamps = self.directory / RAW_IMAGE_DIR.split("/")[0] / TIMESTAMPS_FILE
        self.timestamps = _read_raw_times(stamps, len(self.image_paths))

    @property
    def has_lidar(self) -> bool:
        return self.velodyne_paths is not None

    def __len__(self) -> int:
        return len(self.image_paths)

    def read(self, k: int) -> KittiFrame:
        path = self.image_paths[k]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise KittiError(f"{path}: unreadable or corrupt image")
        points = read_velodyne(self.velodyne_paths[k]) if self.velodyne_paths is not None else None
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return KittiFrame(k, rgb, points, self.projection, self.timestamps[k], self.calib)

    def frames(self) -> Iterator[KittiFrame]:
        for k in range(len(self)):
            yield self.read(k)


def _frames(image_dir: Path) -> list[Path]:
    paths = sorted(image_dir.glob("*.png"))
    if not paths:
        raise KittiError(f"{image_dir}: no .png frames")
    return paths


def _sweeps(velo: Path, images: list[Path]) -> list[Path] | None:
    """The .bin sweep of every frame (None when the sequence has no LiDAR folder)."""
    if not velo.is_dir():
        return None
    paths = [velo / f"{p.stem}.bin" for p in images]
    missing = [p.stem for p in paths if not p.is_file()]
    if missing:
        raise KittiError(f"{velo}: no .bin for frame(s) {', '.join(missing[:5])}")
    return paths


def _read_times(path: Path, count: int) -> list[float]:
    if not path.is_file():
        return [k / DEFAULT_FPS for k in range(count)]
    try:
        times = [float(line) for line in path.read_text().split()]
    except ValueError as exc:
        raise KittiError(f"{path}: holds a non-number") from exc
    if len(times) != count:
        raise KittiError(f"{path}: {len(times)} timestamps for {count} frames")
    return times


def _read_raw_times(path: Path, count: int) -> list[float]:
    """KITTI raw stamps ('2011-09-26 13:02:25.964389445'), as seconds since the first frame."""
    if not path.is_file():
        return [k / DEFAULT_FPS for k in range(count)]
    seconds: list[tuple[int, float]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            day, clock = line.split()
            hours, minutes, secs = clock.split(":")
            whole, _, frac = secs.partition(".")
            date = datetime.date.fromisoformat(day).toordinal()
            # whole seconds as an int, the fraction apart: a float of seconds since year 1 has ~10 us
            seconds.append(
                (date * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(whole), float("0." + frac))
            )
        except ValueError as exc:
            raise KittiError(f"{path}:{n}: not a 'YYYY-MM-DD HH:MM:SS.fraction' stamp") from exc
    if len(seconds) != count:
        raise KittiError(f"{path}: {len(seconds)} timestamps for {count} frames")
    return [(whole - seconds[0][0]) + (frac - seconds[0][1]) for whole, frac in seconds]


def _raw_calib(drive: Path) -> KittiCalib:
    for folder in (drive, drive.parent):
        cam, velo = folder / "calib_cam_to_cam.txt", folder / "calib_velo_to_cam.txt"
        if cam.is_file() and velo.is_file():
            break
    else:
        raise KittiError(
            f"{drive}: no calib_cam_to_cam.txt + calib_velo_to_cam.txt here or in {drive.parent}"
        )
    cam_values = _numeric_lines(cam)
    velo_values = _numeric_lines(velo)
    p2 = _matrix(cam_values, ("P_rect_02",), (3, 4), str(cam))
    r0 = _matrix(cam_values, ("R_rect_00",), (3, 3), str(cam))
    rot = _matrix(velo_values, ("R",), (3, 3), str(velo))
    trans = _matrix(velo_values, ("T",), (3, 1), str(velo))
    return KittiCalib(p2, r0, np.concatenate([rot, trans], axis=1))


def _numeric_lines(path: Path) -> dict[str, np.ndarray]:
    """'NAME: numbers' lines of a KITTI raw calib file; lines that are not numbers (calib_time) skipped."""
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], np.float64)
        except ValueError:
            continue
    return values


def read_velodyne(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % 16:
        raise KittiError(f"{path}: {size} bytes is not a whole number of float32 x,y,z,i points")
    points = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    if not np.isfinite(points).all():
        raise KittiError(f"{path}: points hold NaN or Inf")
    return points


def is_kitti_sequence(directory: str | os.PathLike) -> bool:
    """Whether ``directory`` looks like a KITTI-style sequence (either layout); cheap, no validation."""
    d = Path(directory)
    return ((d / IMAGE_DIR).is_dir() and (d / CALIB_FILE).is_file()) or (d / RAW_IMAGE_DIR).is_dir()


def read_kitti_sequence(directory: str | os.PathLike) -> Iterator[KittiFrame]:
    """Validate the folder (raises KittiError naming what is missing), then yield its frames in order."""
    return KittiSequence(directory).frames()


def write_kitti_sequence(directory: str | os.PathLike, frames: Iterable, overwrite: bool = False) -> int:
    """Write frames (objects with ``image`` RGB, ``points`` or None, ``projection``, ``timestamp`` and
    optionally ``calib``) as a KITTI-style folder; returns the number of frames. The folder appears
    complete or not at all: it is written under a temporary name and renamed at the end."""
    target = Path(directory)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise KittiError(f"{target}: exists and is not empty (pass overwrite=True to replace it)")
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / IMAGE_DIR).mkdir(parents=True)
    try:
        count, calib, times, lidar = 0, None, [], None
        for k, frame in enumerate(frames):
            calib = _frame_calib(frame, calib, k)
            has_points = frame.points is not None
            if lidar is None:
                lidar = has_points
                if lidar:
                    (tmp / VELODYNE_DIR).mkdir()
            elif lidar != has_points:
                raise KittiError(f"frame {k}: points present in some frames and missing in others")
            _write_frame(tmp, k, frame, lidar)
            times.append(float(frame.timestamp))
            count += 1
        if calib is None:
            raise KittiError("no frames to write")
        (tmp / CALIB_FILE).write_text(calib.to_text())
        (tmp / TIMES_FILE).write_text("".join(f"{t:.6e}\n" for t in times))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote %d frames to %s", count, target)
    return count


def _frame_calib(frame, calib: KittiCalib | None, k: int) -> KittiCalib:
    mine = getattr(frame, "calib", None)
    if mine is None:
        mine = calib if calib is not None else KittiCalib.from_projection(frame.projection)
    if calib is not None and not np.allclose(mine.projection, calib.projection, rtol=1e-6, atol=1e-6):
        raise KittiError(f"frame {k}: projection differs from frame 0 (a KITTI folder has one calibration)")
    if not np.allclose(mine.projection, np.asarray(frame.projection, np.float32), rtol=1e-5, atol=1e-4):
        raise KittiError(f"frame {k}: calib does not reproduce the frame's projection matrix")
    return calib if calib is not None else mine


def _write_frame(tmp: Path, k: int, frame, lidar: bool) -> None:
    image = np.asarray(frame.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise KittiError(f"frame {k}: image must be uint8 HxWx3 RGB, got {image.dtype} {image.shape}")
    if not cv2.imwrite(str(tmp / IMAGE_DIR / f"{k:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise KittiError(f"frame {k}: could not write the PNG")
    if lidar:
        pts = np.asarray(frame.points, dtype="<f4")
        if pts.ndim != 2 or pts.shape[1] != 4:
            raise KittiError(f"frame {k}: points must be [N,4], got {pts.shape}")
        pts.tofile(tmp / VELODYNE_DIR / f"{k:06d}.bin")
