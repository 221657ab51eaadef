"""The CLI reference, rendered from the `percept` typer app: every command, argument and option.

Walks the command tree typer builds (``typer.main.get_command``), so a command or flag added,
renamed or removed in percept/ changes this page at the next build; nothing here names a command.
"""

from __future__ import annotations

from md import code, escape, paragraphs, table


def _app():
    import typer.main

    from percept.cli import _register, app

    if not (app.registered_commands or app.registered_groups):  # as main() does, once
        _register()
    return typer.main.get_command(app)


def commands(root=None) -> list[tuple[list[str], object]]:
    """Every command of the tree, depth first in the app's order: (path after `percept`, command)."""
    root = root or _app()
    found: list[tuple[list[str], object]] = []

    def walk(cmd, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    walk(root, [])
    return found


def _context(path: list[str], cmd, parent):
    return cmd.make_context(path[-1] if path else "percept", [], parent=parent, resilient_parsing=True)


def render() -> str:
    root = _app()
    out: list[str] = []
    contexts: dict[tuple[str, ...], object] = {}
    entries = commands(root)
    for path, cmd in entries:
        parent = contexts.get(tuple(path[:-1])) if path else None
        ctx = contexts[tuple(path)] = _context(path, cmd, parent)
        title = " ".join(["percept", *path])
        out.append(f"{'##' if len(path) <= 1 else '###'} {title}\n")
        out.append("```text\n" + cmd.get_usage(ctx).strip() + "\n```\n")
        if cmd.help:
            out.append(paragraphs(cmd.help) + "\n")
        subs = getattr(cmd, "commands", {})
        if subs:
            rows = [(code(f"{title} {n}"), escape(s.get_short_help_str(300))) for n, s in subs.items()]
            out.append(table(("command", "what it does"), rows) + "\n")
        rows = []
        for param in cmd.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:  # a hidden option
                continue
            kind = "argument" if type(param).__name__.endswith("Argument") else "option"
            rows.append((code(record[0]), kind, escape(record[1])))
        if rows:
            out.append(table(("argument / option", "", "help, default"), rows) + "\n")
    header = (
        "Every command, argument and option of `percept`, rendered at build time from the command line "
        f"itself ({len(entries) - 1} commands). `percept COMMAND --help` prints the same.\n"
    )
    return header + "\n".join(out)
