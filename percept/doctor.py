"""`percept doctor`: what this machine has for the project, and what to do about each missing piece."""

from __future__ import annotations

import typer


def doctor() -> None:
    """What this machine has for the project, and what to do about each missing piece.

    One screen: Python, numpy, tritonserver and its python-backend stub, ONNX Runtime, tritonclient,
    the shipped weights, ports, GPU, TensorRT against the pinned release, torch, Ray. Exit 0 when the
    default path (embedded Triton with ONNX Runtime, the client, `percept demo`) has what it needs,
    1 otherwise (the missing pieces are named)."""
    from serving.doctor import ready, run_checks

    checks = run_checks()
    width = max(len(c.what) for c in checks)
    colours = {"OK": "green", "MISSING": "red", "optional": "yellow"}
    for c in checks:
        typer.echo(f"{c.what:<{width}}  ", nl=False)
        typer.secho(f"{c.status:<8}", fg=colours[c.status], nl=False)
        typer.echo(f"  {c.found}")
        if c.todo:
            typer.echo(f"{'':<{width}}  {'':<8}  -> {c.todo}")
    if ready(checks):
        typer.secho("ready: percept demo / percept serve run here", fg="green", bold=True)
        return
    missing = ", ".join(c.what for c in checks if c.required and not c.ok)
    typer.secho(f"not ready: {missing}", fg="red", bold=True, err=True)
    raise typer.Exit(1)
