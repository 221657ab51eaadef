"""run.json of the Ray engine: the run's inputs and units, where each unit stands (pending,
running, committed, failed), its attempts, errors and last worker, and what is left.

Rewritten atomically (temp file, rename) at every change, so that a person or a rerun of the same
command can read it at any moment. It is a record, not the truth: a unit is committed when its
folder exists (clients.video.units), so a driver killed between a commit and the next write loses
nothing. A rerun with another command (model, backend, inputs, cut) into the same --out is refused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from clients.video.options import VideoOptions
from clients.video.report import write_json
from clients.video.sources import InputSource
from clients.video.units import Unit
from serving.errors import SpecError

MANIFEST = "run.json"
PENDING, RUNNING, COMMITTED, FAILED = "pending", "running", "committed", "failed"


def command_key(sources: list[InputSource], options: VideoOptions) -> dict:
    """What must be the same for a rerun to continue a run (not the worker count or the address)."""
    c = options.client
    return {
        "inputs": [str(s.path) for s in sources],
        "backend": options.backend,
        "model": c.model if options.backend == "triton" else str(options.onnx),
        "fusion_model": options.fusion_model if options.backend == "triton" else str(options.fusion_onnx),
        "raw": c.raw,
        "shard_frames": options.ray.shard_frames,
        "max_frames": options.max_frames,
        "write_video": options.write_video,
        "save_dense": options.save_dense,
        "save_frames": options.save_frames,
        "image_fps": options.image_fps,
        "save_maps": options.save_maps,
    }


class Manifest:
    def __init__(self, path: Path, command: dict, ray: dict, t0: float | None = None) -> None:
        self.path = path
        self.data: dict = {"engine": "ray", "command": command, "ray": ray, "state": "running"}
        self.data.update(inputs={}, units={}, left=[], timing={})
        self.previous: dict = {}  # the units of the run this one continues
        self._t0 = time.perf_counter() if t0 is None else t0  # the run's start (before Ray's)

    @classmethod
    def open(cls, path: Path, command: dict, ray: dict, t0: float | None = None) -> Manifest:
        """A new manifest; continuing ``path`` when it is a Ray run of the same command."""
        manifest = cls(path, command, ray, t0)
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            return manifest
        if old.get("engine") != "ray":
            return manifest  # a local engine's run.json: its outputs are started afresh
        if old.get("command") != command:
            diff = sorted(k for k in command if old.get("command", {}).get(k) != command[k])
            raise SpecError(
                f"{path} is a run of another command (differs in {', '.join(diff)}): "
                "use another --out, or delete it to start over"
            )
        manifest.previous = old
        return manifest

    @property
    def continues(self) -> bool:
        return bool(self.previous)

    def input_done_before(self, name: str) -> bool:
        return self.previous.get("inputs", {}).get(name, {}).get("status") == "complete"

    def add_input(self, source: InputSource, units: list[Unit], status: str, message: str = "") -> None:
        self.data["inputs"][source.name] = {
            "path": str(source.path),
            "kind": source.kind,
            "status": status,
            "message": message,
            "units": [u.id for u in units],
        }
        for unit in units:
            old = self.previous.get("units", {}).get(unit.id, {})
            self.data["units"][unit.id] = {
                "input": unit.input,
                "start": unit.start,
                "stop": unit.stop,
                "state": PENDING,
                "attempts": old.get("attempts", 0),
                "attempts_this_run": 0,
                "errors": old.get("errors", []),
                "frames": None,
                "worker": None,
            }

    def unit(self, unit: Unit) -> dict:
        return self.data["units"][unit.id]

    def set_input(self, name: str, status: str, message: str = "") -> None:
        self.data["inputs"][name].update(status=status, message=message)
        self.write()

    def start(self, unit: Unit, worker: dict) -> int:
        """A unit handed to a worker; returns the attempt's number (1-based, over all runs)."""
        entry = self.unit(unit)
        entry["attempts"] += 1
        entry["attempts_this_run"] += 1
        entry.update(state=RUNNING, worker=worker)
        self.write()
        return entry["attempts"]

    def commit(self, unit: Unit, frames: int) -> None:
        self.unit(unit).update(state=COMMITTED, frames=frames)
        self.write()

    def fail(self, unit: Unit, error: str, final: bool) -> None:
        """An attempt that failed: the unit is pending again, or failed when ``final``."""
        entry = self.unit(unit)
        entry["errors"].append(f"attempt {entry['attempts']}: {error}")
        entry["state"] = FAILED if final else PENDING
        self.write()

    def timing(self, key: str) -> None:
        """Seconds from the start of the run to ``key`` (ray_connected, workers_ready, ...)."""
        self.data["timing"][key] = round(time.perf_counter() - self._t0, 3)

    def left(self) -> list[str]:
        return [uid for uid, u in self.data["units"].items() if u["state"] != COMMITTED]

    def write(self, **extra) -> None:
        self.data.update(extra)
        self.data["left"] = self.left()
        write_json(self.path, self.data)
