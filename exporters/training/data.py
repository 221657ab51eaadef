"""Training data from the synthetic world: a pre-rendered pool of scenes plus augmentation.

Rendering costs far more CPU than reading a cached array, and the 2 cores should go to the network,
so the trainer renders a pool of scenes once (cached on disk as one .npz per pool, keyed by seeds
and size) and draws batches from it with augmentation: horizontal flip (image, boxes, segmentation,
depth and the LiDAR depth image together) and brightness/contrast jitter. Training seeds never
overlap the validation split (:func:`exporters.evaluation.training_seed`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from exporters.evaluation.split import training_seed
from serving.lidar import project_to_depth_image

log = logging.getLogger(__name__)

CACHE_VERSION = 1


@dataclass
class ScenePool:
    """Rendered scenes, stacked: images [N,H,W,3] uint8, seg [N,H,W] uint8, depth [N,H,W] float16,
    lidar [N,H,W] float16 (None without LiDAR), boxes/classes as per-scene lists."""

    images: np.ndarray
    seg: np.ndarray
    depth: np.ndarray
    lidar: np.ndarray | None
    boxes: list[np.ndarray]
    classes: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.images)


def scene_targets(scene, hw: tuple[int, int], lidar: bool) -> tuple:
    """(image, seg, depth, lidar_depth|None, boxes, classes) of one world scene at model size."""
    lidar_depth = None
    if lidar:
        if scene.points is None:
            raise ValueError("scene was rendered without LiDAR points")
        lidar_depth = project_to_depth_image(scene.points, scene.projection, hw)[0]
    boxes = np.asarray(scene.boxes, np.float32).reshape(-1, 4)
    classes = np.asarray(scene.classes, np.int64).reshape(-1)
    return scene.image, scene.seg, scene.depth, lidar_depth, boxes, classes


def _cache_path(cache_dir: Path, seeds: list[int], hw: tuple[int, int], lidar: bool) -> Path:
    key = hashlib.sha256(f"{CACHE_VERSION}:{seeds[0]}:{len(seeds)}:{seeds[-1]}:{hw}:{lidar}".encode())
    return (
        cache_dir
        / f"pool-{hw[0]}x{hw[1]}-{len(seeds)}-{'lidar' if lidar else 'cam'}-{key.hexdigest()[:10]}.npz"
    )


def build_pool(
    num_scenes: int,
    hw: tuple[int, int],
    lidar: bool,
    seed_base: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> ScenePool:
    """Render ``num_scenes`` training scenes (or load them from ``cache_dir``)."""
    from world import render_scene

    seeds = [training_seed(i, seed_base) for i in range(num_scenes)]
    path = _cache_path(cache_dir, seeds, hw, lidar) if cache_dir is not None else None
    if path is not None and path.exists():
        log.info("loading scene pool %s", path)
        return _load_pool(path)
    h, w = hw
    images = np.zeros((num_scenes, h, w, 3), np.uint8)
    seg = np.zeros((num_scenes, h, w), np.uint8)
    depth = np.zeros((num_scenes, h, w), np.float16)
    lid = np.zeros((num_scenes, h, w), np.float16) if lidar else None
    boxes: list[np.ndarray] = []
    classes: list[np.ndarray] = []
    for i, seed in enumerate(tqdm(seeds, desc="render pool", disable=not progress, unit="scene")):
        scene = render_scene(seed, hw=hw, lidar=lidar)
        img, s, d, ld, b, c = scene_targets(scene, hw, lidar)
        images[i], seg[i], depth[i] = img, s, np.minimum(d, 65000.0)
        if lid is not None:
            lid[i] = np.minimum(ld, 65000.0)
        boxes.append(b)
        classes.append(c)
    pool = ScenePool(images, seg, depth, lid, boxes, classes)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save_pool(pool, path)
    return pool


def _save_pool(pool: ScenePool, path: Path) -> None:
    counts = np.array([len(b) for b in pool.boxes], np.int64)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        images=pool.images,
        seg=pool.seg,
        depth=pool.depth,
        lidar=pool.lidar if pool.lidar is not None else np.zeros(0, np.float16),
        boxes=np.concatenate(pool.boxes) if pool.boxes else np.zeros((0, 4), np.float32),
        classes=np.concatenate(pool.classes) if pool.classes else np.zeros(0, np.int64),
        counts=counts,
    )
    tmp.replace(path)


def _load_pool(path: Path) -> ScenePool:
    with np.load(path) as z:
        counts = z["counts"]
        splits = np.cumsum(counts)[:-1]
        lidar = z["lidar"]
        return ScenePool(
            images=z["images"],
            seg=z["seg"],
            depth=z["depth"],
            lidar=lidar if lidar.size else None,
            boxes=list(np.split(z["boxes"], splits)),
            classes=list(np.split(z["classes"], splits)),
        )


@dataclass
class Batch:
    """One augmented batch as numpy arrays, ready for torch.from_numpy."""

    images: np.ndarray  # uint8 [B,3,H,W]
    seg: np.ndarray  # int64 [B,H,W]
    depth: np.ndarray  # float32 [B,H,W], 0 = undefined
    lidar: np.ndarray | None  # float32 [B,1,H,W]
    boxes: list[np.ndarray]  # float32 [N,4] per image
    classes: list[np.ndarray]  # int64 [N] per image


def sample_batch(pool: ScenePool, batch_size: int, rng: np.random.Generator, augment: bool = True) -> Batch:
    idx = rng.integers(0, len(pool), size=batch_size)
    images, segs, depths, lids, boxes, classes = [], [], [], [], [], []
    for i in idx:
        img = pool.images[i]
        seg = pool.seg[i]
        depth = pool.depth[i].astype(np.float32)
        lid = pool.lidar[i].astype(np.float32) if pool.lidar is not None else None
        b = pool.boxes[i].copy()
        if augment and rng.random() < 0.5:
            img, seg, depth = img[:, ::-1], seg[:, ::-1], depth[:, ::-1]
            lid = lid[:, ::-1] if lid is not None else None
            w = img.shape[1]
            b[:, [0, 2]] = w - b[:, [2, 0]]
        if augment:
            img = photometric_jitter(img, rng)
        images.append(np.ascontiguousarray(img.transpose(2, 0, 1)))
        segs.append(seg)
        depths.append(depth)
        if lid is not None:
            lids.append(lid[None])
        boxes.append(b)
        classes.append(pool.classes[i])
    return Batch(
        images=np.stack(images),
        seg=np.stack(segs).astype(np.int64),
        depth=np.ascontiguousarray(np.stack(depths)),
        lidar=np.ascontiguousarray(np.stack(lids)) if lids else None,
        boxes=boxes,
        classes=classes,
    )


def photometric_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and a little per-channel gain (lighting and white balance changes)."""
    contrast = rng.uniform(0.7, 1.3)
    brightness = rng.uniform(-30.0, 30.0)
    gain = rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    mean = float(img.mean())
    out = (img.astype(np.float32) - mean) * contrast + mean + brightness
    out *= gain
    return np.clip(out, 0, 255).astype(np.uint8)
