"""`percept loadtest`: drive a served model with a concurrency sweep, a request rate, camera
streams, or search the number of streams it holds within a p99 SLO."""

from __future__ import annotations

from pathlib import Path

import typer

from percept.connection import ADMIN_KEY, CERT_CHAIN, HEADER, PRIVATE_KEY, ROOT_CERTS, TLS, connection
from serving.spec import ENSEMBLE_CAMERA

SLO_EXIT_CODE = 3  # distinct from 1 (an error) so CI can tell "missed the SLO" from "broke"


def loadtest(
    url: str = typer.Option("127.0.0.1:8001", help="Triton gRPC endpoint host:port."),
    root_certs: Path | None = ROOT_CERTS,
    private_key: Path | None = PRIVATE_KEY,
    cert_chain: Path | None = CERT_CHAIN,
    tls: bool = TLS,
    admin_key: str | None = ADMIN_KEY,
    header: list[str] = HEADER,
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
    streams: str | None = typer.Option(
        None,
        help="Streams mode: camera streams per step (4, or a sweep 1:16:x2), each sending --fps frames/s "
        "on its own clock, open loop; latency from each frame's scheduled send time.",
    ),
    fps: float = typer.Option(10.0, help="Streams mode: frames per second of every stream."),
    deadline_ms: float | None = typer.Option(
        None, help="Streams mode: an answer later than this is counted late (default: one frame period)."
    ),
    find_capacity: bool = typer.Option(
        False,
        "--find-capacity",
        help="Search the largest number of --fps streams held within --slo-p99-ms (nothing failed or "
        "dropped): doubling from --streams (default 1), then bisection; prints the curve it ran.",
    ),
    max_streams: int = typer.Option(256, help="--find-capacity: the largest number of streams tried."),
    max_outstanding: int = typer.Option(
        64, help="Rate mode: in-flight cap; streams mode: per stream. Frames over it are dropped."
    ),
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
    --slo-scope last; with --find-capacity: not even one stream held it).
    """
    from clients.loadtest import (
        LoadTest,
        LoadTestOptions,
        load_frames,
        parse_concurrency,
        render_table,
        write_outputs,
    )
    from percept.console import report_console
    from serving.errors import SpecError

    models = tuple(name for item in model for name in item.split(",") if name)
    if find_capacity and slo_p99_ms is None:
        raise SpecError("--find-capacity needs the SLO it searches for: --slo-p99-ms MS")
    stream_steps = parse_concurrency(streams) if streams else ((1,) if find_capacity else ())
    tls_options, headers = connection(tls, root_certs, private_key, cert_chain, admin_key, header)
    options = LoadTestOptions(
        url=url,
        tls=tls_options,
        headers=headers,
        models=models,
        concurrency=parse_concurrency(concurrency),
        rate=rate,
        streams=stream_steps,
        fps=fps,
        deadline_ms=deadline_ms,
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
    console = report_console(min_width=140)
    frame_list = load_frames(frames, images=images, video=video, seed=seed)

    if find_capacity:
        assert slo_p99_ms is not None  # checked above
        _capacity(console, options, frame_list, label, slo_p99_ms, max_streams, out)
        return
    with LoadTest(options, frame_list, label) as test:
        result = test.run()
    console.print(render_table(result, slo_p99_ms))
    if options.mode == "streams" and len(result.steps) == 1:
        from clients.loadtest.report import render_per_stream

        console.print(render_per_stream(result.steps[0]))
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


def _capacity(console, options, frames, label: str, slo_p99_ms: float, max_streams: int, out: Path) -> None:
    from clients.loadtest import LoadTest, render_table, write_outputs
    from clients.loadtest.capacity import capacity_result, find_capacity

    def on_step(step, held: bool) -> None:
        verdict = "held" if held else "missed"
        p99 = step.latency.p99
        console.print(f"  {step.concurrency} streams: p99 {p99:.1f} ms, {step.error_count} errors, {verdict}")

    with LoadTest(options, frames, label) as test:
        start = options.streams[0]
        capacity = find_capacity(test, slo_p99_ms, start=start, limit=max_streams, on_step=on_step)
        result = capacity_result(test, capacity)
    console.print(render_table(result, slo_p99_ms))
    paths = write_outputs(result, out, slo_p99_ms)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    runs = len(capacity.search.probes)
    more = " (the --max-streams limit: it may hold more)" if capacity.search.at_limit else ""
    if capacity.best == 0:
        typer.secho(
            f"capacity: not even 1 stream at {options.fps:g} fps holds p99 <= {slo_p99_ms:g} ms",
            fg="red",
            err=True,
        )
        raise typer.Exit(SLO_EXIT_CODE)
    console.print(
        f"capacity: {capacity.best} streams at {options.fps:g} fps hold p99 <= {slo_p99_ms:g} ms{more}; "
        f"{runs} steps"
    )
