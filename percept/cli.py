"""Root of the `percept` command. Sub-command modules import heavy dependencies lazily."""

from __future__ import annotations

import logging
import sys

import typer

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
    # One line per command group; each module exposes a typer app or a command function.
    app.command("video")(__import__("percept.video", fromlist=["video"]).video)
    app.add_typer(__import__("percept.repo", fromlist=["app"]).app, name="repo")
    app.command("serve")(__import__("percept.serve", fromlist=["serve"]).serve)
    app.command("loadtest")(__import__("percept.loadtest", fromlist=["loadtest"]).loadtest)
    __import__("percept.export", fromlist=["register"]).register(app)
    app.add_typer(__import__("percept.world", fromlist=["app"]).app, name="world")
    app.command("train")(__import__("percept.train", fromlist=["train"]).train)
    app.command("eval")(__import__("percept.evaluate", fromlist=["eval_command"]).eval_command)


def main() -> None:
    _register()
    try:
        app()
    except PerceptionError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
