"""`percept video`: run every frame of every input through the model, exactly once, in order.

Per input, a decoder thread feeds frames into a bounded queue; the event loop keeps at most
``window`` requests in flight and hands finished frames, in frame order, to a writer thread that
appends the JSONL record, the optional dense arrays and the annotated video frame. Several inputs
run at once (``parallel_inputs``). See clients.video.journal and clients.video.mp4 for how a run
killed at any moment is resumed without a frame missing or repeated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import shutil
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clients.errors import ModelNotFoundError
from clients.results import PerceptionResult
from clients.stagecpu import StageCpu
from clients.video import maps
from clients.video.journal import Journal
from clients.video.mp4 import SegmentedVideoWriter
from clients.video.options import (
    DENSE,
    FRAMES,
    RESULTS,
    RESUMABLE_ERRORS,
    RESUME_HINT,
    STOP_ERRORS,
    SUMMARY,
    VIDEO,
    ModelWentAwayError,
    VideoOptions,
)
from clients.video.progress import Bars
from clients.video.render import annotate, frame_file, write_png
from clients.video.report import InputResult, is_complete, write_json
from clients.video.sources import FrameItem, InputError, InputSource, open_reader
from serving.errors import PerceptionError, SpecError
from serving.lidar import project_to_depth_image
from serving.spec import ModelSpec

log = logging.getLogger(__name__)

_END = object()


class InputRun:
    """One input's run: the resume bookkeeping, the decoder thread, the in-flight window, the writer.

    ``frames`` = (first, stop) runs only that frame range (stop None: to the end) into ``out``: a
    unit of the Ray engine (clients.video.units), never resumed, its outputs the same files; its
    status is not settled by its frames' errors (``unit``): the joined input's is.
    """

    def __init__(
        self,
        source: InputSource,
        options: VideoOptions,
        backend,
        bars: Bars,
        slot: int,
        out: Path | None = None,
        frames: tuple[int, int | None] = (0, None),
        unit: bool = False,
    ) -> None:
        self.source = source
        self.options = options
        self.backend = backend
        self.bars = bars
        self.slot = slot
        self.out = out or options.out_dir / source.name
        self.first, self.stop = frames
        self.unit = unit
        self.result = InputResult(source, "failed")
        self.spec: ModelSpec | None = None  # the model's, read by prepare: its heads decide the panels
        self.cpu = StageCpu()  # the client's CPU per stage over the frames (summary.json)
        self._stop = threading.Event()
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"write-{source.name}")
        self._getter_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"get-{source.name}")

    # --- set-up ---------------------------------------------------------------------------------
    def _open_outputs(self, fps: float) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.out / RESULTS, self.first)
        self.video = SegmentedVideoWriter(self.out / VIDEO, fps, self.options.segment_frames)
        if self.options.resume:
            start = self.journal.recover()
            if self.options.write_video:
                start = min(start, self.video.recover())
                self.video.truncate_to(start)
            self.journal.truncate_to(start)
        else:
            for name in (RESULTS, VIDEO, SUMMARY):
                (self.out / name).unlink(missing_ok=True)
            for folder in (DENSE, FRAMES, maps.MAPS):
                shutil.rmtree(self.out / folder, ignore_errors=True)
            self.journal.start_fresh()
            if self.options.write_video:
                self.video.start_fresh()
            start = self.first
        self.video.begin(start)
        for folder, wanted in ((DENSE, self.options.save_dense), (FRAMES, self.options.save_frames)):
            if wanted:
                (self.out / folder).mkdir(exist_ok=True)
        self.result.resumed_from = start - self.first
        for record in self._kept_records():
            if "error" in record:
                self.result.note_error(record["frame"], record["error"])
        return start

    def _kept_records(self) -> list[dict]:
        if not self.result.resumed_from:
            return []
        with open(self.journal.partial_path, "rb") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    # --- decoder thread -------------------------------------------------------------------------
    def _decode(self, reader, start: int, q: queue.Queue) -> None:
        def put(item) -> bool:
            while not self._stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        frames = reader.frames(start, seek=self.first > 0)
        try:
            while True:
                with self.cpu.stage("decode"):
                    item = next(frames, None)
                if item is None:
                    break
                if self.options.max_frames is not None and item.index >= self.options.max_frames:
                    break
                if self.stop is not None and item.index >= self.stop:
                    break
                if not put(item):
                    return
            put(_END)
        except Exception as exc:  # a reader failing mid-stream: the input fails, the run goes on
            put(InputError(f"{self.source.path}: reading failed after some frames: {exc}"))

    # --- writer thread --------------------------------------------------------------------------
    def _write(self, item: FrameItem, result: PerceptionResult | None, error: str | None) -> None:
        with self.cpu.stage("jsonl"):
            record: dict = {"frame": item.index, "timestamp": round(float(item.timestamp), 6)}
            if error is not None or result is None:
                record["error"] = error or "no result"
            else:
                record.update(result.to_dict())
        if self.options.save_dense and result is not None and error is None:
            with self.cpu.stage("dense"):
                path = self.out / DENSE / f"{item.index:06d}.npz"
                tmp = path.with_name(path.stem + ".tmp.npz")
                arrays = {k: v for k, v in (("seg", result.seg), ("depth", result.depth)) if v is not None}
                np.savez_compressed(tmp, **arrays)
                os.replace(tmp, path)
        if self.options.save_maps and result is not None and error is None and self.spec is not None:
            maps.write_maps(self.out / maps.MAPS, item.index, result, self.spec)  # CPU: "other"
        if item.image is None:
            if self.options.write_video:
                self.video.skip(item.index)
        elif self.options.write_video or self.options.save_frames:
            self._write_frame(item, result, record.get("error"))
        with self.cpu.stage("jsonl"):
            self.journal.append(record)
        self.result.frames = len(self.journal)
        if "error" in record:
            self.result.note_error(item.index, record["error"])
        self.bars.advance(self.slot)

    def _write_frame(self, item: FrameItem, result: PerceptionResult | None, error: str | None) -> None:
        with self.cpu.stage("annotate"):
            header = f"{self.source.name} #{item.index} t={item.timestamp:.2f}s"
            if result is not None and result.detections is not None:
                header += f" {len(result.detections)} objects"
            depth_head = self.spec is None or "depth" in self.spec.tasks
            lidar = None
            if item.points is not None and item.projection is not None and result is not None and depth_head:
                lidar = project_to_depth_image(item.points, item.projection, result.source_hw)[0]
            assert item.image is not None
            classes = self.spec.det_classes if self.spec is not None else ()
            frame = annotate(item.image, result, header, error, lidar, depth_head, classes)
        with self.cpu.stage("encode"):
            if self.options.write_video:
                self.video.write(item.index, frame)
            if self.options.save_frames:
                write_png(self.out / FRAMES / frame_file(item.index, item.name), frame)

    # --- the run --------------------------------------------------------------------------------
    async def _infer(self, item: FrameItem) -> tuple[PerceptionResult | None, str | None, float]:
        t0 = time.perf_counter()
        try:
            result = await self.backend.infer(item, self.source.fusion, self.cpu)
        except ModelNotFoundError as exc:
            # the model was there when the input started (prepare read its config): NOT_FOUND now
            # means the server is unloading it, as Triton does while it shuts down
            raise ModelWentAwayError(f"{exc} (the model served this run until now)") from exc
        except STOP_ERRORS:
            raise
        except PerceptionError as exc:  # this frame is bad (rejected by the server or the client)
            return None, str(exc), time.perf_counter() - t0
        return result, None, time.perf_counter() - t0

    async def run(self) -> InputResult:
        t_start = time.perf_counter()
        try:
            if self.options.resume and is_complete(self.out):
                self.result.already_complete(json.loads((self.out / SUMMARY).read_text()))
                return self.result
            try:
                reader = open_reader(self.source, self.options.image_fps)
                self.spec = await self.backend.prepare(self.source.fusion)
            except (InputError, SpecError) as exc:
                self.result.message = str(exc)
                log.error("%s", exc)
                self.out.mkdir(parents=True, exist_ok=True)
                write_json(self.out / SUMMARY, self._summary())
                return self.result
            start = self._open_outputs(reader.fps)
            total = reader.frame_count
            if self.options.max_frames is not None:
                total = min(total, self.options.max_frames) if total else self.options.max_frames
            self.bars.open(self.slot, self.source.name, total, start)
            self.cpu.begin()
            await self._pump(reader, start)
        except STOP_ERRORS as exc:
            if isinstance(exc, RESUMABLE_ERRORS):
                self.result.status = "interrupted"
                self.result.message = f"{exc}; {RESUME_HINT}"
            else:
                self.result.status = "failed"
                self.result.message = str(exc)
            log.error("%s: %s", self.source.name, self.result.message)
        except (PerceptionError, OSError) as exc:  # OSError: an output that cannot be written
            self.result.status = "failed"
            self.result.message = str(exc)
            log.error("%s: %s", self.source.name, exc)
        finally:
            self._stop.set()
            self._getter_pool.shutdown(wait=True)
            self._writer_pool.shutdown(wait=True)
            self.cpu.end()
            self.result.cpu_ms_per_frame = self.cpu.per_frame_ms(self.result.processed)
            self.result.seconds = time.perf_counter() - t_start
            self.bars.close(self.slot)
        self._finish()
        return self.result

    async def _pump(self, reader, start: int) -> None:
        loop = asyncio.get_running_loop()
        q: queue.Queue = queue.Queue(maxsize=2 * self.options.window)
        decoder = threading.Thread(
            target=self._decode, args=(reader, start, q), name=f"decode-{self.source.name}", daemon=True
        )
        decoder.start()
        pending: deque[tuple[FrameItem, asyncio.Task | None]] = deque()
        writes: deque[Future] = deque()

        def get_item():
            while True:
                try:
                    return q.get(timeout=0.2)
                except queue.Empty:
                    if not decoder.is_alive() and q.empty():
                        return _END

        async def flush_head() -> None:
            item, task = pending[0]
            if task is None:
                result, error = None, item.error
            else:
                result, error, seconds = await task
                if error is None:
                    self.result.latencies_ms.append(seconds * 1000.0)
            pending.popleft()
            self.result.processed += 1
            writes.append(self._writer_pool.submit(self._write, item, result, error))
            while writes and (writes[0].done() or len(writes) > self.options.window):
                await asyncio.wrap_future(writes.popleft())

        try:
            while True:
                item = await loop.run_in_executor(self._getter_pool, get_item)
                if item is _END:
                    break
                if isinstance(item, Exception):
                    raise item
                task = None if item.image is None else asyncio.ensure_future(self._infer(item))
                pending.append((item, task))
                while pending and (
                    len(pending) >= self.options.window or pending[0][1] is None or pending[0][1].done()
                ):
                    await flush_head()
            while pending:
                await flush_head()
            while writes:
                await asyncio.wrap_future(writes.popleft())
            self.result.status = "complete"
        finally:
            self._stop.set()
            for _, task in pending:
                if task is not None:
                    task.cancel()
            for fut in writes:  # frames already handed to the writer are written, in order
                await asyncio.wrap_future(fut)
            decoder.join(timeout=5)

    def _finish(self) -> None:
        if not hasattr(self, "journal"):
            return
        if self.result.status == "complete":
            self.journal.finish()
            if not self.unit:
                self.result.settle()  # every frame failed: failed, its outputs kept for the record
            if self.options.write_video:
                try:
                    self.video.finish()
                except PerceptionError as exc:  # a damaged segment: the video would be short
                    self.result.status, self.result.message = "failed", str(exc)
                    log.error("%s: %s", self.source.name, exc)
            else:
                shutil.rmtree(self.video.dir, ignore_errors=True)
        else:
            self.journal.close()
            if self.options.write_video:
                self.video.close()
        write_json(self.out / SUMMARY, self._summary())

    def _summary(self) -> dict:
        data = self.result.summary(self.options.backend, self.backend.model_name(self.source.fusion))
        data["outputs"] = {
            "results": str(self.out / RESULTS),
            "video": str(self.out / VIDEO) if self.options.write_video else None,
            "dense": str(self.out / DENSE) if self.options.save_dense else None,
            "frames": str(self.out / FRAMES) if self.options.save_frames else None,
            "maps": str(self.out / maps.MAPS) if self.options.save_maps else None,
        }
        return data
