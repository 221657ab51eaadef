"""`percept loadtest`: drive a served model with a concurrency sweep or a request rate."""

from __future__ import annotations

from pathlib import Path

import typer

from serving.spec import ENSEMBLE_CAMERA

SLO_EXIT_CODE = 3  # distinct from 1 (an error) so CI can tell "missed the SLO" from "broke"


def loadtest(
    url: str = typer.Option("127.0.0.1:8001", help="Triton gRPC endpoint host:port."),
    model: list[str] = typer.Option(
        [ENSEMBLE_CAMERA],
        "--model",
        "-m",
        help="Model to drive: any served ensemble (perception, perception_fusion, NET_pipeline) or raw "
        "network (cam_n); what it takes is read from its served spec. "
        "Repeat it to send every frame to each model in turn (one unit = the whole round).",
    ),
    concurrency: str = typer.Option(
        "1,2,4,8", "--concurrency", "-c", help="Closed-loop sweep: 1:32:x2 (1,2,4..32), 1:8:+2, or 1,2,8."
    ),
    rate: float | None = typer.Option(
        None, help="Open-loop mode: requests/s (one step; the concurrency sweep is ignored)."
    ),
    arrivals: str = typer.Option("constant", help="Rate mode arrivals: constant or poisson."),
    max_outstanding: int = typer.Option(64, help="Rate mode: in-flight cap; arrivals over it are dropped."),
    workers: int = typer.Option(2, help="Load-generating processes (each its own gRPC client)."),
    warmup: float = typer.Option(2.0, help="Warm-up seconds per step (not measured)."),
    window: float = typer.Option(3.0, help="Measurement window seconds."),
    max_windows: int = typer.Option(6, help="Cap on windows per step when it does not settle."),
    stable_windows: int = typer.Option(3, help="Consecutive windows that must agree."),
    tolerance: float = typer.Option(0.10, help="Throughput and p95 within this fraction of their mean."),
    min_window_requests: int = typer.Option(
        10, help="A window is extended (up to 4x --window) until it holds this many answers."
    ),
    frames: int = typer.Option(8, help="Distinct frames cycled through."),
    images: Path | None = typer.Option(None, help="Frames from an image folder instead of the world."),
    video: Path | None = typer.Option(None, help="Frames from a video instead of the world."),
    encoding: str = typer.Option("raw", help="Ensemble input: raw frames, or jpeg / png bytes."),
    shared_memory: str = typer.Option("none", help="none, or system: inputs in system shared memory."),
    timeout: float = typer.Option(30.0, help="Per-request deadline in seconds."),
    seed: int = typer.Option(0, help="World frame seed and Poisson arrival seed."),
    out: Path = typer.Option(Path("artifacts/loadtest"), help="Folder for loadtest.csv/.json/.png."),
    slo_p99_ms: float | None = typer.Option(
        None, help=f"p99 latency SLO in ms: exit code {SLO_EXIT_CODE} when a step misses it."
    ),
    slo_scope: str = typer.Option("any", help="Which steps the SLO applies to: any (every step) or last."),
) -> None:
    """Load-test a served model: per step throughput, latency percentiles, errors by gRPC status,
    Triton's server-side split and average batch size; writes CSV, JSON and a PNG plot.

    Exit codes: 0 ok, 1 error, 3 the p99 SLO was missed (by any step, or by the last with
    --slo-scope last).
    """
    from rich.console import Console

    from clients.loadtest import (
        LoadTest,
        LoadTestOptions,
        load_frames,
        parse_concurrency,
        render_table,
        write_outputs,
    )

    models = tuple(name for item in model for name in item.split(",") if name)
    options = LoadTestOptions(
        url=url,
        models=models,
        concurrency=parse_concurrency(concurrency),
        rate=rate,
        arrivals=arrivals,
        max_outstanding=max_outstanding,
        workers=workers,
        warmup_s=warmup,
        window_s=window,
        max_windows=max_windows,
        stable_windows=stable_windows,
        tolerance=tolerance,
        min_window_requests=min_window_requests,
        request_timeout_s=timeout,
        shared_memory=shared_memory,
        encoding=encoding,
        seed=seed,
        slo_p99_ms=slo_p99_ms,
        slo_scope=slo_scope,
    )
    label = str(images or video or f"{frames} world frames (seed {seed})")
    console = Console(width=max(Console().width, 140))
    frame_list = load_frames(frames, images=images, video=video, seed=seed)

    with LoadTest(options, frame_list, label) as test:
        result = test.run()
    console.print(render_table(result, slo_p99_ms))
    paths = write_outputs(result, out, slo_p99_ms)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    missed = result.slo_missed(slo_p99_ms, slo_scope)
    if missed:
        steps = ", ".join(
            str(s.concurrency) if s.mode == "concurrency" else f"{s.target_rate:g}/s" for s in missed
        )
        typer.secho(f"SLO missed: p99 > {slo_p99_ms:g} ms at step(s) {steps}", fg="red", err=True)
        raise typer.Exit(SLO_EXIT_CODE)
    if slo_p99_ms is not None:
        console.print(f"SLO met: p99 <= {slo_p99_ms:g} ms ({slo_scope} step)")
