"""Letterbox geometry shared by the server's pre/postprocess, the clients' raw mode and the exporters.

A source image of size (src_h, src_w) is scaled by ``scale`` keeping its aspect ratio, placed at
(pad_x, pad_y) inside the model input, and the rest filled with the spec's pad value.
:meth:`Letterbox.to_tensor` / :meth:`Letterbox.from_tensor` are the only writer and reader of the
``letterbox`` tensor that carries this geometry to the clients; :func:`network_image` is the only
builder of a row of the network's ``images`` input on the CPU.

One rule, two implementations: this module (numpy/OpenCV: the clients' raw mode, the local backend,
the reference in tests) and the frame model's graph (serving.frame_graph, what ONNX Runtime and
TensorRT run). Sizes round half up in integer arithmetic (:func:`fit_size`, :func:`div_round`);
the resize is bilinear with half-pixel centres, the only filter TensorRT's resize layer has in
common with ONNX Runtime and OpenCV (no antialias): encoded frames are decoded at a reduced DCT
scale first (serving.processing), so the resize seldom shrinks by more than 2x.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from serving.errors import SpecError
from serving.spec import LETTERBOX_FIELDS, LetterboxRule


def div_round(a: int, b: int) -> int:
    """a / b rounded half up, for non-negative integers (the graph computes the same)."""
    return (2 * a + b) // (2 * b)


def fit_size(src_hw: tuple[int, int], dst_hw: tuple[int, int], allow_upscale: bool = True) -> tuple[int, int]:
    """The letterboxed content's (height, width): the side that binds takes the model size, the
    other ``round(side * scale)`` half up; without upscaling never more than the source."""
    (src_h, src_w), (dst_h, dst_w) = src_hw, dst_hw
    if dst_h * src_w <= dst_w * src_h:  # height binds: scale = dst_h / src_h
        new_h, new_w = dst_h, div_round(src_w * dst_h, src_h)
    else:
        new_h, new_w = div_round(src_h * dst_w, src_w), dst_w
    if not allow_upscale:
        new_h, new_w = min(new_h, src_h), min(new_w, src_w)
    return max(1, new_h), max(1, new_w)


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int
    src_h: int
    src_w: int

    @classmethod
    def fit(cls, src_hw: tuple[int, int], dst_hw: tuple[int, int], allow_upscale: bool = True) -> Letterbox:
        src_h, src_w = src_hw
        dst_h, dst_w = dst_hw
        if src_h < 1 or src_w < 1:
            raise SpecError(f"image size {src_h}x{src_w} is empty")
        scale = min(dst_h / src_h, dst_w / src_w)
        if not allow_upscale:
            scale = min(scale, 1.0)
        new_h, new_w = fit_size(src_hw, dst_hw, allow_upscale)
        return cls(scale, (dst_w - new_w) // 2, (dst_h - new_h) // 2, src_h, src_w)

    @property
    def resized_hw(self) -> tuple[int, int]:
        # round half up; the epsilon keeps an exact half (a rational W*H'/H) from falling below it
        def side(n: int) -> int:
            return max(1, int(np.floor(n * self.scale + 0.5 + 1e-6)))

        return side(self.src_h), side(self.src_w)

    def dense_crop(self, stride: int = 1) -> tuple[int, int, int, int]:
        """(y0, x0, h, w) of the letterboxed content in a map at 1/stride model resolution."""
        new_h, new_w = self.resized_hw
        h, w = max(1, div_round(new_h, stride)), max(1, div_round(new_w, stride))
        return self.pad_y // stride, self.pad_x // stride, h, w

    def to_tensor(self) -> np.ndarray:
        """The float32 ``letterbox`` tensor of one frame, laid out as ``spec.LETTERBOX_FIELDS``."""
        row = [self.scale, self.pad_x, self.pad_y, self.src_h, self.src_w, 1.0]
        return np.array(row, np.float32)

    @classmethod
    def from_tensor(cls, arr: np.ndarray) -> Letterbox:
        """The inverse of :meth:`to_tensor` (one row); SpecError for a row no letterbox can have
        (a client calling postprocess directly sends what it likes)."""
        a = np.asarray(arr, dtype=np.float64).reshape(-1)
        if (
            a.size < 5
            or not np.isfinite(a[:5]).all()
            or a[0] <= 0
            or (a[1:3] < 0).any()
            or (a[3:5] < 1).any()
        ):
            raise SpecError(f"not a letterbox row (scale > 0, pads >= 0, source >= 1x1): {a[:5].tolist()}")
        return cls(float(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]))

    @staticmethod
    def rows(tensor: np.ndarray) -> np.ndarray:
        """A request's ``letterbox`` tensor as float32 [n, fields] (one row per frame)."""
        return np.asarray(tensor, np.float32).reshape(-1, len(LETTERBOX_FIELDS))

    # --- forward: source -> model input -------------------------------------------------------
    def apply(self, image: np.ndarray, dst_hw: tuple[int, int], pad_value: int = 114) -> np.ndarray:
        """Letterbox an HxWxC uint8 image into ``dst_hw``."""
        new_h, new_w = self.resized_hw
        out = np.full((dst_hw[0], dst_hw[1], image.shape[2]), pad_value, dtype=image.dtype)
        out[self.pad_y : self.pad_y + new_h, self.pad_x : self.pad_x + new_w] = self.resize(image)
        return out

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The source image at ``resized_hw``, bilinear (itself when already that size: cv2.resize
        to the same size is a copy)."""
        new_h, new_w = self.resized_hw
        if image.shape[:2] == (new_h, new_w):
            return image
        return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)

    def points_to_model(self, uv: np.ndarray) -> np.ndarray:
        """Source pixel coordinates [...,2] -> model-input pixel coordinates."""
        return uv * self.scale + np.array([self.pad_x, self.pad_y], dtype=np.float64)

    # --- inverse: model input -> source ---------------------------------------------------------
    def boxes_to_source(self, boxes: np.ndarray) -> np.ndarray:
        """x1,y1,x2,y2 boxes in model-input pixels -> source pixels, clipped to the image."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
        b[:, [0, 2]] = (b[:, [0, 2]] - self.pad_x) / self.scale
        b[:, [1, 3]] = (b[:, [1, 3]] - self.pad_y) / self.scale
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, self.src_w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, self.src_h)
        return b

    def crop_dense(self, dense: np.ndarray, stride: int = 1, resize_to_source: bool = False) -> np.ndarray:
        """Cut the letterboxed content out of a dense map at 1/stride model resolution.

        Class maps (integer dtypes) resize with nearest neighbour; float maps bilinearly.
        """
        y0, x0, h, w = self.dense_crop(stride)
        crop = dense[y0 : y0 + h, x0 : x0 + w]
        if crop.size == 0:
            raise SpecError(f"letterbox content at ({x0},{y0}) lies outside the {dense.shape[:2]} map")
        if not resize_to_source:
            return np.ascontiguousarray(crop)
        return self.to_source_size(crop)

    def to_source_size(self, crop: np.ndarray) -> np.ndarray:
        """A map already cut out of the letterbox, resized to the source frame (class maps with
        nearest neighbour, float maps bilinearly): where a client asks for source-size maps."""
        interp = cv2.INTER_NEAREST if np.issubdtype(crop.dtype, np.integer) else cv2.INTER_LINEAR
        work = crop.astype(np.float32) if crop.dtype == np.float16 else crop
        out = cv2.resize(work, (self.src_w, self.src_h), interpolation=interp)
        return out.astype(crop.dtype, copy=False)


def letterbox_image(
    image: np.ndarray, dst_hw: tuple[int, int], pad_value: int = 114, allow_upscale: bool = True
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an HxWx3 uint8 image; returns the model-size image and its geometry."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SpecError(f"expected an HxWx3 uint8 image, got {image.dtype} {tuple(image.shape)}")
    lb = Letterbox.fit((image.shape[0], image.shape[1]), dst_hw, allow_upscale)
    return lb.apply(image, dst_hw, pad_value), lb


def network_image(
    image: np.ndarray, dst_hw: tuple[int, int], rule: LetterboxRule
) -> tuple[np.ndarray, Letterbox]:
    """One frame as a row of the network's ``images`` input: letterboxed, CHW uint8, contiguous:
    ``letterbox_image`` transposed, each plane written once (this runs per frame in the clients'
    raw mode and the server's preprocess)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise SpecError(f"expected an HxWx3 uint8 image, got {image.dtype} {tuple(image.shape)}")
    lb = Letterbox.fit((image.shape[0], image.shape[1]), dst_hw, rule.allow_upscale)
    new_h, new_w = lb.resized_hw
    out = np.full((3, dst_hw[0], dst_hw[1]), rule.pad_value, dtype=np.uint8)
    resized = lb.resize(image)
    for c in range(3):  # OpenCV writes each channel's plane in place: a tenth of numpy's transpose
        plane = out[c, lb.pad_y : lb.pad_y + new_h, lb.pad_x : lb.pad_x + new_w]
        got = cv2.extractChannel(resized, c, dst=plane)
        if not np.shares_memory(got, plane):  # an OpenCV that made its own array instead
            plane[...] = got
    return out, lb
