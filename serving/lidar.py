"""LiDAR points -> the sparse depth image a fusion network takes (pure numpy, used on both sides)."""

from __future__ import annotations

import numpy as np

from serving.errors import SpecError
from serving.letterbox import Letterbox

MIN_DEPTH_M = 0.5  # returns closer than this are the sensor's own housing / noise


def check_points(points: np.ndarray, projection: np.ndarray) -> None:
    """Raise SpecError naming the problem with a points / projection pair."""
    if points.ndim != 2 or points.shape[1] != 4:
        raise SpecError(f"points must be [N,4] (x,y,z,intensity), got shape {tuple(points.shape)}")
    if projection.shape != (3, 4):
        raise SpecError(f"projection must be a 3x4 matrix, got shape {tuple(projection.shape)}")
    if not np.isfinite(projection).all():
        raise SpecError("projection matrix holds NaN or Inf")
    if not np.isfinite(points).all():
        raise SpecError("points hold NaN or Inf")


def project_to_depth_image(
    points: np.ndarray,
    projection: np.ndarray,
    model_hw: tuple[int, int],
    letterbox: Letterbox | None = None,
) -> np.ndarray:
    """Project [N,4] LiDAR points through a 3x4 LiDAR->source-pixel matrix into a [1,H,W] float32
    depth image at model resolution. Depth is the third homogeneous coordinate (metres along the
    optical axis when the matrix is K[R|t]); the nearest return wins where several hit one pixel;
    0 means no return. ``letterbox`` maps source pixels to model pixels (identity when None).
    """
    points = np.asarray(points, dtype=np.float32)
    projection = np.asarray(projection, dtype=np.float32)
    check_points(points, projection)
    h, w = model_hw
    out = np.zeros((1, h, w), dtype=np.float32)
    if len(points) == 0:
        return out
    xyz1 = np.concatenate([points[:, :3], np.ones((len(points), 1), np.float32)], axis=1)
    uvz = xyz1.astype(np.float64) @ projection.T.astype(np.float64)
    z = uvz[:, 2]
    front = z > MIN_DEPTH_M
    uv = uvz[front, :2] / z[front, None]
    z = z[front]
    if letterbox is not None:
        uv = letterbox.points_to_model(uv)
    u = np.floor(uv[:, 0]).astype(np.int64)
    v = np.floor(uv[:, 1]).astype(np.int64)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[inside], v[inside], z[inside]
    if letterbox is not None:
        # keep returns inside the letterboxed content, not in the padding
        rh, rw = letterbox.resized_hw
        content = (
            (u >= letterbox.pad_x)
            & (u < letterbox.pad_x + rw)
            & (v >= letterbox.pad_y)
            & (v < letterbox.pad_y + rh)
        )
        u, v, z = u[content], v[content], z[content]
    # nearest return wins: sort by (pixel, depth) and keep each pixel's first entry
    flat = v * w + u
    order = np.lexsort((z, flat))
    flat, z = flat[order], z[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    out.reshape(-1)[flat[first]] = z[first].astype(np.float32)
    return out
