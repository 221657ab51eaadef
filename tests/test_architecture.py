"""The package structure the design promises: no import loop between top-level packages, the
serving and client sides free of the model side (and of torch), every module small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serving", "world", "exporters", "clients", "percept")
# nothing imported at serving or client time may pull in the model side
FORBIDDEN = {
    "serving": {"exporters", "clients", "percept", "torch", "ray"},
    "world": {"exporters", "clients", "percept", "torch", "ray"},
    "clients": {"exporters", "percept", "torch"},
    "exporters": {"clients", "percept"},
}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imported_tops(path: Path) -> set[str]:
    """Top-level names of every absolute import in the module, lazy (function-level) ones included."""
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {pkg: set() for pkg in PACKAGES}
    for path in _modules():
        pkg = path.relative_to(ROOT).parts[0]
        graph[pkg] |= (_imported_tops(path) & set(PACKAGES)) - {pkg}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the graph as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt, [*stack, nxt])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def test_the_cycle_finder_finds_a_loop_and_accepts_a_tree():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_top_level_packages_import_each_other_without_a_loop():
    graph = _package_graph()
    assert _cycle(graph) is None, f"package import loop: {' -> '.join(_cycle(graph) or [])}"
    assert "world" in graph["clients"] and "world" in graph["exporters"]  # the shared, torch-free home


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_what_its_side_must_not(path):
    pkg = path.relative_to(ROOT).parts[0]
    bad = _imported_tops(path) & FORBIDDEN.get(pkg, set())
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_module_is_over_400_lines():
    tests = sorted((ROOT / "tests").rglob("*.py"))
    long = {
        str(p.relative_to(ROOT)): n
        for p in [*_modules(), *tests]
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
