"""Camera rendering: ground and sky ray-cast per pixel (vectorised), boxes rasterised face by face
with ``cv2.fillConvexPoly`` and a per-face plane-depth z-buffer. Produces the image and, from the
same buffers, every ground truth (seg, z-depth, an instance-id map the 2D boxes are taken from).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from world.geometry import clip_polygon_near
from world.layout import Layout
from world.state import BODY, BOX_FACES_VERTICAL, CAB, CABIN, CARGO, PERSON, Frame

SEG_BACKGROUND, SEG_DRIVABLE, SEG_LANE = 0, 1, 2
FAR_M = 200.0  # ground beyond this is not drawn: the distant hills / sky band (depth 0, background)
NEAR_M = 0.3  # camera near plane for box faces
MIN_BOX_PX = 4  # a visible box narrower or shorter than this is dropped from the ground truth
MIN_VISIBLE_FRACTION = 0.25  # ... and so is one with less than this share of its silhouette visible
_SUBPIXEL_BITS = 4


@dataclass
class Buffers:
    image: np.ndarray  # float32 HxWx3 RGB, display values 0..1
    seg: np.ndarray  # uint8
    zbuf: np.ndarray  # float32, inf where nothing
    depth: np.ndarray  # float32, ground truth (0 where undefined)
    instance: np.ndarray  # int16, 0 none, i+1 agent i
    # agent i -> (y0, y1, x0, x1) bounds and in-image pixel count of its unoccluded silhouette
    silhouettes: dict[int, tuple[tuple[int, int, int, int], int] | None] = field(default_factory=dict)


def render_camera(layout: Layout, frame: Frame, hw: tuple[int, int]) -> Buffers:
    h, w = hw
    cam = frame.camera
    dx, dy, dz = cam.pixel_rays(hw)
    t = layout.road.ground.intersect(cam.centre, dx, dy, dz)
    hit = t < FAR_M
    buf = Buffers(
        image=np.empty((h, w, 3), np.float32),
        seg=np.zeros((h, w), np.uint8),
        zbuf=np.where(hit, t, np.float32(np.inf)).astype(np.float32),
        depth=np.zeros((h, w), np.float32),
        instance=np.zeros((h, w), np.int16),
    )
    # channels are composed as 2D planes and merged once: numpy broadcasting over a trailing axis
    # of 3 is an order of magnitude slower than three 2D operations
    channels = _sky(layout, dx, dy, dz)
    rows_hit = np.flatnonzero(hit.any(axis=1))
    if len(rows_hit):
        r0 = int(rows_hit[0])
        ground = _ground(layout, frame, buf, r0, t[r0:], dx[r0:], dy[r0:], hit[r0:])
        for c in range(3):
            channels[c][r0:] = np.where(hit[r0:], ground[c], channels[c][r0:])
    cv2.merge(channels, dst=buf.image)
    _shadows(layout, frame, buf)
    faces: dict[int, list] = {}
    for p in _far_to_near(frame):
        faces.setdefault(int(frame.boxes.owner[p]), []).extend(_draw_part(layout, frame, buf, p))
    for agent, masks in faces.items():
        buf.silhouettes[agent] = _union(masks)
    return buf


def _far_to_near(frame: Frame) -> list[int]:
    cam = frame.camera
    z = cam.to_camera(frame.boxes.centres)[:, 2] if len(frame.boxes.centres) else np.zeros(0)
    return [int(i) for i in np.argsort(-z) if z[i] > -20.0]


def _sky(layout: Layout, dx, dy, dz) -> list[np.ndarray]:
    """Sky gradient by elevation, with a band of distant hills whose height varies with azimuth.
    The camera has no roll, so elevation is taken per row and azimuth per column, at the centre."""
    light = layout.light
    h, w = dx.shape
    mid_r, mid_c = h // 2, w // 2
    cx, cy, cz = dx[:, mid_c], dy[:, mid_c], dz[:, mid_c]
    sin_el = (cz / np.sqrt(cx * cx + cy * cy + cz * cz))[:, None]
    s = np.sqrt(np.clip(sin_el * 2.5, 0.0, 1.0))
    az = np.arctan2(dy[mid_r], dx[mid_r])
    m = light.mountains
    prof = (
        0.012
        + 0.02 * m[0] * (1.0 + np.sin(3.0 * az + 6.3 * m[1]))
        + 0.008 * m[2] * np.sin(11.0 * az + 6.3 * m[3])
    )
    hills = sin_el < np.sin(prof)[None, :]
    # terrain beyond FAR_M, shaded and hazed like grass at that distance so the seam is soft
    fog = np.exp(-FAR_M / light.fog_m)
    shade = (light.ambient + light.sun_colour * max(light.sun[2], 0.0)) * light.exposure
    hill_col = 0.85 * light.grass * shade * fog + light.sky_horizon * (1.0 - fog)
    k = np.clip((sin_el + 0.06) / 0.14, 0.0, 1.0) * 0.6  # higher terrain is farther: hazier
    out = []
    for c in range(3):
        hz = light.sky_horizon[c]
        grad = (hz + (light.sky_zenith[c] - hz) * s).astype(np.float32)
        terrain = (hill_col[c] + (hz - hill_col[c]) * k).astype(np.float32)
        out.append(np.where(hills, terrain, grad))
    return out


def _noise(gx: np.ndarray, gy: np.ndarray, dist: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Cheap procedural ground texture, about zero-mean, unit-ish amplitude: two octaves of crossed
    sines plus a per-cell hash for grain (world-anchored, so it moves with the ground). The fine
    octaves fade with distance, where a pixel covers many of their periods (a poor man's mipmap:
    without it they alias into moire streaks near the horizon)."""
    p = phase.astype(np.float32)
    n = np.sin(0.83 * gx + 0.37 * gy + p[0]) * np.sin(0.21 * gx - 0.94 * gy + p[1])
    fine = 0.6 * np.sin(3.1 * gx + 2.3 * gy + p[2]) * np.sin(2.7 * gx - 3.3 * gy + p[3])
    cell = np.sin(np.floor(gx * 4.0) * np.float32(12.9898) + np.floor(gy * 4.0) * np.float32(78.233))
    grain = cell * np.float32(437.585)
    grain -= np.floor(grain)
    fine += 0.8 * (grain - 0.5)
    n += fine / (1.0 + dist * np.float32(0.06))
    return n


def _ground(layout: Layout, frame: Frame, buf: Buffers, r0: int, t, dx, dy, hit) -> list[np.ndarray]:
    """Ground colour planes for rows r0.. (valid where ``hit``); fills seg and depth there."""
    road, light = layout.road, layout.light
    cam = frame.camera
    tt = np.where(hit, t, np.float32(0.0))
    gx = np.float32(cam.centre[0]) + tt * dx
    gy = np.float32(cam.centre[1]) + tt * dy
    lat = road.ground.lateral(gx, gy)
    on_road = hit & (np.abs(lat) < road.half_width)
    # markings: distance to the nearest lane boundary k (0 = right edge .. lanes = left edge)
    q = (lat + np.float32(road.half_width)) / np.float32(road.lane_width)
    k = np.rint(q)
    line = (
        (np.abs(q - k) * np.float32(road.lane_width) < road.marking_width / 2) & (k >= 0) & (k <= road.lanes)
    )
    line &= hit
    phase = gx / np.float32(road.dash_period)
    dashes = (phase - np.floor(phase)) * np.float32(road.dash_period) < road.dash_length
    solid = (k == 0) | (k == road.lanes)
    centre_k = road.lanes - road.oncoming_lanes
    yellow = np.zeros_like(line)
    if road.oncoming_lanes and 0 < centre_k < road.lanes:
        if road.centre_solid:
            solid |= k == centre_k
        yellow = line & (k == centre_k)
    marking = line & (solid | dashes)
    yellow &= marking
    rng = np.random.default_rng(layout.noise_seed)
    noise = _noise(gx, gy, tt, rng.uniform(0.0, 6.3, 4))
    fog = np.exp(-tt / np.float32(light.fog_m))
    shade = (light.ambient + light.sun_colour * max(light.sun[2], 0.0)) * light.exposure
    rf, mf, yf = (m.astype(np.float32) for m in (on_road, marking, yellow))
    grass_tex = 1.0 + np.float32(0.15) * noise
    road_tex = 1.0 + np.float32(0.04) * noise
    out = []
    for c in range(3):
        g = np.float32(light.grass[c]) * grass_tex
        alb = g + rf * (np.float32(light.asphalt[c]) * road_tex - g)
        alb += mf * (np.float32(0.88) - alb)
        alb += yf * np.float32((0.85, 0.68, 0.18)[c] - 0.88)
        hz = np.float32(light.sky_horizon[c])
        out.append(hz + (alb * np.float32(shade[c]) - hz) * fog)
    seg = on_road.astype(np.uint8)  # SEG_DRIVABLE where road
    seg[marking] = SEG_LANE
    buf.seg[r0:] = seg
    buf.depth[r0:] = tt
    return out


def _shadows(layout: Layout, frame: Frame, buf: Buffers) -> None:
    """Shadows on the ground, image only, before the boxes are drawn: each agent's parts projected
    along the sun onto the road (direct light removed: ambient only) and a darker contact patch."""
    cam, light, ground = frame.camera, layout.light, layout.road.ground
    h, w = buf.seg.shape
    amb = light.ambient * light.exposure
    direct = light.sun_colour * max(light.sun[2], 0.0) * light.exposure
    in_shadow = (amb / (amb + direct)).astype(np.float32)
    sun = light.sun / max(light.sun[2], 0.15)  # very low sun: cap the shadow length
    for agent in np.unique(frame.boxes.owner):
        parts = np.flatnonzero(frame.boxes.owner == agent)
        pts = np.concatenate([frame.boxes.corners(int(p)) for p in parts])
        foot = frame.boxes.footprint(int(agent))
        base = float(foot[:, 2].mean())
        cast = pts - (pts[:, 2:3] - base) * sun
        hull = cv2.convexHull(np.concatenate([cast, foot])[:, :2].astype(np.float32)).reshape(-1, 2)
        shadow = np.c_[hull, ground.height(hull[:, 0].astype(np.float64))]
        centre = foot.mean(axis=0)
        for poly, factor in ((shadow, in_shadow), (centre + (foot - centre) * 1.05, in_shadow * 0.7)):
            cam_poly = clip_polygon_near(cam.to_camera(poly), NEAR_M)
            region = _fill_region(cam, cam_poly, h, w) if len(cam_poly) >= 3 else None
            if region is None:
                continue
            (y0, y1, x0, x1), mask = region
            mask &= np.isfinite(buf.zbuf[y0:y1, x0:x1])  # ground only, not the sky
            sub = buf.image[y0:y1, x0:x1]
            sub[mask] *= factor


def _fill_region(cam, poly_cam: np.ndarray, h: int, w: int):
    """Rasterise a camera-frame convex polygon: ((y0, y1, x0, x1), bool mask) or None when off-image."""
    uv = poly_cam[:, :2] / poly_cam[:, 2:3] * np.array([cam.fx, cam.fy]) + np.array([cam.cx, cam.cy])
    x0 = max(int(np.floor(uv[:, 0].min())), 0)
    x1 = min(int(np.ceil(uv[:, 0].max())) + 1, w)
    y0 = max(int(np.floor(uv[:, 1].min())), 0)
    y1 = min(int(np.ceil(uv[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # pixel (i, j) has its centre at (j + 0.5, i + 0.5); OpenCV puts it at (j, i)
    pts = np.round((uv - np.array([x0 + 0.5, y0 + 0.5])) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillConvexPoly(mask, pts, (1,), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return (y0, y1, x0, x1), mask.view(bool)


def _face_depth(cam, normal_cam: np.ndarray, point_cam: np.ndarray, y0, y1, x0, x1) -> np.ndarray:
    """z-depth of the face's plane at the pixel centres of a region: n.P = n.p0 with P = z * ray."""
    xn = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cam.cx) / cam.fx
    yn = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cam.cy) / cam.fy
    den = normal_cam[0] * xn[None, :] + normal_cam[1] * yn[:, None] + normal_cam[2]
    with np.errstate(divide="ignore"):
        z = np.float32(normal_cam @ point_cam) / den.astype(np.float32)
    return np.where(den < -1e-6, z, np.inf).astype(np.float32)


# Decal bands painted on a part's vertical faces: (height fraction from, to, horizontal inset,
# albedo, faces) with faces 0 front, 1 left, 2 back, 3 right (None: all four)
_BANDS = {
    BODY: ((0.0, 0.32, 0.06, "accent", None),),
    CABIN: ((0.06, 0.94, 0.07, "accent", None),),
    CAB: ((0.0, 0.14, 0.04, "accent", None), (0.5, 0.88, 0.1, "accent", (0, 1, 3))),
    CARGO: ((0.0, 0.06, 0.0, "accent", None),),
    PERSON: ((0.0, 0.46, 0.1, "secondary", None), (0.86, 1.0, 0.15, "skin", None)),
}
_SKIN = np.array([0.78, 0.58, 0.45])
_FACES = [(b0, b1, b1 + 4, b0 + 4) for b0, b1 in BOX_FACES_VERTICAL] + [(4, 5, 6, 7)]
_NORMALS = [np.array(v, float) for v in ((1, 0, 0), (0, 1, 0), (-1, 0, 0), (0, -1, 0), (0, 0, 1))]


def _albedo(agent, kind: str, which: str) -> np.ndarray:
    if which == "skin":
        return _SKIN
    if which == "accent":
        return agent.accent
    if which == "secondary" or kind == CARGO:
        return agent.secondary
    return agent.colour


def _draw_part(layout: Layout, frame: Frame, buf: Buffers, p: int) -> list:
    """Draw part p into the buffers; return its front faces' rasterised regions (its silhouette)."""
    cam, boxes, light = frame.camera, frame.boxes, layout.light
    agent = layout.agents[int(boxes.owner[p])]
    kind = boxes.kinds[p]
    h, w = buf.seg.shape
    cc = cam.to_camera(boxes.corners(p))
    if (cc[:, 2] < NEAR_M).all():
        return []
    rot_cam = cam.rotation.T @ boxes.rotations[p]
    shade_amb = light.ambient * light.exposure
    masks = []
    for k, (face, n_body) in enumerate(zip(_FACES, _NORMALS, strict=True)):
        n_cam = rot_cam @ n_body
        poly = cc[list(face)]
        if n_cam @ poly.mean(axis=0) >= 0:  # back face
            continue
        clipped = clip_polygon_near(poly, NEAR_M)
        if len(clipped) < 3:
            continue
        region = _fill_region(cam, clipped, h, w)
        if region is None:
            continue
        masks.append(region)
        (y0, y1, x0, x1), mask = region
        z = _face_depth(cam, n_cam, poly[0], y0, y1, x0, x1)
        zb = buf.zbuf[y0:y1, x0:x1]
        vis = mask & (z < zb) & (z > NEAR_M)
        if not vis.any():
            continue
        n_world = boxes.rotations[p] @ n_body
        lit = (shade_amb + light.sun_colour * max(float(n_world @ light.sun), 0.0) * light.exposure) * (
            1.1 if k == 4 else 1.0
        )
        fog = float(np.exp(-max(float(poly[:, 2].mean()), 0.0) / light.fog_m))
        haze = light.sky_horizon * (1.0 - fog)
        top = kind == PERSON and k == 4
        img = buf.image[y0:y1, x0:x1]
        img[vis] = (_albedo(agent, kind, "accent" if top else "base") * lit * fog + haze).astype(np.float32)
        if k < 4:
            for f0, f1, inset, which, on in _BANDS[kind]:
                if on is not None and k not in on:
                    continue
                band = clip_polygon_near(_band_polygon(poly, f0, f1, inset), NEAR_M)
                breg = _fill_region(cam, band, h, w) if len(band) >= 3 else None
                if breg is None:
                    continue
                (by0, by1, bx0, bx1), bmask = breg
                sub_vis = vis[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] & bmask
                colour = _albedo(agent, kind, which) * lit * fog + haze
                img[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0][sub_vis] = colour.astype(np.float32)
        zb[vis] = z[vis]
        buf.depth[y0:y1, x0:x1][vis] = z[vis]
        buf.seg[y0:y1, x0:x1][vis] = SEG_BACKGROUND
        buf.instance[y0:y1, x0:x1][vis] = int(boxes.owner[p]) + 1
    return masks


def _union(masks):
    """Pixel union of rasterised faces: the silhouette ((y0, y1, x0, x1), count), None if empty."""
    if not masks:
        return None
    y0 = min(m[0][0] for m in masks)
    y1 = max(m[0][1] for m in masks)
    x0 = min(m[0][2] for m in masks)
    x1 = max(m[0][3] for m in masks)
    total = np.zeros((y1 - y0, x1 - x0), bool)
    for (a0, a1, b0, b1), mask in masks:
        total[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] |= mask
    return (y0, y1, x0, x1), int(total.sum())


def _band_polygon(face: np.ndarray, f0: float, f1: float, inset: float) -> np.ndarray:
    """Sub-quad of a vertical face (b0, b1, t1, t0) between height fractions f0..f1, inset sideways."""
    b0, b1, t1, t0 = face

    def at(a: float, f: float) -> np.ndarray:
        return (1 - f) * ((1 - a) * b0 + a * b1) + f * ((1 - a) * t0 + a * t1)

    return np.array([at(inset, f0), at(1 - inset, f0), at(1 - inset, f1), at(inset, f1)])
