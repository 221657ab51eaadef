"""Units of the Ray engine: inputs cut into frame ranges, each run and committed on its own, then
joined in frame order into the input's usual outputs (annotated.mp4, results.jsonl, summary.json).

A unit runs as an InputRun over its frame range (clients.video.run: the same decoder, in-flight
window, writer, journal and renderer as the local engine, so its JSONL lines are the local run's
bytes) into ``<input>/units/.<start>.attempt<k>/``; complete, that folder is renamed to
``<input>/units/<start>/``: the rename is the commit (a folder that exists is committed, whatever
run.json says). A unit that stops half-way is deleted and runs again from its first frame.

Joining: the units' JSONL files are concatenated (checked: frames 0..n-1, none missing or twice)
and their MP4s become the segments of the input's SegmentedVideoWriter, whose ``finish`` joins them
as it joins a local run's segments (one: renamed; several: their coded samples copied into one
MP4 with one index, clients.video.mp4concat, no frame decoded or encoded again; re-encoded through
OpenCV only when the units' MP4s differ, e.g. in frame size). Joining links, never moves, the
units' files, and the units folder goes only after summary.json says complete, so a driver killed
while joining joins again.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from clients.video import maps
from clients.video.mp4 import SegmentedVideoWriter
from clients.video.options import DENSE, FRAMES, RESULTS, SUMMARY, VIDEO, VideoOptions
from clients.video.report import InputResult, write_json
from clients.video.run import InputRun
from clients.video.sources import InputSource
from serving.errors import PerceptionError

UNITS = "units"
ONE_SEGMENT = 1 << 30  # a unit's MP4 is one segment: it is committed whole or not at all


@dataclass(frozen=True)
class Unit:
    input: str  # the source's name (its output folder)
    start: int
    stop: int | None  # exclusive; None: to the end of the input (or --max-frames)

    @property
    def id(self) -> str:
        return f"{self.input}:{self.start}-{'end' if self.stop is None else self.stop}"

    def folder(self, out_dir: Path) -> Path:
        return out_dir / self.input / UNITS / f"{self.start:08d}"

    def attempt_folder(self, out_dir: Path, attempt: int) -> Path:
        return out_dir / self.input / UNITS / f".{self.start:08d}.attempt{attempt}"


def plan(name: str, frame_count: int, shard_frames: int | None, max_frames: int | None) -> list[Unit]:
    """An input's units: ranges of ``shard_frames`` frames, the last one open-ended (the reader, not
    the container's frame count, decides where the input ends); one unit when not cut."""
    total = frame_count
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    if not shard_frames or total <= shard_frames:
        return [Unit(name, 0, None)]
    starts = list(range(0, total, shard_frames))
    return [Unit(name, s, e) for s, e in zip(starts, starts[1:], strict=False)] + [
        Unit(name, starts[-1], None)
    ]


def unit_options(options: VideoOptions) -> VideoOptions:
    return replace(options, resume=False, segment_frames=ONE_SEGMENT, progress=False, parallel_inputs=1)


def committed(unit: Unit, out_dir: Path) -> dict | None:
    """The committed unit's summary (frames, errors, model), or None when it is not committed."""
    path = unit.folder(out_dir) / SUMMARY
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


async def run_unit(
    source: InputSource, unit: Unit, attempt: int, options: VideoOptions, backend, bars
) -> InputResult:
    """Run one unit into its attempt folder and commit it when complete (see the module doc)."""
    tmp = unit.attempt_folder(options.out_dir, attempt)
    shutil.rmtree(tmp, ignore_errors=True)
    span = (unit.start, unit.stop)
    run = InputRun(source, unit_options(options), backend, bars, 0, out=tmp, frames=span, unit=True)
    result = await run.run()
    if result.status != "complete":
        shutil.rmtree(tmp, ignore_errors=True)
        return result
    final = unit.folder(options.out_dir)
    try:
        os.replace(tmp, final)
    except OSError:
        if committed(unit, options.out_dir) is None:
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another attempt committed it first: keep that one
    return result


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # a file system without hard links
        shutil.copy2(src, dst)


def join(source: InputSource, units: list[Unit], options: VideoOptions, fps: float) -> InputResult:
    """Join the committed units of an input into its outputs; returns its frames and error frames
    (the first error too) as an InputResult to complete (status ``complete``)."""
    out = options.out_dir / source.name
    result = InputResult(source, "complete")
    expected, chunks = 0, []
    for unit in units:
        data = (unit.folder(options.out_dir) / RESULTS).read_bytes()
        frames = [json.loads(line) for line in data.splitlines() if line.strip()]
        indices = [r["frame"] for r in frames]
        if unit.start != expected or indices != list(range(unit.start, unit.start + len(indices))):
            raise PerceptionError(
                f"{source.name}: unit {unit.id} holds frames {indices[:1]}..{indices[-1:]}, "
                f"expected from {expected}: frames would be missing or repeated"
            )
        if unit.stop is not None and len(indices) != unit.stop - unit.start:
            raise PerceptionError(f"{source.name}: unit {unit.id} ended early, at frame {expected}")
        expected = unit.start + len(indices)
        for record in frames:
            if "error" in record:
                result.note_error(record["frame"], record["error"])
        chunks.append(data)
    tmp = out / (RESULTS + ".tmp")
    tmp.write_bytes(b"".join(chunks))
    os.replace(tmp, out / RESULTS)
    if options.write_video:
        video = SegmentedVideoWriter(out / VIDEO, fps)
        video.start_fresh()
        end = 0
        for unit in units:
            mp4 = unit.folder(options.out_dir) / VIDEO
            end = unit.stop if unit.stop is not None else expected
            if mp4.exists():  # a unit with no decodable frame has no video
                _link(mp4, video.dir / f"{unit.start:08d}-{end:08d}.mp4")
        video.finish()
    saved = ((DENSE, options.save_dense), (FRAMES, options.save_frames), (maps.MAPS, options.save_maps))
    for folder, wanted in saved:
        if wanted:
            (out / folder).mkdir(exist_ok=True)
            for unit in units:
                for file in sorted((unit.folder(options.out_dir) / folder).iterdir()):
                    _link(file, out / folder / file.name)
    result.frames = expected
    return result


def write_summary(result: InputResult, options: VideoOptions, model: str, units: int) -> None:
    """The input's summary.json: the local engine's keys, plus the engine and the number of units."""
    out = options.out_dir / result.source.name
    data = result.summary(options.backend, model)
    data["engine"], data["units"] = "ray", units
    data["outputs"] = {
        "results": str(out / RESULTS),
        "video": str(out / VIDEO) if options.write_video else None,
        "dense": str(out / DENSE) if options.save_dense else None,
        "frames": str(out / FRAMES) if options.save_frames else None,
        "maps": str(out / maps.MAPS) if options.save_maps else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / SUMMARY, data)


def clear_outputs(out: Path) -> None:
    """A fresh start of an input (no run.json to continue): the local engine's fresh-run clean-up."""
    for name in (RESULTS, VIDEO, SUMMARY, RESULTS + ".partial"):
        (out / name).unlink(missing_ok=True)
    for folder in (DENSE, FRAMES, maps.MAPS, UNITS, Path(VIDEO).stem + ".segments"):
        shutil.rmtree(out / folder, ignore_errors=True)


def remove_units(out: Path) -> None:
    shutil.rmtree(out / UNITS, ignore_errors=True)
