"""The worst frames per head and input, drawn: baseline | candidate | differences.

Worst: detection, the most unmatched detections; segmentation, the lowest pixel agreement; depth,
the highest p90 relative error. The difference panel is the frame dimmed, with the pixels whose class
differs (segmentation) or whose relative depth error exceeds the bound (depth) in magenta, baseline
boxes without a same-class candidate box of IoU >= the bound in red ("missing"), and candidate boxes
without a baseline one in yellow ("extra").
"""

from __future__ import annotations

import heapq
from pathlib import Path

import cv2
import numpy as np

from clients.compare.agreement import FrameAgreement
from clients.results import PerceptionResult
from clients.video.render import annotate
from clients.video.sources import FrameItem
from serving.agreement import box_iou
from serving.tolerances import Tolerances

MISSING, EXTRA, CHANGED = (0, 0, 255), (0, 255, 255), (255, 0, 255)  # BGR


def _badness(frame: FrameAgreement) -> dict[str, float]:
    out = {}
    if frame.det_total:
        out["detection"] = float(frame.det_unmatched)
    if frame.seg_agreement is not None:
        out["segmentation"] = 1.0 - frame.seg_agreement
    if frame.depth_p90 is not None:
        out["depth"] = frame.depth_p90
    return out


class Gallery:
    def __init__(
        self, folder: Path, per_head: int, bounds: Tolerances, det_classes: tuple[str, ...] = ()
    ) -> None:
        self.folder = folder
        self.per_head = per_head
        self.bounds = bounds
        self.det_classes = det_classes  # the legend names them all, on both sides
        self._heaps: dict[tuple[str, str], list] = {}
        self._n = 0  # tie-breaker: the earlier frame stays
        self.saved: dict[str, list[dict]] = {}

    def offer(self, name: str, item: FrameItem, base: PerceptionResult, cand, frame: FrameAgreement) -> None:
        if self.per_head == 0:
            return
        for head, bad in _badness(frame).items():
            if bad <= 0:
                continue
            heap = self._heaps.setdefault((name, head), [])
            self._n += 1
            entry = (bad, -self._n, item.index, item.image, base, cand)
            if len(heap) < self.per_head:
                heapq.heappush(heap, entry)
            elif entry[:2] > heap[0][:2]:
                heapq.heapreplace(heap, entry)

    def write(self) -> dict[str, list[dict]]:
        """Draw the kept frames; returns head -> [{input, frame, value, path}] worst first."""
        for (name, head), heap in sorted(self._heaps.items()):
            for bad, _, index, image, base, cand in sorted(heap, key=lambda e: (-e[0], -e[1])):
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / f"{head}-{name}-{index:06d}.jpg"
                cv2.imwrite(str(path), self._draw(head, image, base, cand), [cv2.IMWRITE_JPEG_QUALITY, 90])
                self.saved.setdefault(head, []).append(
                    {
                        "input": name,
                        "frame": index,
                        "value": bad,
                        "path": str(path.relative_to(self.folder.parent)),
                    }
                )
        return self.saved

    def _draw(self, head: str, rgb: np.ndarray, base: PerceptionResult, cand: PerceptionResult) -> np.ndarray:
        depth_head = head == "depth"
        left, right = (
            annotate(rgb, r, side, depth_head=depth_head, det_classes=self.det_classes, every_box=True)
            for r, side in ((base, "baseline"), (cand, "candidate"))
        )
        diff = self._differences(head, rgb, base, cand)
        if depth_head:  # annotate draws frame | depth panel: the difference panel fills the row
            diff = np.concatenate([diff, np.zeros_like(diff)], axis=1)
        return np.concatenate(
            [np.concatenate([left, right], axis=1), np.concatenate([diff, diff * 0], axis=1)]
        )

    def _differences(self, head: str, rgb: np.ndarray, base: PerceptionResult, cand) -> np.ndarray:
        bgr = (cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) * 0.4).astype(np.uint8)
        if head == "segmentation":
            b, c = base.seg_at_source(), cand.seg_at_source()
            bgr[b != c] = CHANGED
        elif head == "depth":
            b = np.asarray(base.depth_at_source(), np.float32)
            c = np.asarray(cand.depth_at_source(), np.float32)
            bad = np.abs(c - b) / np.maximum(np.abs(b), 1e-3) > self.bounds.depth_rel_error
            bgr[bad] = CHANGED
        for boxes, others, colour in ((base, cand, MISSING), (cand, base, EXTRA)):
            for d in boxes.detections or ():
                same = [o.box for o in others.detections or () if o.class_id == d.class_id]
                iou = box_iou(np.array([d.box]), np.array(same)).max() if same else 0.0
                if iou < self.bounds.det_iou:
                    x1, y1, x2, y2 = (int(round(v)) for v in d.box)
                    cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
        legend = "differences: magenta changed, red missing, yellow extra"
        cv2.putText(bgr, legend, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        return bgr
