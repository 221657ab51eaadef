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
    # streams mode (`concurrency` is the stream count, `target_rate` streams x fps)
    "fps",
    "frames_sent",
    "frames_answered",
    "frames_late",
    "frames_dropped",
    "lat_p99_9_ms",
    "lat_p99_99_ms",
    "from_send_p99_ms",
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
        **_streams_row(step),
    }


def _streams_row(step: StepResult) -> dict:
    s = step.streams
    if s is None:
        return {}
    return {
        "fps": s.fps,
        "frames_sent": s.sent,
        "frames_answered": s.answered,
        "frames_late": s.late,
        "frames_dropped": s.dropped,
        "lat_p99_9_ms": round(s.latency.p99_9, 3),
        "lat_p99_99_ms": round(s.latency.p99_99, 3),
        "from_send_p99_ms": round(s.from_send.p99, 3),
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
        label = _step_label(step)
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
    title = f"{'+'.join(result.models)} @ {result.url}"
    if result.capacity is not None:
        title += f": holds {result.capacity['best']} streams"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _step_label(step: StepResult) -> str:
    if step.mode == "concurrency":
        return f"c={step.concurrency}"
    if step.mode == "streams":
        return f"{step.concurrency} stream{'s' if step.concurrency != 1 else ''}"
    return f"{step.target_rate:g}/s"


def _server_cells(step: StepResult, names: tuple[str, ...]) -> list[str]:
    split = step.network_split()
    if split is None:
        return ["-"] * len(names)
    return [f"{getattr(split, n):.2f}" if n == "avg_batch" else f"{getattr(split, n):.1f}" for n in names]


def render_streams_table(result: LoadTestResult, slo_p99_ms: float | None = None):
    """Streams mode: per step the frames sent / answered / late / dropped of all streams, latency
    from each frame's schedule (HDR percentiles), and the p99 from the actual send beside it."""
    from rich.table import Table

    fps = result.steps[0].streams.fps if result.steps and result.steps[0].streams else 0.0
    table = Table(title=f"{result.models[0]} @ {result.url}: camera streams at {fps:g} fps ({result.inputs})")
    columns: tuple[str, ...] = ("streams", "req/s", "sent", "answered", "late", "dropped", "errors", "p50")
    columns += ("p99", "p99.9")
    columns += ("p99.99", "max", "p99 send", "queue", "infer", "batch", "cpu/req", "stable")
    for name in columns:
        table.add_column(name, justify="right")
    for step in result.steps:
        s = step.streams
        if s is None:
            continue
        lat = s.latency
        p99 = f"{lat.p99:.1f}"
        if slo_p99_ms is not None and not step.held(slo_p99_ms):
            p99 = f"[red]{p99}[/red]"
        table.add_row(
            str(s.streams),
            f"{step.throughput:.1f}",
            *(str(v) for v in (s.sent, s.answered, s.late, s.dropped, s.errors)),
            f"{lat.p50:.1f}",
            p99,
            *(f"{v:.1f}" for v in (lat.p99_9, lat.p99_99, lat.max, s.from_send.p99)),
            *_server_cells(step, ("queue_ms", "compute_infer_ms", "avg_batch")),
            f"{step.harness_cpu_ms_per_request:.2f}",
            "yes" if step.stable else "no",
        )
    table.caption = (
        f"ms from each frame's scheduled send; late: answered after {_deadline(result)} ms; "
        "p99 send: from the actual send; cpu/req: load-worker CPU ms"
    )
    return table


def _deadline(result: LoadTestResult) -> str:
    s = result.steps[0].streams if result.steps else None
    return f"{s.deadline_ms:g}" if s else "?"


def render_per_stream(step: StepResult):
    """One row per camera stream of a streams step."""
    from rich.table import Table

    table = Table(title=f"{step.concurrency} streams, per stream")
    for name in ("stream", "sent", "answered", "late", "dropped", "errors", "p50", "p99", "max"):
        table.add_column(name, justify="right")
    for s in step.streams.per_stream if step.streams else ():
        counts = (s.stream, s.sent, s.answered, s.late, s.dropped, s.errors)
        table.add_row(*(str(v) for v in counts), *(f"{v:.1f}" for v in (s.p50_ms, s.p99_ms, s.max_ms)))
    return table


def render_table(result: LoadTestResult, slo_p99_ms: float | None = None):
    """A rich Table of the steps (the CLI prints it)."""
    from rich.table import Table

    if result.mode == "streams":
        return render_streams_table(result, slo_p99_ms)

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
