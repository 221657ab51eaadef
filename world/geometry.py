"""Geometry of the synthetic world: frames, the road's ground surface, rays against it and boxes.

World frame: X forward (the road's initial direction), Y left, Z up; the ground height is
``z(X) = slope * X + bend * X**2`` (a constant grade plus a vertical curve, so hills and dips), the
road centreline is ``Y = c(X) = heading * X + curve * X**2``. Camera frame is OpenCV's: x right,
y down, z forward; image pixel (row i, col j) has its centre at continuous coordinates
(u, v) = (j + 0.5, i + 0.5), the same convention as ``serving.lidar.project_to_depth_image``
(which floors u, v). LiDAR frame is KITTI's: x forward, y left, z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def body_rotation(yaw: float, pitch_up: float) -> np.ndarray:
    """World-from-body rotation of a forward/left/up body frame: yaw about Z, then nose up by
    ``pitch_up`` radians."""
    return rot_z(yaw) @ rot_y(-pitch_up)


# camera (x right, y down, z forward) axes expressed in a forward/left/up body frame
CAM_FROM_BODY_AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


@dataclass(frozen=True)
class Ground:
    """The terrain and road surface: height and centreline polynomials in world X."""

    slope: float = 0.0
    bend: float = 0.0
    heading: float = 0.0
    curve: float = 0.0

    def height(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.slope * x + self.bend * x * x

    def grade(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.slope + 2.0 * self.bend * x

    def centre(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.heading * x + self.curve * x * x

    def centre_slope(self, x: np.ndarray | float) -> np.ndarray | float:
        return self.heading + 2.0 * self.curve * x

    def lateral(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance from the centreline (left positive), perpendicular to first order."""
        return (y - self.centre(x)) / np.sqrt(1.0 + self.centre_slope(x) ** 2)

    def road_point(self, s: float, d: float) -> tuple[float, float, float, float]:
        """World (X, Y, Z) and road heading of the point ``d`` metres left of the centreline at X=s."""
        phi = float(np.arctan(self.centre_slope(s)))
        x = s - d * np.sin(phi)
        y = float(self.centre(s)) + d * np.cos(phi)
        return x, y, float(self.height(x)), phi

    def intersect(self, origin: np.ndarray, dx, dy, dz) -> np.ndarray:
        """Ray parameter t of the first hit of rays origin + t*d with the ground (inf where none).

        Solves slope*X + bend*X^2 = Z along the ray, a quadratic a t^2 + b t + c = 0 written in the
        form -2c / (b + sqrt(b^2 - 4ac)) that stays exact when bend = 0 (flat or planar ground).
        """
        ox, _, oz = (float(v) for v in origin)
        c = self.slope * ox + self.bend * ox * ox - oz
        if self.bend == 0.0:  # a plane: one division
            with np.errstate(invalid="ignore", divide="ignore"):
                t = c / (dz - self.slope * dx)
            return np.where(t > 0, t, np.inf).astype(dx.dtype, copy=False)
        a = self.bend * dx * dx
        b = (2.0 * self.bend * ox + self.slope) * dx - dz
        disc = b * b - 4.0 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            den = b + np.sqrt(np.maximum(disc, 0.0))
            t = (-2.0 * c) / den
        bad = (disc < 0) | ~(t > 0) | ~np.isfinite(t)
        return np.where(bad, np.inf, t).astype(dx.dtype, copy=False)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics and pose (world-from-camera rotation, centre in world)."""

    fx: float
    fy: float
    cx: float
    cy: float
    rotation: np.ndarray  # 3x3 world-from-camera
    centre: np.ndarray  # 3 world

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def to_camera(self, pts_world: np.ndarray) -> np.ndarray:
        return (pts_world - self.centre) @ self.rotation

    def pixel_rays(self, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World ray directions (dx, dy, dz), HxW float32 each, for pixel centres; scaled so that the
        camera-frame z component is 1, hence ray parameter t == z-depth."""
        h, w = hw
        xn = ((np.arange(w, dtype=np.float64) + 0.5 - self.cx) / self.fx)[None, :]
        yn = ((np.arange(h, dtype=np.float64) + 0.5 - self.cy) / self.fy)[:, None]
        r = self.rotation
        out = []
        for k in range(3):
            row = (r[k, 0] * xn).astype(np.float32)
            col = (r[k, 1] * yn + r[k, 2]).astype(np.float32)
            out.append(row + col)
        return out[0], out[1], out[2]


def ray_boxes(
    origin: np.ndarray, dirs: np.ndarray, centres: np.ndarray, rotations: np.ndarray, half: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Slab test of rays (origin [3], dirs [R,3]) against oriented boxes (centres [B,3], world-from-box
    rotations [B,3,3], half sizes [B,3]). Returns the nearest entry parameter t [R] (inf if none) and
    the index of the box hit [R] (-1 if none)."""
    best_t = np.full(len(dirs), np.inf)
    best_i = np.full(len(dirs), -1, dtype=np.int64)
    for i in range(len(centres)):
        o = (origin - centres[i]) @ rotations[i]  # box frame
        d = dirs @ rotations[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d
            t1 = (-half[i] - o) * inv
            t2 = (half[i] - o) * inv
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmin > 0) & (tmin < best_t)
        best_t = np.where(hit, tmin, best_t)
        best_i = np.where(hit, i, best_i)
    return best_t, best_i


def clip_polygon_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon [N,3] to z >= near."""
    out = []
    n = len(poly)
    for k in range(n):
        a, b = poly[k], poly[(k + 1) % n]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)
