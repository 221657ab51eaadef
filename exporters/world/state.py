"""The world at one instant: camera and LiDAR poses of the ego vehicle and the agents' 3D boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exporters.world.geometry import CAM_FROM_BODY_AXES, Camera, body_rotation
from exporters.world.layout import Layout

BOX_FACES_VERTICAL = ((1, 2), (2, 3), (3, 0), (0, 1))  # bottom corner pairs: front, left, back, right
_UNIT_CORNERS = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    dtype=np.float64,
)


@dataclass(frozen=True)
class Boxes:
    """Oriented 3D boxes in world coordinates (index i = agent i of the layout)."""

    centres: np.ndarray  # [B,3]
    rotations: np.ndarray  # [B,3,3] world-from-box (x along the box length, z up)
    half: np.ndarray  # [B,3] half length, width, height
    classes: np.ndarray  # [B] int

    def corners(self, i: int) -> np.ndarray:
        """[8,3] world corners; 0-3 bottom, 4-7 top (4+k above k)."""
        return self.centres[i] + (_UNIT_CORNERS * self.half[i]) @ self.rotations[i].T


@dataclass(frozen=True)
class Frame:
    time: float
    camera: Camera
    lidar_rotation: np.ndarray  # world-from-LiDAR
    lidar_origin: np.ndarray
    boxes: Boxes

    def lidar_to_camera(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) with p_cam = R @ p_lidar + t."""
        rot = self.camera.rotation.T @ self.lidar_rotation
        trans = self.camera.rotation.T @ (self.lidar_origin - self.camera.centre)
        return rot, trans


def frame_at(layout: Layout, t: float, hw: tuple[int, int]) -> Frame:
    ground, rig = layout.road.ground, layout.rig
    x, y, z, phi = ground.road_point(rig.speed * t, rig.lateral)
    vehicle = body_rotation(phi, float(np.arctan(ground.grade(x))))
    cam_body = vehicle @ body_rotation(rig.yaw, -rig.pitch)
    base = np.array([x, y, z])
    centre = base + vehicle @ np.array([0.0, 0.0, rig.height])
    h, w = hw
    f = rig.focal_scale * w
    camera = Camera(f, f, w / 2.0, h / 2.0, cam_body @ CAM_FROM_BODY_AXES.T, centre)
    lidar_origin = centre + vehicle @ np.array(rig.lidar_offset)
    return Frame(t, camera, vehicle, lidar_origin, _boxes_at(layout, t))


def _boxes_at(layout: Layout, t: float) -> Boxes:
    ground = layout.road.ground
    n = len(layout.agents)
    centres = np.zeros((n, 3))
    rotations = np.zeros((n, 3, 3))
    half = np.zeros((n, 3))
    classes = np.zeros(n, dtype=np.int64)
    for i, agent in enumerate(layout.agents):
        x, y, z, phi = ground.road_point(agent.s0 + agent.speed * t, agent.d)
        pitch = float(np.arctan(ground.grade(x) * np.cos(agent.yaw_offset)))
        rot = body_rotation(phi + agent.yaw_offset, pitch)
        half[i] = agent.size / 2.0
        centres[i] = np.array([x, y, z]) + rot @ np.array([0.0, 0.0, half[i, 2]])
        rotations[i] = rot
        classes[i] = agent.cls
    return Boxes(centres, rotations, half, classes)
