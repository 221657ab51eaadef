"""What a `percept video` run reports: per input (its summary.json) and for the whole run (run.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clients.video.options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, RESULTS, SUMMARY
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
        if any(r.status != "complete" or r.errors for r in self.results):
            return EXIT_FAILED
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
