"""Markdown helpers of the reference hook: text from the code made safe for a table cell or a paragraph."""

from __future__ import annotations

import re

_CODE = re.compile(r"(`[^`]*`)")


def escape(text: str) -> str:
    """Escape what Markdown would read as HTML or emphasis, outside `code spans`, on one line."""
    parts = _CODE.split(" ".join(text.split()))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(part)
        else:
            for ch, rep in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("*", r"\*"), ("_", r"\_")):
                part = part.replace(ch, rep)
            out.append(part)
    return "".join(out).replace("|", r"\|")


def paragraphs(text: str) -> str:
    """A docstring-like help text as Markdown paragraphs (blank lines separate them)."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    return "\n\n".join(escape(b.replace("\b", "")) for b in blocks)


def code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
