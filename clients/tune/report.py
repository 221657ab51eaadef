"""What `percept tune` writes: a table of every candidate (CSV, JSON, console) with each figure's
95 % interval over the repeats, a Pareto plot of throughput vs p99 (error bars: those intervals)
with the accuracy delta of each precision, and, only when a change beats the defaults beyond the
noise (decision.py), that configuration as a ready repository plus the `percept repo build` flags
that reproduce it."""

from __future__ import annotations

import csv
import json
import logging
import math
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path

from clients.tune.measure import CandidateResult, Point, candidate_options
from clients.tune.search import TuneResult
from clients.tune.space import KNOBS
from clients.tune.stats import Interval

log = logging.getLogger(__name__)

POINT_COLUMNS = ("concurrency", "throughput", "p50_ms", "p99_ms", "errors", "avg_batch", "stable")
INTERVAL_COLUMNS = ("throughput_ci", "p99_ci", "repeats")  # 95 % t half-widths over the repeats
COLUMNS = (
    "candidate",
    *KNOBS,
    *POINT_COLUMNS,
    *INTERVAL_COLUMNS,
    "feasible",
    "pareto",
    "chosen",  # the candidate's own best point (the one it is ranked by)
    "best",  # the configuration to serve: the recommended change, else the defaults
    "defaults",
    "seconds",
    "error",
)
DELTA_NAMES = {"map50": "mAP50", "map": "mAP", "miou": "mIoU", "abs_rel": "AbsRel"}


def pareto(points: list[tuple[float, float]]) -> list[bool]:
    """Which (throughput, p99) points no other point beats on both (higher throughput, lower p99)."""
    out = []
    for i, (x, y) in enumerate(points):
        beaten = any(
            (x2 >= x and y2 <= y and (x2 > x or y2 < y)) for j, (x2, y2) in enumerate(points) if j != i
        )
        out.append(not beaten and x == x and y == y)
    return out


def rows(result: TuneResult) -> list[dict]:
    """One row per measured point of every candidate (a candidate measured at no point: one row)."""
    constraint = result.options.constraint
    best = result.best()
    pairs: list[tuple[CandidateResult, Point | None]] = []
    for r in result.results:
        pairs += [(r, p) for p in r.points] or [(r, None)]
    front = pareto([(p.throughput, p.p99_ms) if p else (math.nan, math.nan) for _, p in pairs])
    out = []
    for (r, p), on_front in zip(pairs, front, strict=True):
        row: dict = {"candidate": r.candidate.label, **asdict(r.candidate)}
        row.update({k: getattr(p, k) if p else "" for k in POINT_COLUMNS})
        thr, p99 = (p.interval("throughput"), p.interval("p99_ms")) if p else (None, None)
        row.update(
            throughput_ci=thr.half if thr else "",
            p99_ci=p99.half if p99 else "",
            repeats=thr.n if thr else "",
        )
        chosen = p is not None and p == r.best_point(constraint)
        row.update(
            feasible=bool(p and p.feasible(constraint)),
            pareto=on_front,
            chosen=chosen,
            best=chosen and r is best,
            defaults=r.candidate == result.defaults,
            seconds=round(r.seconds, 1),
            error=r.error,
        )
        for key in ("throughput", "p50_ms", "p99_ms", "avg_batch", "throughput_ci", "p99_ci"):
            if isinstance(row[key], float):
                row[key] = round(row[key], 3)
        out.append(row)
    return out


def delta_text(deltas: dict[str, float]) -> str:
    """``d mAP50 +0.0012, d mAP +0.0029, ...`` in the order of DELTA_NAMES."""
    order = [k for k in DELTA_NAMES if k in deltas] + [k for k in deltas if k not in DELTA_NAMES]
    return ", ".join(f"d {DELTA_NAMES.get(k, k)} {deltas[k]:+.4f}" for k in order)


def summary(result: TuneResult) -> dict:
    constraint = result.options.constraint
    best = result.best()
    doc: dict = {
        "onnx": str(result.options.onnx),
        "model": result.model,
        "mode": result.mode,
        "constraint": asdict(constraint) | {"describe": constraint.describe()},
        "budget_s": result.options.budget_s,
        "seconds": round(result.seconds, 1),
        "concurrency": list(result.options.concurrency),
        "candidates_measured": len(result.results),
        "candidates_skipped": [c.label for c in result.skipped],
        "grid_size": result.options.space.size,
        "precisions": {p: str(path) for p, path in result.variants.items()},
        "accuracy_delta_vs_pytorch": result.accuracy,
        "defaults": _choice(result.baseline, constraint),
        "best": _choice(best, constraint) if best else None,
        "recommendation": recommendation(result),
        "rows": rows(result),
    }
    if best is not None and best is not result.baseline:
        doc["best"]["config_pbtxt"] = best.candidate.config_values()
        doc["best"]["repo_build_flags"] = best.candidate.repo_build_flags()
    return doc


def recommendation(result: TuneResult) -> dict:
    """The decision, how it was taken, and what the repeats cost."""
    decision = result.decision()
    return {
        "change": not decision.keep_defaults,
        "candidate": decision.recommended.candidate.label if decision.recommended else None,
        "reason": decision.reason,
        "rule": f"objective better by a one-sided Welch t-test at alpha_each ({result.options.alpha:g} / "
        f"candidates compared), the other figure not worse at {result.options.alpha:g}; ties to fewer cores",
        "alpha_each": decision.alpha,
        "repeats": result.options.repeats,
        "defaults_measured": result.defaults_measured,
        "repeat_seconds": round(result.repeat_seconds, 1),
        "comparisons": [
            {
                "candidate": c.result.candidate.label,
                "throughput_diff": c.throughput.diff,
                "throughput_diff_se": c.throughput.se,
                "p99_diff_ms": c.p99.diff,
                "p99_diff_se": c.p99.se,
                "better": c.better,
                "worse": c.worse,
            }
            for c in decision.comparisons
        ],
    }


def _choice(r: CandidateResult, constraint) -> dict:
    point = r.best_point(constraint)
    return {
        "candidate": r.candidate.label,
        "knobs": asdict(r.candidate),
        "point": asdict(point) if point else None,
        "feasible": r.feasible(constraint),
    }


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_table(result: TuneResult, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = rows(result)
    csv_path = out / "tune.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    json_path = out / "tune.json"
    json_path.write_text(json.dumps(_finite(summary(result)), indent=2) + "\n")
    return {"csv": csv_path, "json": json_path, "png": write_plot(result, out / "pareto.png")}


def write_plot(result: TuneResult, path: Path) -> Path:
    """Throughput (x) vs p99 (y) of every point, coloured by precision, the Pareto front joined,
    the defaults and the best marked, the constraint drawn; each precision's accuracy delta in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = [r for r in rows(result) if r["throughput"] != ""]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for precision in result.variants:
        mine = [r for r in table if r["precision"] == precision]
        if not mine:
            continue
        deltas = result.accuracy.get(precision)
        label = precision + (f" ({delta_text(deltas)} vs PyTorch)" if deltas else " (accuracy not recorded)")
        ax.errorbar(
            [r["throughput"] for r in mine],
            [r["p99_ms"] for r in mine],
            xerr=[_bar(r["throughput_ci"]) for r in mine],
            yerr=[_bar(r["p99_ci"]) for r in mine],
            fmt="o",
            markersize=4,
            elinewidth=0.8,
            capsize=2,
            alpha=0.7,
            label=label,
        )
    front = sorted((r["throughput"], r["p99_ms"]) for r in table if r["pareto"])
    if front:
        ax.plot(*zip(*front, strict=True), color="black", linewidth=1, label="Pareto front")
    for key, marker, label in (("defaults", "s", "defaults"), ("best", "*", "recommended")):
        marked = [r for r in table if r[key] and r["chosen"] and not (key == "best" and r["defaults"])]
        if marked:
            ax.scatter(
                [r["throughput"] for r in marked],
                [r["p99_ms"] for r in marked],
                marker=marker,
                s=160,
                facecolors="none",
                edgecolors="tab:red",
                label=label,
            )
    constraint = result.options.constraint
    if constraint.slo_p99_ms is not None:
        ax.axhline(constraint.slo_p99_ms, color="tab:red", linestyle="--", linewidth=1, label="p99 SLO")
    if constraint.min_throughput is not None:
        ax.axvline(
            constraint.min_throughput, color="tab:red", linestyle=":", linewidth=1, label="min throughput"
        )
    ax.set_xlabel("throughput (requests/s); bars: 95 % intervals over the repeats")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_xlim(left=0)  # a wide interval's bar would reach below zero: neither figure can
    ax.set_ylim(bottom=0)
    decision = result.decision()
    verdict = (
        f"recommended {decision.recommended.candidate.label}" if decision.recommended else "keep the defaults"
    )
    ax.set_title(f"percept tune {result.model}: {len(result.results)} candidates, {result.mode}: {verdict}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _bar(half) -> float:
    return half if isinstance(half, float) and math.isfinite(half) else 0.0


BEST_NAMES = ("best_repository", "best_repo_build.sh")


def clear_best(out: Path) -> list[Path]:
    """Remove an earlier tune's best_repository/ and best_repo_build.sh from ``out`` (this tune
    keeps the defaults: a stale recommendation must not sit beside its report); returns them."""
    removed = []
    for name in BEST_NAMES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def write_best(result: TuneResult, out: Path) -> tuple[Path, str]:
    """The recommended candidate's repository (the whole pipeline, files copied) in
    ``out/best_repository`` and the `percept repo build` command that writes the same; returns
    (repository, command). Only for a recommended change: keeping the defaults writes nothing."""
    from serving.repository import build_repository

    best = result.decision().recommended
    if best is None:
        raise ValueError("the tune recommends no change: nothing to write")
    repo = out / "best_repository"
    clear_best(out)  # an earlier tune's models must not stay beside this one's
    onnx = result.variants[best.candidate.precision]
    build_repository([onnx], repo, candidate_options(best.candidate, "pipeline", link=False))
    command = shlex.join(["percept", "repo", "build", "--onnx", str(onnx), "--out", str(repo)])
    flags = best.candidate.repo_build_flags()
    command += (" " + shlex.join(flags)) if flags else ""
    (out / "best_repo_build.sh").write_text(command + "\n")
    return repo, command


def render_table(result: TuneResult):
    """A rich Table of every candidate's points (the CLI prints it)."""
    from rich.table import Table

    table = Table(
        title=f"percept tune {result.model} ({result.mode}; {result.options.constraint.describe()})",
        caption=_caption(result),
    )
    heads = ("candidate", "conc", "req/s", "p50", "p99", "errors", "batch", "meets", "pareto", "s")
    for name in heads:
        table.add_column(name, justify="left" if name == "candidate" else "right")
    for row in rows(result):
        mark = (" [bold green]recommended[/]" if row["best"] and not row["defaults"] else "") + (
            " (defaults)" if row["defaults"] else ""
        )
        if row["throughput"] == "":
            table.add_row(row["candidate"] + mark, *["-"] * 7, "", f"{row['seconds']:.0f}")
            continue
        table.add_row(
            row["candidate"] + mark,
            str(row["concurrency"]),
            _pm(row["throughput"], row["throughput_ci"], 2),
            f"{row['p50_ms']:.1f}",
            _pm(row["p99_ms"], row["p99_ci"], 1),
            str(row["errors"]),
            f"{row['avg_batch']:.2f}" if row["avg_batch"] == row["avg_batch"] else "-",
            "yes" if row["feasible"] else "[red]no[/]",
            "*" if row["pareto"] else "",
            f"{row['seconds']:.0f}",
        )
    return table


def _caption(result: TuneResult) -> str:
    repeats = result.options.repeats
    text = f"req/s and p99: mean ± 95 % interval over {repeats} repeats per level"
    if result.defaults_measured > 1:
        text += f" (the defaults: {result.defaults_measured * repeats}, measured before and after the others)"
    return text


def _pm(mean: float, half, digits: int) -> str:
    """``5.99 ± 0.04`` (Interval's own text); the mean alone without an interval."""
    return Interval(mean, half if isinstance(half, float) else math.nan, 0).text(digits)
