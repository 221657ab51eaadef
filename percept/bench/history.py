"""Earlier runs' ratios on this machine: one JSON line per run, and the spread of each ratio."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
from pathlib import Path

from percept.bench.figures import Figure


def append_history(path: Path, figures: list[Figure], load_avg_1m: float | None) -> None:
    """One line per run: the date, the load and every ratio, for the spread column of later runs."""
    entry = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1m": load_avg_1m,
        "ratios": {f.key: (f.ratio if f.ratio == f.ratio else None) for f in figures},
    }
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")


def read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn line of an interrupted run
            out.append(json.loads(line))
    return out


def spread(history: list[dict], key: str) -> str:
    """``min-max (runs)`` of figure ``key`` over the earlier runs that measured it, else "-"."""
    values = [r["ratios"][key] for r in history if r.get("ratios", {}).get(key) is not None]
    if not values:
        return "-"
    return f"{min(values):.2f}-{max(values):.2f} ({len(values)})"
