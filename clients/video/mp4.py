"""The annotated MP4, written in committed segments so that `--resume` can continue it.

Frames go to ``segments/<start>.partial.mp4``; a segment is closed (its MP4 index written) and
renamed to ``segments/<start>-<end>.mp4`` every ``segment_frames`` frames and when a run stops
cleanly. A segment open when the client was killed has no index and is deleted on resume; the
frames it held are processed again (the JSONL is cut back to the last committed frame). When the
input is complete the segments are joined into ``annotated.mp4``: renamed when one segment; when
several, their coded samples are copied into one MP4 (clients.video.mp4concat: no frame decoded or
encoded again). Segments that cannot be joined so (another frame size or frame rate, a structure
the join does not handle) are decoded and re-encoded instead, with a log line saying why; a segment
that is not a whole MP4 (truncated, damaged) is an error naming it, never a silently short video.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from clients.video import mp4concat
from clients.video.isobmff import DamagedMp4, Incompatible
from serving.errors import PerceptionError

log = logging.getLogger(__name__)

FOURCC = "mp4v"  # in every OpenCV build; H.264 encoders are not in the pip wheels
_SEGMENT = re.compile(r"^(\d{8})-(\d{8})\.mp4$")


def _fourcc() -> int:
    return cv2.VideoWriter.fourcc(*FOURCC)


class SegmentedVideoWriter:
    def __init__(self, final_path: Path, fps: float, segment_frames: int = 300) -> None:
        self.final_path = Path(final_path)
        self.dir = self.final_path.with_name(self.final_path.stem + ".segments")
        self.fps = fps if fps > 0 else 10.0
        self.segment_frames = max(1, segment_frames)
        self._writer: cv2.VideoWriter | None = None
        self._start = 0
        self._next = 0
        self._size: tuple[int, int] | None = None

    # --- resume ---------------------------------------------------------------------------------
    def committed(self) -> list[tuple[int, int, Path]]:
        if not self.dir.is_dir():
            return []
        found = []
        for p in self.dir.iterdir():
            m = _SEGMENT.match(p.name)
            if m:
                found.append((int(m.group(1)), int(m.group(2)), p))
        return sorted(found)

    def recover(self) -> int:
        """Delete uncommitted segments and any after a gap; returns the end of the committed prefix."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in self.dir.glob("*.partial.mp4"):
            p.unlink()
        end = 0
        for start, stop, path in self.committed():
            if start == end:
                end = stop
            else:
                path.unlink()
        return end

    def start_fresh(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)

    def begin(self, index: int) -> None:
        """The next segment starts at frame ``index`` (the resume point)."""
        self._start = self._next = index

    def truncate_to(self, n: int) -> None:
        for start, stop, path in self.committed():
            if stop > n:
                path.unlink()
                if start < n:
                    raise PerceptionError(f"segment {path.name} straddles frame {n}: cannot cut there")

    # --- writing --------------------------------------------------------------------------------
    def write(self, index: int, bgr: np.ndarray) -> None:
        if index != self._next:
            raise PerceptionError(f"video frames out of order: expected {self._next}, got {index}")
        if self._writer is None:
            self._open((bgr.shape[1], bgr.shape[0]))
        assert self._writer is not None and self._size is not None
        if (bgr.shape[1], bgr.shape[0]) != self._size:
            bgr = cv2.resize(bgr, self._size)
        self._writer.write(bgr)
        self._next = index + 1
        if self._next - self._start >= self.segment_frames:
            self.commit()

    def skip(self, index: int) -> None:
        """A frame with no picture (undecodable): the video simply has no frame for it."""
        if index != self._next:
            raise PerceptionError(f"video frames out of order: expected {self._next}, got {index}")
        self._next = index + 1

    def _open(self, size: tuple[int, int]) -> None:
        self._size = self._size or size
        path = self.dir / f"{self._start:08d}.partial.mp4"
        self._writer = cv2.VideoWriter(str(path), _fourcc(), self.fps, self._size)
        if not self._writer.isOpened():
            raise PerceptionError(f"OpenCV cannot write {path} with codec {FOURCC}")

    def commit(self) -> None:
        """Close the open segment and give it its committed name (start-end, end exclusive)."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        src = self.dir / f"{self._start:08d}.partial.mp4"
        os.replace(src, self.dir / f"{self._start:08d}-{self._next:08d}.mp4")
        self._start = self._next

    def finish(self) -> Path | None:
        """Join the committed segments into the final MP4 (temporary name, then rename)."""
        self.commit()
        segments = self.committed()
        if not segments:
            shutil.rmtree(self.dir, ignore_errors=True)
            return None
        tmp = self.final_path.with_name(self.final_path.stem + ".tmp.mp4")
        if len(segments) == 1:
            os.replace(segments[0][2], tmp)
        else:
            self._join([p for _, _, p in segments], tmp)
        os.replace(tmp, self.final_path)
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.final_path

    def _join(self, parts: list[Path], out: Path) -> None:
        try:
            mp4concat.join(parts, out)
        except DamagedMp4 as exc:
            out.unlink(missing_ok=True)
            raise PerceptionError(f"cannot join the video's segments in {self.dir}: {exc}") from exc
        except Incompatible as exc:
            out.unlink(missing_ok=True)
            log.warning("%s: decoding and re-encoding its %d segments: %s", self.final_path, len(parts), exc)
            self._concatenate(parts, out, exc.samples)

    def _concatenate(self, parts: list[Path], out: Path, samples: list[int | None]) -> None:
        """The slow join: every frame decoded and encoded again. ``samples``: each part's frame
        count where known; a part OpenCV reads short (or empty: a committed one has a frame) is
        an error."""
        writer = None
        for i, part in enumerate(parts):
            cap = cv2.VideoCapture(str(part))
            frames = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(str(out), _fourcc(), self.fps, size)
                elif (frame.shape[1], frame.shape[0]) != size:  # the writer drops such frames
                    frame = cv2.resize(frame, size)
                writer.write(frame)
                frames += 1
            cap.release()
            expected = samples[i] if i < len(samples) else None
            if frames != expected and (expected is not None or frames == 0):
                if writer is not None:
                    writer.release()
                out.unlink(missing_ok=True)
                raise PerceptionError(f"{part}: OpenCV decoded {frames} of its {expected or 'some'} frames")
        if writer is not None:
            writer.release()

    def close(self) -> None:
        """Stop cleanly (not complete): commit what was written so a resume keeps it."""
        self.commit()
