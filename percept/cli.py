"""Root of the `percept` command. Sub-command modules import heavy dependencies lazily."""

from __future__ import annotations

import logging
import sys

import typer

from percept.quiet import quiet_third_party
from serving.errors import PerceptionError

app = typer.Typer(
    name="percept",
    help="Serve fused multi-task perception networks on NVIDIA Triton.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    # In the order of the pipeline; each module imports its heavy dependencies inside its commands.
    from percept import (
        compare,
        demo,
        doctor,
        evaluate,
        export,
        loadtest,
        repo,
        serve,
        train,
        tune,
        video,
        world,
    )
    from percept.bench import command as bench

    app.add_typer(world.app, name="world")
    app.command("train")(train.train)
    app.command("eval")(evaluate.eval_command)
    export.register(app)  # export, import-onnx
    app.add_typer(repo.app, name="repo")
    app.command("serve")(serve.serve)
    app.command("video")(video.video)
    app.command("compare")(compare.compare)
    app.command("loadtest")(loadtest.loadtest)
    app.command("tune")(tune.tune)
    app.command("bench")(bench.bench)
    app.command("demo")(demo.demo)
    app.command("doctor")(doctor.doctor)


def main() -> None:
    quiet_third_party()
    _register()
    try:
        app()
    except PerceptionError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


if __name__ == "__main__":  # python -m percept.cli
    main()
