"""`percept tune`: search a network's serving configuration under a p99 / throughput constraint."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from percept.loadtest import SLO_EXIT_CODE


def _onnx_of(model: str, out: Path) -> Path:
    """An ONNX file as given, or a registered network exported (ONNX stage, shipped weights) into
    ``out/onnx/<name>/model.onnx`` and reused while current."""
    path = Path(model)
    if path.is_file():
        return path
    from serving.errors import SpecError

    try:
        from exporters.networks.registry import NETWORKS
    except ImportError:  # the client install has no exporters (torch)
        raise SpecError(f"{model}: no such ONNX file (exporting a network needs the export extra)") from None
    if model not in NETWORKS:
        raise SpecError(f"{model}: neither an ONNX file nor a registered network ({', '.join(NETWORKS)})")
    from exporters.export.freshness import export_if_stale
    from exporters.export.options import OnnxOptions
    from exporters.weights import shipped_checkpoint

    options = OnnxOptions(checkpoint=shipped_checkpoint(model))
    return export_if_stale(model, out / "onnx" / model / "model.onnx", options)


# every candidate builds a repository, starts a server and runs load steps: one progress line each
# instead (`percept -v tune` keeps them)
_PER_CANDIDATE = ("serving.repository", "serving.launcher", "clients.loadtest.runner", "clients.tune.search")


def _quiet_per_candidate_logs() -> None:
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        for name in _PER_CANDIDATE:
            logging.getLogger(name).setLevel(logging.WARNING)


def tune(
    model: str = typer.Argument(
        ...,
        help="An exported ONNX file (model.fp16.onnx / model.int8.onnx beside it join the search), or a "
        "registered network (cam-n, fusion-n, ...), exported first into OUT/onnx.",
    ),
    slo_p99_ms: float | None = typer.Option(None, help="Constraint: p99 latency at most this (ms)."),
    min_throughput: float | None = typer.Option(None, help="Constraint: throughput at least this (req/s)."),
    quick: bool = typer.Option(
        False, "--quick", help="Coordinate descent from the defaults (one knob at a time), not the grid."
    ),
    budget_s: float = typer.Option(600.0, help="Time budget: no candidate starts that would end past it."),
    instances: str = typer.Option("1,2,4", help="Network instance counts to try."),
    threads: str = typer.Option("1,2", help="ONNX Runtime intra-op threads per instance to try."),
    max_batch: str = typer.Option("4,8", help="Max batch sizes to try (at most the export's profile max)."),
    preferred_batch: str = typer.Option("none", help="Preferred batch sizes to try; none: no preference."),
    queue_delay_us: str = typer.Option("0,2000", help="Dynamic batcher queue delays to try (µs)."),
    precision: str = typer.Option(
        "found", help="Precisions to try: found (every model.<p>.onnx beside the file) or e.g. fp32,fp16."
    ),
    target: str = typer.Option(
        "pipeline", help="What the load drives: pipeline (the ensemble clients call) or network (raw)."
    ),
    concurrency: str = typer.Option("2,8", help="Closed-loop concurrency levels measured per candidate."),
    window: float = typer.Option(2.0, help="Measurement window seconds (one per repeat)."),
    warmup: float = typer.Option(1.0, help="Warm-up seconds before each repeat's window (not measured)."),
    repeats: int = typer.Option(
        0,
        help="Repeats (warm-up + one window) per concurrency level, for the 95 % intervals and the "
        "significance test; 0: 3 with --quick, 5 for the grid. At least 2.",
    ),
    workers: int = typer.Option(2, help="Load-generating processes."),
    frames: int = typer.Option(4, help="Distinct world frames cycled through."),
    alpha: float = typer.Option(
        0.05,
        help="Significance level of the decision: a change must beat the defaults at alpha / the number "
        "of candidates compared (one-sided), its other figure not worse at alpha. Lower: stricter.",
    ),
    out: Path = typer.Option(
        Path("artifacts/tune"), help="Folder for tune.csv/.json, pareto.png, best_repository."
    ),
) -> None:
    """Find the serving configuration of one network that meets a constraint: every candidate
    (instances x ORT threads x max batch x preferred batch x queue delay x precision) is written by
    the repository builder, served by a restarted tritonserver and load-tested; the best is the
    highest throughput that meets --slo-p99-ms (and --min-throughput; with only --min-throughput,
    the lowest p99), with no failed request.

    Each level is measured --repeats times; a change is recommended only when it beats the defaults
    beyond that noise (one-sided Welch t-test, corrected for the candidates compared, with a p99
    not significantly worse; on a tie, fewer cores), else the tune says "keep the defaults".

    Writes tune.csv / tune.json (every candidate and level, mean ± 95 % interval), pareto.png
    (throughput vs p99 with error bars, each precision's accuracy delta where its export report
    recorded one) and, only for a recommended change, best_repository/ and best_repo_build.sh (the
    `percept repo build` flags). Exit codes: 0 ok (a change or keep the defaults), 1 error, 3 no
    candidate met the constraint.
    """
    from clients.loadtest.frames import world_frames
    from clients.loadtest.options import parse_concurrency
    from clients.tune import (
        Constraint,
        SearchSpace,
        TuneOptions,
        parse_ints,
        render_table,
        run_tune,
        write_best,
        write_table,
    )
    from clients.tune.report import clear_best, delta_text
    from percept.console import report_console
    from serving.onnx_meta import precision_variants, read_spec

    console = report_console()
    _quiet_per_candidate_logs()
    onnx = _onnx_of(model, out)
    precisions = tuple(precision_variants(onnx)) if precision == "found" else tuple(precision.split(","))
    space = SearchSpace(
        instances=parse_ints(instances, "instances"),
        threads=parse_ints(threads, "threads"),
        max_batch=parse_ints(max_batch, "max batch"),
        preferred_batch=parse_ints(preferred_batch, "preferred batch"),
        queue_delay_us=parse_ints(queue_delay_us, "queue delay"),
        precision=precisions,
    )
    options = TuneOptions(
        onnx=onnx,
        space=space,
        constraint=Constraint(slo_p99_ms, min_throughput),
        quick=quick,
        budget_s=budget_s,
        target=target,
        concurrency=parse_concurrency(concurrency),
        workers=workers,
        warmup_s=warmup,
        window_s=window,
        frames=frames,
        repeats=repeats,
        alpha=alpha,
    )

    seen: set = set()

    def progress(r) -> None:
        point = r.best_point(options.constraint)
        said = r.error or "-"
        if point is not None:
            thr, p99 = point.interval("throughput"), point.interval("p99_ms")
            said = f"{thr.text(2)} req/s, p99 {p99.text(1)} ms"
        again = " (the defaults again: pooled with their first measurement)" if r.candidate in seen else ""
        seen.add(r.candidate)
        console.print(f"  {r.candidate.label}: {said} ({r.seconds:.0f} s){again}")

    console.print(
        f"tuning {onnx} ({'quick' if quick else f'grid of {space.size}'}; {options.repeats} repeats "
        f"per level; budget {budget_s:g} s)"
    )
    hw = read_spec(onnx).input_hw
    result = run_tune(options, world_frames(frames, seed=0, hw=hw), out / "work", on_result=progress)
    console.print(render_table(result))
    for name, deltas in result.accuracy.items():
        console.print(f"accuracy of {name} vs PyTorch (its export report): {delta_text(deltas)}")
    paths = write_table(result, out)
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    if result.skipped:
        console.print(f"budget reached: {len(result.skipped)} candidates not tried (tune.json lists them)")
    shorten = (
        f" (--repeats {options.repeats - 1} to shorten, with wider intervals)" if options.repeats > 2 else ""
    )
    console.print(
        f"repeats: {options.repeats} per level; the ones beyond each level's first took "
        f"{result.repeat_seconds:.0f} s of the {result.seconds:.0f} s tune{shorten}"
    )
    decision = result.decision()
    if decision.keep_defaults:
        for path in clear_best(out):
            console.print(f"removed {path} (an earlier tune's; this one recommends no change)")
    if result.best() is None:
        closest = result.closest()
        near = ""
        if closest is not None and (point := closest.best_point(options.constraint)) is not None:
            near = (
                f"; closest: {closest.candidate.label} at {point.throughput:.1f} req/s, "
                f"p99 {point.p99_ms:.1f} ms"
            )
        typer.secho(
            f"no candidate met the constraint {options.constraint.describe()}{near}", fg="red", err=True
        )
        raise typer.Exit(SLO_EXIT_CODE)
    if decision.keep_defaults:
        console.print(f"[bold]{decision.reason}[/]")
        console.print("no repository written, nothing to rebuild")
        return
    repo, command = write_best(result, out)
    console.print(f"[bold green]recommended[/]: {decision.reason}")
    console.print(f"wrote {repo}; reproduce with: {command}")
