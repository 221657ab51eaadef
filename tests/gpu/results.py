"""The GPU kit's results file: one JSON document the kit's checks add their numbers to."""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS_ENV = "PERCEPT_GPU_RESULTS"
DEFAULT_RESULTS = Path("gpu-kit-results.json")


def results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS)


def frames_per_second(batch: int, iterations: int, seconds: float) -> float:
    return batch * iterations / seconds if seconds > 0 else float("inf")


def add_result(section: str, record: dict, path: Path | None = None) -> Path:
    """Append ``record`` under ``section`` of the results file (written whole, atomically)."""
    path = Path(path or results_path())
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc.setdefault(section, []).append(record)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
