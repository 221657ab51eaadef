"""The shell commands the docs show, and their check against the `percept` command line.

Convention (docs/development/testing.md says it for contributors): every line of a fenced ``bash``,
``sh``, ``shell`` or ``console`` block in README.md and docs/ (and in the files they include with
``--8<--``) that starts with ``percept`` or ``make`` (after ``VAR=value`` assignments) is a command.
Every one is resolved against the typer app or the Makefile: an unknown command, option, choice or
a missing argument fails with the file and line. A command runs in tests/docs unless it carries a
``needs:`` marker, either on its own line (``# needs: gpu (tests/gpu/test_tensorrt_engines.py)``)
or for a whole block in an HTML comment on the line before the fence
(``<!-- needs: server (tests/clients/video/test_video_local.py) -->``): what it needs that this
machine or a test's time does not have, and the tests that cover what can run here.
Synopses with placeholders (``[--flag X]``, ``a|b``) belong in ``text`` blocks, which are not read.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
NEEDS = {
    "gpu": "an NVIDIA GPU (TensorRT, the NGC image)",
    "cluster": "a Kubernetes or Ray cluster",
    "server": "a running tritonserver (percept serve) and its models",
    "files": "inputs of your own (an ONNX file, videos, certificates)",
    "minutes": "minutes of CPU (training, export, the whole suite)",
}
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_NEEDS = re.compile(r"needs:\s*([a-z, ]+?)\s*\(([^)]*)\)")
_BLOCK_NEEDS = re.compile(r"^\s*<!--\s*(needs:.*?)\s*-->\s*$")
_INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class DocCommand:
    file: Path
    line: int
    argv: tuple[str, ...]
    needs: tuple[str, ...] = ()
    covered_by: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        name = self.file.relative_to(ROOT) if self.file.is_relative_to(ROOT) else self.file
        return f"{name}:{self.line}"

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def _marker(text: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    m = _NEEDS.search(text)
    if not m:
        raise ValueError(f"{where}: a needs marker reads `needs: KIND (tests/...)`, got {text!r}")
    kinds = tuple(k.strip() for k in m.group(1).split(",") if k.strip())
    tests = tuple(t.strip() for t in m.group(2).split(",") if t.strip())
    return kinds, tests


def _logical_lines(lines: list[tuple[int, str]]):
    """Join backslash continuations; yield (first line number, text)."""
    buf, start = "", 0
    for number, text in lines:
        if not buf:
            start = number
        if text.rstrip().endswith("\\"):
            buf += text.rstrip()[:-1] + " "
            continue
        yield start, buf + text
        buf = ""
    if buf:
        yield start, buf


def _command(path: Path, number: int, text: str, block_marker) -> DocCommand | None:
    where = f"{path}:{number}"
    needs, covered = block_marker or ((), ())
    if "needs:" in text.partition("#")[2]:
        needs, covered = _marker(text.partition("#")[2], where)
    tokens = shlex.split(text, comments=True)
    while tokens and _ASSIGN.match(tokens[0]):
        tokens.pop(0)
    if not tokens or tokens[0] not in ("percept", "make"):
        return None
    return DocCommand(path, number, tuple(tokens), needs, covered)


def commands_in(path: Path) -> list[DocCommand]:
    found: list[DocCommand] = []
    lines = path.read_text().splitlines()
    fence, lang, block, marker, previous = None, "", [], None, ""
    for number, line in enumerate(lines, 1):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence, lang, block = m.group(1), m.group(2).lower(), []
                b = _BLOCK_NEEDS.match(previous)
                marker = _marker(b.group(1), f"{path}:{number - 1}") if b else None
            elif inc := _INCLUDE.match(line):
                found += commands_in(ROOT / inc.group(1))
            if line.strip():
                previous = line
            continue
        if m and m.group(1).startswith(fence[0]) and len(m.group(1)) >= len(fence) and not m.group(2):
            if lang in SHELL_LANGS:
                for start, text in _logical_lines(block):
                    if cmd := _command(path, start, text.lstrip("$ "), marker):
                        found.append(cmd)
            fence, previous = None, line
            continue
        block.append((number, line))
    return found


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


# --- resolving a command against the typer app and the Makefile --------------------------------
def percept_app():
    """The `percept` typer app with its commands registered (once per process, as main() does)."""
    from percept.cli import _register, app

    if not (app.registered_commands or app.registered_groups):
        _register()
    return app


def percept_root():
    import typer.main

    return typer.main.get_command(percept_app())


def _message(exc: Exception) -> str:
    fmt = getattr(exc, "format_message", None)
    return fmt() if callable(fmt) else str(exc) or type(exc).__name__


def check_percept(root, argv: tuple[str, ...]) -> str | None:
    """None when ``argv`` (``percept ...``) parses as the command line would, else the reason."""
    cmd, path, args = root, ["percept"], list(argv[1:])
    while hasattr(cmd, "commands"):
        ctx = cmd.make_context(path[-1], [], resilient_parsing=True)
        options = {o: p for p in cmd.get_params(ctx) for o in (*p.opts, *getattr(p, "secondary_opts", []))}
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt == "--help":
                return None
            if opt not in options:
                return f"no option {opt} for {' '.join(path)}"
            if not getattr(options[opt], "is_flag", False):
                args.pop(0)
        if not args:
            return f"{' '.join(path)} needs a command"
        name = args.pop(0)
        if name not in cmd.commands:
            return f"no command {name!r} under {' '.join(path)} (has: {', '.join(cmd.commands)})"
        cmd, path = cmd.commands[name], [*path, name]
    if "--help" in args:
        return None
    try:
        cmd.make_context(path[-1], args)
    except Exception as exc:  # the command line's own usage errors, whatever their class
        return f"{' '.join(path)}: {_message(exc)}"
    return None


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))


def check_make(targets: set[str], argv: tuple[str, ...]) -> str | None:
    unknown = [t for t in argv[1:] if not t.startswith("-") and "=" not in t and t not in targets]
    return f"no Makefile target {', '.join(unknown)}" if unknown else None


def check_marker(cmd: DocCommand) -> str | None:
    if not cmd.needs:
        return None
    bad = [k for k in cmd.needs if k not in NEEDS]
    if bad:
        return f"unknown needs {', '.join(bad)} (known: {', '.join(NEEDS)})"
    if not cmd.covered_by:
        return "a needs marker names the tests that cover what can run here"
    paths = [ROOT / test.split("::")[0] for test in cmd.covered_by]
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        return f"covering test {', '.join(missing)} does not exist"
    words = [a for a in cmd.argv[1:] if not a.startswith("-")]
    if cmd.argv[0] == "percept" and words:
        files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]
        word = re.compile(rf"(?<![\w-]){re.escape(words[0])}(?![\w-])")
        if not any(word.search(f.read_text()) for f in files):
            return f"none of the covering tests names `percept {words[0]}`"
    return None
