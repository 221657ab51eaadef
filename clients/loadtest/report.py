"""Load-test output: a console table (rich), CSV, JSON and a PNG plot of throughput vs p99 latency."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from clients.loadtest.result import LoadTestResult, StepResult

log = logging.getLogger(__name__)

CSV_COLUMNS = (
    "mode",
    "concurrency",
    "target_rate",
    "throughput",
    "lat_avg_ms",
    "lat_p50_ms",
    "lat_p90_ms",
    "lat_p95_ms",
    "lat_p99_ms",
    "lat_max_ms",
    "successes",
    "errors",
    "dropped",
    "stable",
    "windows",
    "server_model",
    "queue_ms",
    "compute_input_ms",
    "compute_infer_ms",
    "compute_output_ms",
    "avg_batch",
    "little_concurrency",
    "harness_cpu_ms_per_request",
    "harness_cpu_share",
)


def _row(step: StepResult) -> dict:
    lat = step.latency
    split = step.network_split()
    server_model = next((m for m, s in step.server.items() if s is split), "")
    return {
        "mode": step.mode,
        "concurrency": step.concurrency,
        "target_rate": step.target_rate if step.target_rate is not None else "",
        "throughput": round(step.throughput, 3),
        "lat_avg_ms": round(lat.avg, 3),
        "lat_p50_ms": round(lat.p50, 3),
        "lat_p90_ms": round(lat.p90, 3),
        "lat_p95_ms": round(lat.p95, 3),
        "lat_p99_ms": round(lat.p99, 3),
        "lat_max_ms": round(lat.max, 3),
        "successes": step.successes,
        "errors": ";".join(f"{k}={v}" for k, v in sorted(step.errors.items())),
        "dropped": step.dropped,
        "stable": step.stable,
        "windows": step.windows,
        "server_model": server_model,
        "queue_ms": round(split.queue_ms, 3) if split else "",
        "compute_input_ms": round(split.compute_input_ms, 3) if split else "",
        "compute_infer_ms": round(split.compute_infer_ms, 3) if split else "",
        "compute_output_ms": round(split.compute_output_ms, 3) if split else "",
        "avg_batch": round(split.avg_batch, 3) if split else "",
        "little_concurrency": round(step.little_concurrency, 3),
        "harness_cpu_ms_per_request": round(step.harness_cpu_ms_per_request, 3),
        "harness_cpu_share": round(step.harness_cpu_share, 4),
    }


def write_csv(result: LoadTestResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for step in result.steps:
            writer.writerow(_row(step))
    return path


def write_json(result: LoadTestResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def write_plot(result: LoadTestResult, path: Path, slo_p99_ms: float | None = None) -> Path:
    """Throughput (x) vs p99 latency (y), one point per step labelled with its concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    xs = [s.throughput for s in result.steps]
    ys = [s.latency.p99 for s in result.steps]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(xs, ys, marker="o")
    for step, x, y in zip(result.steps, xs, ys, strict=True):
        label = f"c={step.concurrency}" if step.mode == "concurrency" else f"{step.target_rate:g}/s"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    finite = [y for y in ys if y == y]
    top = max(finite, default=1.0) * 1.25
    if slo_p99_ms is not None:
        label = f"SLO p99 {slo_p99_ms:g} ms"
        if slo_p99_ms <= 2 * top:  # a far-away SLO would flatten the curve: name it instead
            ax.axhline(slo_p99_ms, color="tab:red", linestyle="--", label=label)
            top = max(top, slo_p99_ms * 1.1)
        else:
            ax.plot([], [], color="tab:red", linestyle="--", label=label + " (off the chart)")
        ax.legend(loc="upper left")
    ax.set_ylim(0, top)
    ax.set_xlim(0, max(xs, default=1.0) * 1.15)
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(f"{'+'.join(result.models)} @ {result.url}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render_table(result: LoadTestResult, slo_p99_ms: float | None = None):
    """A rich Table of the steps (the CLI prints it)."""
    from rich.table import Table

    table = Table(title=f"{'+'.join(result.models)} @ {result.url} ({result.inputs})")
    head = "conc" if result.mode == "concurrency" else "rate/s"
    columns: tuple[str, ...] = (head, "req/s", "avg", "p50", "p90", "p95", "p99", "max", "errors")
    columns += ("queue", "in", "infer", "out", "batch", "cpu/req", "stable")
    for name in columns:
        table.add_column(name, justify="right")
    for step in result.steps:
        lat = step.latency
        split = step.network_split()
        p99 = f"{lat.p99:.1f}"
        if slo_p99_ms is not None and not lat.p99 <= slo_p99_ms:
            p99 = f"[red]{p99}[/red]"
        errors = ", ".join(f"{k}:{v}" for k, v in sorted(step.errors.items())) or "0"
        server = (
            [
                f"{split.queue_ms:.1f}",
                f"{split.compute_input_ms:.1f}",
                f"{split.compute_infer_ms:.1f}",
                f"{split.compute_output_ms:.1f}",
                f"{split.avg_batch:.2f}",
            ]  # fmt: skip
            if split
            else ["-"] * 5
        )
        table.add_row(
            str(step.concurrency) if step.mode == "concurrency" else f"{step.target_rate:g}",
            f"{step.throughput:.1f}",
            f"{lat.avg:.1f}",
            f"{lat.p50:.1f}",
            f"{lat.p90:.1f}",
            f"{lat.p95:.1f}",
            p99,
            f"{lat.max:.1f}",
            errors,
            *server,
            f"{step.harness_cpu_ms_per_request:.2f}",
            "yes" if step.stable else "no",
        )
    table.caption = "latencies and server split (queue/in/infer/out) in ms; cpu/req: load-worker CPU ms"
    return table


def write_outputs(result: LoadTestResult, out_dir: Path, slo_p99_ms: float | None = None) -> dict[str, Path]:
    """loadtest.csv, loadtest.json and loadtest.png in ``out_dir``."""
    paths = {
        "csv": write_csv(result, out_dir / "loadtest.csv"),
        "json": write_json(result, out_dir / "loadtest.json"),
        "png": write_plot(result, out_dir / "loadtest.png", slo_p99_ms),
    }
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
