"""`percept bench` (and `python -m percept.bench`): parses the options and calls the bench run."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def bench(
    out: Path = typer.Option(Path("artifacts/bench"), help="Work folder (exports, bench.json, history)."),
    markdown: Path = typer.Option(Path("BENCHMARKS.md"), help="Markdown file to rewrite."),
    fresh: bool = typer.Option(False, "--fresh", help="Re-export the networks even if present."),
    quick: bool = typer.Option(False, "--quick", help="Shorter windows (a smoke run, noisier)."),
) -> None:
    """Benchmark suite: served vs in-process, batching, fused vs single-task, video, wire bytes.

    Every figure is a ratio of two numbers measured in this run; rewrites --markdown. Exit code 1
    when a stage failed (the report says which).
    """
    # PyTorch's OpenMP threads busy-wait by default; the served ONNX Runtime has spinning off, and on
    # a crowded host spinning threads slowed eager PyTorch ~20x here. Set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from percept.bench.run import BenchOptions, run_bench

    result = run_bench(BenchOptions(out=out, markdown=markdown, fresh=fresh, quick=quick))
    for fig in result.figures:
        status = {True: "met", False: "MISSED", None: "no goal" if fig.ratio == fig.ratio else "not measured"}
        typer.echo(f"({fig.key}) {fig.title}: {fig.ratio:.2f} {fig.goal} {status[fig.met]}")
    typer.echo(f"wrote {markdown} and {out / 'bench.json'}")
    if result.errors:
        typer.secho("failed stages: " + ", ".join(result.errors), fg="red", err=True)
        raise typer.Exit(1)


def main() -> None:
    """`python -m percept.bench`: the command on its own, with the root command's logging."""
    import logging

    from percept.quiet import quiet_third_party

    quiet_third_party()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    typer.run(bench)
