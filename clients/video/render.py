"""Annotated frames: boxes with labels and scores, segmentation overlay, a depth colour-map panel,
and a legend on each (class colours; the depth colour bar in metres).

Only the heads the model has are drawn: without a depth head the frame has no depth panel (the
video is the source's width, not twice it). Which boxes are drawn and where depth is shown is
decided by :mod:`clients.video.display` (display only: the served outputs are kept as they are).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import cv2
import numpy as np

from clients.results import Detection, PerceptionResult
from clients.video.display import DISPLAY_MIN_SCORE, display_detections, sky_region

# BGR colours; segmentation by class id (0 = background is left untouched)
SEG_COLOURS = {1: (80, 200, 60), 2: (0, 220, 255)}
SEG_ALPHA = {1: 0.35, 2: 0.7}
BOX_COLOURS = [(255, 160, 0), (0, 120, 255), (60, 60, 255), (255, 0, 200), (0, 255, 160)]
DEPTH_RANGE_M = (1.0, 80.0)
NO_DEPTH_BGR = (48, 48, 48)  # sky / no surface: no depth colour
DEPTH_TICKS_M = (1, 3, 10, 30, 80)
LEGEND_MIN_H = 96  # a smaller picture (a thumbnail) has no room for the legends


def _label(img: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(y, th + base + 1)
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 2, y), colour, -1)
    cv2.putText(img, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _seg_luts() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """256-entry lookup tables by class id: BGR colour, its weight and the frame's weight."""
    colour = np.zeros((256, 1, 3), np.uint8)
    alpha = np.zeros(256, np.float32)
    for cls, c in SEG_COLOURS.items():
        colour[cls, 0] = c
        alpha[cls] = SEG_ALPHA[cls]
    return colour, alpha, 1.0 - alpha  # float32 stays float32


_SEG_COLOUR, _SEG_ALPHA, _FRAME_ALPHA = _seg_luts()


def overlay_segmentation(bgr: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Blend a class colour over each pixel (this runs for every frame of a video, so it stays in
    OpenCV's vectorised kernels: three table lookups and one per-pixel weighted blend).

    Only the rows that hold a class are blended (background, weight 1 on the frame, comes out
    unchanged): the same bytes as blending the whole frame, at a fraction of the CPU where the
    classes (drivable area, lanes) fill the lower part of the picture."""
    out = bgr.copy()
    rows = np.flatnonzero(seg.any(axis=1))
    if rows.size == 0:
        return out
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    band = seg[top:bottom]
    colour = cv2.LUT(cv2.cvtColor(band, cv2.COLOR_GRAY2BGR), _SEG_COLOUR)
    out[top:bottom] = cv2.blendLinear(
        bgr[top:bottom], colour, cv2.LUT(band, _FRAME_ALPHA), cv2.LUT(band, _SEG_ALPHA)
    )
    return out


def _depth_level(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint8 colour-map level (255 = near), on a log scale clipped to DEPTH_RANGE_M."""
    lo, hi = DEPTH_RANGE_M
    d = np.clip(depth.astype(np.float32), lo, hi)
    t = 1.0 - (np.log(d) - np.log(lo)) / (np.log(hi) - np.log(lo))
    return (t * 255).astype(np.uint8)


with np.errstate(invalid="ignore"):  # the NaN bit patterns among the 65536
    # every float16 value's level, computed by the same arithmetic: the depth head's float16 maps
    # are looked up (a third of the CPU) with the same bytes out
    _FP16_LEVEL = _depth_level(np.arange(1 << 16, dtype=np.uint16).view(np.float16))


def _colour_depth(depth: np.ndarray) -> np.ndarray:
    level = _FP16_LEVEL[depth.view(np.uint16)] if depth.dtype == np.float16 else _depth_level(depth)
    return cv2.applyColorMap(level, cv2.COLORMAP_TURBO)


def depth_panel(
    depth: np.ndarray | None,
    hw: tuple[int, int],
    lidar_depth: np.ndarray | None = None,
    boxes: tuple[Detection, ...] = (),
) -> np.ndarray:
    """Depth in metres -> TURBO colour map (near = red, far = blue, log scale), with a colour bar.
    ``depth`` may be smaller than ``hw`` (the depth head's resolution): it is coloured there and the
    colours are resized, which costs a fraction of colouring at ``hw``. Where the map has no surface
    (the sky: display.sky_region, outside ``boxes``, source pixels) it is left grey.
    ``lidar_depth`` (HxW metres, 0 = no return) is drawn on top as dots in the same colours."""
    h, w = hw
    panel: np.ndarray
    if depth is None:
        panel = np.zeros((h, w, 3), np.uint8)
        cv2.putText(panel, "no depth head", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (200, 200, 200), 1)
    else:
        panel = _colour_depth(depth)
        sky = sky_region(depth, hw, boxes)
        if sky is not None:  # slices, not a boolean mask: a fraction of the CPU per frame
            row, rects = sky
            kept = [panel[y0:y1, x0:x1].copy() for y0, y1, x0, x1 in rects]
            panel[:row] = NO_DEPTH_BGR
            for (y0, y1, x0, x1), pixels in zip(rects, kept, strict=True):
                panel[y0:y1, x0:x1] = pixels
        if panel.shape[:2] != (h, w):
            panel = cv2.resize(panel, (w, h), interpolation=cv2.INTER_LINEAR)
    lidar = lidar_depth is not None and lidar_depth.shape == (h, w)
    if lidar:
        assert lidar_depth is not None
        hit = lidar_depth > 0
        dots = cv2.dilate(hit.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0
        grown = cv2.dilate(lidar_depth, np.ones((2, 2), np.uint8))  # carry each return's depth to its dot
        if dots.any():
            panel[dots] = _colour_depth(grown[dots][None])[0]
    if depth is not None and h >= LEGEND_MIN_H:
        _depth_bar(panel, max(0.35, h / 900), lidar)
    return panel


def _depth_bar(panel: np.ndarray, scale: float, lidar: bool) -> None:
    """A colour bar along the bottom of the panel: metres on a log scale, and the no-depth grey (the
    same pixels on every frame: drawn once per panel size, pasted after)."""
    h, w = panel.shape[:2]
    y, x, pixels = _depth_bar_pixels(h, w, scale, lidar)
    panel[y:h, x : x + pixels.shape[1]] = pixels


@functools.lru_cache(maxsize=8)
def _depth_bar_pixels(h: int, w: int, scale: float, lidar: bool) -> tuple[int, int, np.ndarray]:
    panel = np.zeros((h, w, 3), np.uint8)
    bar_h = max(6, h // 40)
    (_, th), base = cv2.getTextSize("0", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, x1 = 8, max(9, w * 3 // 5)
    y1 = h - th - base - 6
    y0 = y1 - bar_h
    lo, hi = DEPTH_RANGE_M
    metres = np.exp(np.linspace(np.log(lo), np.log(hi), x1 - x0, dtype=np.float32))[None]
    (nw, _), _ = cv2.getTextSize("none", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    sx = x1 + 8 + nw // 2
    panel[y0:y1, x0:x1] = _colour_depth(metres)
    text = "depth, m (log)" + ("; dots: LiDAR" if lidar else "")
    _text(panel, text, x0, y0 - 4, scale)
    for m in DEPTH_TICKS_M:
        x = x0 + int(round((np.log(m) - np.log(lo)) / (np.log(hi) - np.log(lo)) * (x1 - x0 - 1)))
        cv2.line(panel, (x, y1), (x, y1 + 2), (255, 255, 255), 1)
        (tw, _), _ = cv2.getTextSize(f"{m:g}", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        _text(panel, f"{m:g}", max(x - tw // 2, 0), h - base - 2, scale)
    cv2.rectangle(panel, (sx, y0), (sx + nw, y1), NO_DEPTH_BGR, -1)
    cv2.rectangle(panel, (sx, y0), (sx + nw, y1), (200, 200, 200), 1)
    _text(panel, "none", sx, h - base - 2, scale)
    top, left, right = max(y0 - th - base - 6, 0), max(x0 - 4, 0), min(w, sx + nw + 5)
    pixels = panel[top:h, left:right].copy()
    pixels.flags.writeable = False
    return top, left, pixels


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float) -> None:
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


_NOTE = "{}/{} boxes: score>=" + f"{DISPLAY_MIN_SCORE:g}, 1/object"
_NOTE_ALL = "{}/{} boxes: every served box"


def _legend(
    bgr: np.ndarray,
    classes: dict[int, str],
    seg_classes: tuple[str, ...],
    shown: int,
    served: int,
    scale: float,
    note: str = _NOTE,
) -> None:
    """Top right: one swatch per detection class and segmentation class, and how many boxes are drawn."""
    h, w = bgr.shape[:2]
    x0, line, pixels, mask = _legend_pixels(w, tuple(sorted(classes.items())), seg_classes, scale)
    region = bgr[4 : 4 + pixels.shape[0], x0 : x0 + pixels.shape[1]]
    np.right_shift(region, 1, out=region)  # darkened, so the text reads on any scene
    cv2.copyTo(pixels, mask, region)
    _text(bgr, note.format(shown, served), x0 + 4, 4 + pixels.shape[0] - 4, scale)


@functools.lru_cache(maxsize=8)
def _legend_pixels(
    w: int, classes: tuple[tuple[int, str], ...], seg_classes: tuple[str, ...], scale: float
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """The swatches and names (drawn once), where they go, and the mask of their pixels."""
    rows = [(BOX_COLOURS[i % len(BOX_COLOURS)], name) for i, name in classes]
    rows += [(SEG_COLOURS[i], seg_classes[i]) for i in sorted(SEG_COLOURS) if i < len(seg_classes)]
    (nw, th), base = cv2.getTextSize(_NOTE.format(999, 999), cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    line = th + base + 4
    x0 = max(w - nw - 10, 0)
    pixels = np.zeros((line * (len(rows) + 1) + 4, w - x0, 3), np.uint8)  # the last line: the note
    for k, (colour, name) in enumerate(rows):
        y = line * (k + 1)
        cv2.rectangle(pixels, (4, y - th), (4 + th, y), colour, -1)
        _text(pixels, name, 10 + th, y, scale)
    mask = (pixels.max(axis=2) > 0).astype(np.uint8)
    for a in (pixels, mask):
        a.flags.writeable = False
    return x0, line, pixels, mask


def annotate(
    rgb: np.ndarray,
    result: PerceptionResult | None,
    header: str = "",
    error: str | None = None,
    lidar_depth: np.ndarray | None = None,
    depth_head: bool = True,
    det_classes: tuple[str, ...] = (),
    every_box: bool = False,
) -> np.ndarray:
    """An RGB source frame and its result -> a BGR image: annotated frame | depth panel, the panel
    only for a model with a depth head (``depth_head``, so that a frame without a result keeps the
    video's layout). ``det_classes`` (the model's) name the legend's box colours; without them the
    legend names the classes of this frame's detections. ``every_box`` draws every served box
    instead of the display's choice (``percept compare``'s gallery: a low-score box one side has
    and the other misses is what the reader must see)."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    scale = max(0.4, min(h, w) / 800)
    depth = None
    shown: tuple[Detection, ...] = ()
    if result is not None:
        seg = result.seg_at_source()
        if seg is not None:
            bgr = overlay_segmentation(bgr, seg)
        thick = max(2, round(min(h, w) / 300))
        served_boxes = tuple(result.detections or ())
        shown = served_boxes if every_box else tuple(display_detections(served_boxes))
        for det in shown:
            x1, y1, x2, y2 = (int(round(v)) for v in det.box)
            colour = BOX_COLOURS[det.class_id % len(BOX_COLOURS)]
            cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, thick)
            _label(bgr, f"{det.class_name} {det.score:.2f}", x1, y1, colour, scale)
        classes = dict(enumerate(det_classes)) or {d.class_id: d.class_name for d in result.detections or ()}
        if result.detections is None:
            classes = {}
        if (result.detections is not None or seg is not None) and h >= LEGEND_MIN_H:
            served = len(result.detections or ())
            seg_names = result.seg_classes if seg is not None else ()
            note = _NOTE_ALL if every_box else _NOTE
            _legend(bgr, classes, seg_names, len(shown), served, scale * 0.8, note)
        depth = result.depth  # coloured at its own resolution, then resized by depth_panel
    if header:
        _label(bgr, header, 2, int(22 * scale / 0.5), (255, 255, 255), scale)
    if error:
        _label(bgr, f"ERROR: {error}"[:80], 2, h // 2, (0, 0, 255), scale)
    if not depth_head:
        return bgr
    return np.concatenate([bgr, depth_panel(depth, (h, w), lidar_depth, shown)], axis=1)


def frame_file(index: int, name: str | None) -> str:
    """The annotated PNG of a frame (--save-frames): its index, then its image file's stem if any,
    so the files sort in frame order and name the image they show."""
    return f"{index:06d}-{Path(name).stem}.png" if name else f"{index:06d}.png"


def write_png(path: Path, image: np.ndarray, params: tuple[int, ...] = ()) -> None:
    """Write atomically (temp file, rename): a frame processed again replaces its PNG, never tears it.
    ``params``: OpenCV's imwrite flags (e.g. the PNG compression level)."""
    tmp = path.with_name(path.stem + ".tmp.png")
    if not cv2.imwrite(str(tmp), image, list(params)):
        raise OSError(f"{path}: OpenCV could not write the PNG")
    os.replace(tmp, path)
