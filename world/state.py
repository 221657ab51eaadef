"""The world at one instant: camera and LiDAR poses of the ego vehicle and the agents' 3D boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world.geometry import CAM_FROM_BODY_AXES, Camera, body_rotation
from world.layout import CAR, PEDESTRIAN, TRUCK, Layout

BOX_FACES_VERTICAL = ((1, 2), (2, 3), (3, 0), (0, 1))  # bottom corner pairs: front, left, back, right
_UNIT_CORNERS = np.array(
    [[-1, -1, -1], [1, -1, -1], [1, 1, -1], [-1, 1, -1], [-1, -1, 1], [1, -1, 1], [1, 1, 1], [-1, 1, 1]],
    dtype=np.float64,
)


# part kinds: how an agent is built out of boxes (see PARTS) and how each part is painted
BODY, CABIN, CAB, CARGO, PERSON = "body", "cabin", "cab", "cargo", "person"

# per class: (kind, (x0, x1) along the length, (y half-extent share), (z0, z1) of the height), as
# fractions of the agent's size measured from its rear / centre line / ground
PARTS = {
    CAR: ((BODY, (0.0, 1.0), 1.0, (0.0, 0.58)), (CABIN, (0.18, 0.72), 0.88, (0.58, 1.0))),
    TRUCK: ((CARGO, (0.0, 0.74), 1.0, (0.08, 1.0)), (CAB, (0.77, 1.0), 0.97, (0.04, 0.78))),
    PEDESTRIAN: ((PERSON, (0.0, 1.0), 1.0, (0.0, 1.0)),),
}


@dataclass(frozen=True)
class Boxes:
    """Oriented 3D boxes (agent parts) in world coordinates; ``owner`` is the agent of each part."""

    centres: np.ndarray  # [B,3]
    rotations: np.ndarray  # [B,3,3] world-from-box (x along the box length, z up)
    half: np.ndarray  # [B,3] half length, width, height
    classes: np.ndarray  # [B] int, the owner's class
    owner: np.ndarray  # [B] int, index into layout.agents
    kinds: tuple[str, ...]  # [B] part kind

    def corners(self, i: int) -> np.ndarray:
        """[8,3] world corners; 0-3 bottom, 4-7 top (4+k above k)."""
        return self.centres[i] + (_UNIT_CORNERS * self.half[i]) @ self.rotations[i].T

    def footprint(self, agent: int) -> np.ndarray:
        """[4,3] bottom corners of the agent's bounding box (union of its parts)."""
        parts = np.flatnonzero(self.owner == agent)
        pts = np.concatenate([self.corners(int(i)) for i in parts])
        rot = self.rotations[parts[0]]
        local = pts @ rot  # the parts share one rotation
        lo, hi = local.min(axis=0), local.max(axis=0)
        rect = np.array(
            [[lo[0], lo[1], lo[2]], [hi[0], lo[1], lo[2]], [hi[0], hi[1], lo[2]], [lo[0], hi[1], lo[2]]]
        )
        return rect @ rot.T


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
    centres, rotations, half, classes, owner, kinds = [], [], [], [], [], []
    for i, agent in enumerate(layout.agents):
        x, y, z, phi = ground.road_point(agent.s0 + agent.speed * t, agent.d)
        pitch = float(np.arctan(ground.grade(x) * np.cos(agent.yaw_offset)))
        rot = body_rotation(phi + agent.yaw_offset, pitch)
        length, width, height = agent.size
        base = np.array([x, y, z])
        for kind, (x0, x1), wshare, (z0, z1) in PARTS[agent.cls]:
            local = np.array([(x0 + x1 - 1.0) / 2 * length, 0.0, (z0 + z1) / 2 * height])
            centres.append(base + rot @ local)
            rotations.append(rot)
            half.append(np.array([(x1 - x0) * length, wshare * width, (z1 - z0) * height]) / 2)
            classes.append(agent.cls)
            owner.append(i)
            kinds.append(kind)
    n = len(centres)
    return Boxes(
        np.array(centres).reshape(n, 3),
        np.array(rotations).reshape(n, 3, 3),
        np.array(half).reshape(n, 3),
        np.array(classes, dtype=np.int64),
        np.array(owner, dtype=np.int64),
        tuple(kinds),
    )
