"""INT8 calibration data for the TensorRT stage: frames letterboxed per spec, in fixed-size batches.

Sources: ``"world"`` (seeded scenes from the *training* range of seeds, so calibration never sees
the validation split that verification scores), a folder of images (camera-only networks), or a
KITTI-style sequence folder (images + velodyne + calib; required for fusion networks, whose LiDAR
branch must be calibrated on real returns). The feed is torch- and TensorRT-free; only
:func:`make_calibrator` needs TensorRT (10.x: TensorRT 11 has no implicit calibrator) and cuda-python
for the device buffers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from exporters.export.options import CalibrationOptions
from serving.errors import ExportError, SpecError
from serving.letterbox import network_image
from serving.spec import IMAGES, LIDAR_DEPTH, ModelSpec

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def calibration_frames(spec: ModelSpec, options: CalibrationOptions) -> Iterator[dict[str, np.ndarray]]:
    """Per-frame network inputs (no batch axis), at most ``options.images`` of them."""
    if options.source == "world":
        yield from _world_frames(spec, options)
        return
    folder = Path(options.source)
    from world.kitti import is_kitti_sequence

    if is_kitti_sequence(folder):
        yield from _kitti_frames(spec, folder, options.images)
        return
    if spec.fusion:
        raise SpecError(
            f"{spec.name} is a fusion network: calibrate on 'world' or a KITTI-style sequence folder "
            f"(image_2/, velodyne/, calib.txt), not the plain image folder {folder}"
        )
    yield from _image_frames(spec, folder, options.images)


def calibration_batches(spec: ModelSpec, options: CalibrationOptions) -> Iterator[dict[str, np.ndarray]]:
    """Batches of exactly ``options.batch`` frames (TensorRT calibrates at one batch size); a last
    partial batch is dropped. SpecError when not even one full batch can be formed."""
    pending: list[dict[str, np.ndarray]] = []
    produced = 0
    for frame in calibration_frames(spec, options):
        pending.append(frame)
        if len(pending) == options.batch:
            yield {t.name: np.stack([f[t.name] for f in pending]) for t in spec.network_inputs}
            produced += 1
            pending = []
    if produced == 0:
        raise SpecError(
            f"calibration source {options.source} gave fewer than one batch of {options.batch} frames"
        )


def _world_frames(spec: ModelSpec, options: CalibrationOptions) -> Iterator[dict[str, np.ndarray]]:
    from exporters.evaluation import training_seed
    from exporters.export.verify import scene_inputs
    from world import render_scene

    for i in range(options.images):
        scene = render_scene(training_seed(i, base=options.seed), hw=spec.input_hw, lidar=spec.fusion)
        yield scene_inputs(spec, scene)


def _image_frames(spec: ModelSpec, folder: Path, limit: int) -> Iterator[dict[str, np.ndarray]]:
    import cv2

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SpecError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    count = 0
    for path in files:
        if count >= limit:
            break
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            log.warning("calibration: skipping unreadable image %s", path)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        image, _ = network_image(rgb, spec.input_hw, spec.letterbox)
        count += 1
        yield {IMAGES: image}


def _kitti_frames(spec: ModelSpec, folder: Path, limit: int) -> Iterator[dict[str, np.ndarray]]:
    from serving.lidar import project_to_depth_image
    from world.kitti import read_kitti_sequence

    for count, frame in enumerate(read_kitti_sequence(folder)):
        if count >= limit:
            break
        image, lb = network_image(frame.image, spec.input_hw, spec.letterbox)
        inputs = {IMAGES: image}
        if spec.fusion:
            if frame.points is None:
                raise SpecError(f"{folder}: frame {frame.index} has no velodyne points for a fusion network")
            inputs[LIDAR_DEPTH] = project_to_depth_image(frame.points, frame.projection, spec.input_hw, lb)
        yield inputs


def cache_matches(cache: Path, onnx_sha256: str) -> bool:
    """A calibration cache is reused only for the ONNX it was computed on (``<cache>.json`` says)."""
    meta = Path(str(cache) + ".json")
    if not Path(cache).is_file() or not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("onnx_sha256") == onnx_sha256
    except (OSError, ValueError):
        return False


def write_cache(cache: Path, data: bytes, onnx_sha256: str, options: CalibrationOptions) -> None:
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(data)
    meta = {"onnx_sha256": onnx_sha256, "source": str(options.source), "images": options.images}
    Path(str(cache) + ".json").write_text(json.dumps(meta, sort_keys=True) + "\n")


class CalibrationFeed:
    """What the INT8 calibrator's ``get_batch`` does, without TensorRT: next batch -> device buffers.

    TensorRT calls ``get_batch`` from C++ and turns a Python exception there into a generic build
    failure, so the feed keeps the exception (``error``) and ends calibration; the builder's caller
    re-raises it with :meth:`raise_if_failed`. Every batch must have exactly ``batch`` frames: TensorRT
    reads the calibration profile's OPT shape from each pointer, so a smaller batch would be read past
    its end and a larger one half ignored.
    """

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], batch: int, to_device) -> None:
        self.batches = batches
        self.batch = batch
        self.to_device = to_device  # (input name, numpy array) -> (object kept alive, device pointer)
        self.keep: dict[str, Any] = {}
        self.count = 0
        self.error: BaseException | None = None

    def next_pointers(self, names) -> list[int] | None:
        if self.error is not None:
            return None
        try:
            batch = next(self.batches, None)
            if batch is None:
                log.info("calibration: %d batches of %d", self.count, self.batch)
                return None
            pointers = []
            for name in names:
                array = batch[name]
                if len(array) != self.batch:
                    raise SpecError(
                        f"calibration batch of {len(array)} frames for {name}; TensorRT reads {self.batch}"
                    )
                self.keep[name], pointer = self.to_device(name, np.ascontiguousarray(array))
                pointers.append(int(pointer))
            self.count += 1
            return pointers
        except BaseException as exc:  # noqa: BLE001 - kept and re-raised after the build
            self.error = exc
            return None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise ExportError(
                f"INT8 calibration failed in get_batch: {type(self.error).__name__}: {self.error}"
            ) from self.error


def make_calibrator(spec: ModelSpec, options: CalibrationOptions, onnx_sha256: str, opt_batch: int):
    """An ``IInt8EntropyCalibrator2`` over :func:`calibration_batches` at the profile's ``opt_batch``
    (== ``options.batch``, see tensorrt.check_calibration_batch); reads ``options.cache`` when it was
    computed for this ONNX file, writes it after calibrating. Its ``feed`` keeps a ``get_batch`` error."""
    from exporters.export.cuda_buffers import Buffers
    from exporters.export.tensorrt import check_calibration_batch, import_tensorrt

    trt: Any = import_tensorrt()
    check_calibration_batch(options.batch, opt_batch)
    buffers = Buffers()

    def to_device(name: str, array: np.ndarray):
        return buffers, buffers.upload(name, array)  # one buffer per input, reused every batch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.feed = CalibrationFeed(calibration_batches(spec, options), opt_batch, to_device)

        def get_batch_size(self) -> int:
            return opt_batch

        def get_batch(self, names):
            return self.feed.next_pointers(names)

        def read_calibration_cache(self):
            if options.cache is not None and cache_matches(options.cache, onnx_sha256):
                log.info("calibration: using the cache %s", options.cache)
                return Path(options.cache).read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if options.cache is not None:
                write_cache(options.cache, bytes(cache), onnx_sha256, options)

    return EntropyCalibrator()
