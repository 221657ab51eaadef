"""The rich Console every command prints its reports (tables) with.

On a terminal it is the terminal's width, at least ``min_width`` (a narrower terminal wraps the
lines instead of rich cutting cells to ``…``). Written to a file or a pipe (a CI log, ``| tee``),
rich would take 80 columns and cut every cell that does not fit; there it is wide enough for any
table, so each prints at its own width with every number and name whole.
"""

from __future__ import annotations

from typing import IO

NOT_A_TERMINAL_WIDTH = 10_000  # wider than any report: a table takes its natural width, no wider


def report_console(file: IO[str] | None = None, min_width: int = 120):
    """A rich Console for reports on ``file`` (default: stdout), see the module doc."""
    from rich.console import Console

    probe = Console(file=file)
    if not probe.is_terminal:
        return Console(file=file, width=NOT_A_TERMINAL_WIDTH)
    return Console(file=file, width=max(probe.width, min_width))
