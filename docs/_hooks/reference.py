"""MkDocs hook: renders the reference pages from the code at build time, so they cannot drift.

A page asks for a generated section with an HTML comment on a line of its own::

    <!-- reference: cli -->              the `percept` command tree (cli_reference.py)
    <!-- reference: head-spec -->        the head spec schema (head_spec_reference.py)
    <!-- reference: tensor-contract -->  the tensor contract (contract_reference.py)

Named in mkdocs.yml ``hooks:``; MkDocs puts this folder on sys.path while it loads the hook, and the
repository root is put there for the project's packages.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_MARK = re.compile(r"^<!-- reference: ([a-z-]+) -->$", re.MULTILINE)
_ROOT = Path(__file__).resolve().parents[2]
_cache: dict[str, str] = {}


def _render(name: str) -> str:
    import cli_reference
    import contract_reference
    import head_spec_reference

    renderers = {
        "cli": cli_reference.render,
        "head-spec": head_spec_reference.render,
        "tensor-contract": lambda: contract_reference.render(_ROOT),
    }
    if name not in renderers:
        raise ValueError(f"unknown generated reference {name!r}: one of {', '.join(renderers)}")
    if name not in _cache:
        _cache[name] = renderers[name]()
    return _cache[name]


def on_config(config, **kwargs):
    for path in (str(_ROOT), str(Path(__file__).parent)):
        if path not in sys.path:
            sys.path.insert(0, path)
    _cache.clear()
    return config


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    return _MARK.sub(lambda m: _render(m.group(1)), markdown)
