"""What a `percept video` run reports: per input (its summary.json) and for the whole run (run.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients.video.options import EXIT_FAILED, EXIT_FRAME_ERRORS, EXIT_INTERRUPTED, EXIT_OK, RESULTS, SUMMARY
from clients.video.sources import InputSource


@dataclass
class InputResult:
    source: InputSource
    status: str  # complete | failed | interrupted
    frames: int = 0  # records in the JSONL (this run and before)
    errors: int = 0  # frames recorded as errors
    processed: int = 0  # frames processed in this run
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    message: str = ""
    resumed_from: int = 0
    cpu_ms_per_frame: dict[str, float] | None = None  # clients.stagecpu: this run's frames, by stage
    first_error: tuple[int, str] | None = None  # (frame, error) of the first frame recorded as failed

    def note_error(self, frame: int, error: str) -> None:
        """Count a frame recorded as failed (this run's or a kept one), keeping the first."""
        self.errors += 1
        if self.first_error is None or frame < self.first_error[0]:
            self.first_error = (frame, error)

    def already_complete(self, summary: dict) -> None:
        """An input that an earlier run completed (``summary``: its summary.json)."""
        self.status = "complete"
        self.frames, self.errors = summary.get("frames", 0), summary.get("errors", 0)
        first = summary.get("first_error")
        self.first_error = (first["frame"], first["error"]) if first else None
        self.message = "already complete" + (f"; {summary['message']}" if summary.get("message") else "")

    def settle(self) -> None:
        """The status of an input whose frames were all processed: ``failed`` when every frame
        failed (nothing came out of the model: a misuse, a model that cannot take these frames),
        else ``complete``, with the count and the first error in the message when some failed."""
        if self.status != "complete" or not self.errors:
            return
        frame, error = self.first_error or (0, "?")
        first = f"the first, frame {frame}: {error}"
        if self.errors >= self.frames:
            self.status = "failed"
            self.message = f"every frame failed ({self.frames}); {first}"
        else:
            self.message = f"{self.errors} of {self.frames} frames failed (results.jsonl has each); {first}"

    @property
    def fps(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    def summary(self, backend: str, model: str) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=np.float64)
        return {
            "input": str(self.source.path),
            "kind": self.source.kind,
            "backend": backend,
            "model": model,
            "status": self.status,
            "message": self.message,
            "frames": self.frames,
            "errors": self.errors,
            "processed_this_run": self.processed,
            "resumed_from": self.resumed_from,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 3),
            "latency_ms": {
                "p50": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
                "p99": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
                "mean": round(float(lat.mean()), 3) if lat.size else None,
            },
            "cpu_ms_per_frame": self.cpu_ms_per_frame,
            "first_error": (
                {"frame": self.first_error[0], "error": self.first_error[1]} if self.first_error else None
            ),
        }


@dataclass
class RunReport:
    results: list[InputResult]
    out_dir: Path
    seconds: float

    @property
    def exit_code(self) -> int:
        if any(r.status == "interrupted" for r in self.results):
            return EXIT_INTERRUPTED
        if any(r.status != "complete" for r in self.results):
            return EXIT_FAILED
        if any(r.errors for r in self.results):
            return EXIT_FRAME_ERRORS
        return EXIT_OK

    @property
    def frames_processed(self) -> int:
        return sum(r.processed for r in self.results)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.seconds if self.seconds > 0 else 0.0


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def is_complete(out: Path) -> bool:
    if not (out / RESULTS).exists() or not (out / SUMMARY).exists():
        return False
    try:
        return json.loads((out / SUMMARY).read_text()).get("status") == "complete"
    except ValueError:
        return False
