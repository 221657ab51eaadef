"""The head spec schema of `percept import-onnx`, rendered from exporters/export/head_spec.py.

Keys, types and defaults are the dataclasses' fields; the values a key accepts are read from the
``self.<key> not in (...)`` checks of their ``__post_init__``; a key's note is the comment on its
field's line. A key added or renamed there changes this page at the next build.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing

from md import code, escape, table


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        named = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in named)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"list of {_type_name(args[0])}s"
        return f"list of {len(args)} {_type_name(args[0])}s"
    if dataclasses.is_dataclass(tp):
        return "mapping (below)"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _choices(cls, module) -> dict[str, tuple]:
    """field -> accepted values, from ``if self.f not in (...)`` / ``not in CONSTANT`` in __post_init__."""
    post = getattr(cls, "__post_init__", None)
    if post is None:
        return {}
    tree = ast.parse(textwrap.dedent(inspect.getsource(post)))
    found: dict[str, tuple] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.NotIn)):
            continue
        left, right = node.left, node.comparators[0]
        if not (
            isinstance(left, ast.Attribute) and isinstance(left.value, ast.Name) and left.value.id == "self"
        ):
            continue
        if isinstance(right, ast.Name):
            value = getattr(module, right.id, None)
        else:
            try:
                value = ast.literal_eval(right)
            except ValueError:
                continue
        if isinstance(value, tuple):
            found[left.attr] = value
    return found


def _notes(cls) -> dict[str, str]:
    """field -> the comment on its line in the class body."""
    notes = {}
    for line in inspect.getsource(cls).splitlines():
        head, sep, comment = line.partition("  # ")
        name = head.strip().split(":")[0]
        if sep and name.isidentifier():
            notes[name] = comment.strip()
    return notes


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
        if value is None:
            return "none"
        return code(str(list(value) if isinstance(value, tuple) else value))
    return "**required**"


def _section(cls, module, prefix: str) -> str:
    hints = typing.get_type_hints(cls)
    choices, notes = _choices(cls, module), _notes(cls)
    rows = []
    for f in dataclasses.fields(cls):
        allowed = " \\| ".join(code(str(v)) for v in choices.get(f.name, ()))
        rows.append(
            (
                code(prefix + f.name),
                _type_name(hints[f.name]),
                _default(f),
                allowed,
                escape(notes.get(f.name, "")),
            )
        )
    return table(("key", "type", "default", "values", "note"), rows)


def render() -> str:
    from exporters.export import head_spec as module

    top = module.HeadSpec
    hints = typing.get_type_hints(top)
    sections = {f.name: hints[f.name] for f in dataclasses.fields(top)}
    nested = {}
    for name, tp in sections.items():
        inner = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if inner:
            nested[name] = inner[0]
    out = [
        "Rendered at build time from `exporters/export/head_spec.py` (the dataclasses `load_head_spec` "
        "fills). A key not listed here is refused with the list of known keys. A section that is absent "
        "means the model has no such head; at least one of detection, segmentation, depth is required.\n",
        "## Top level\n",
        _section(top, module, ""),
    ]
    for name, cls in nested.items():
        required = not any(a is type(None) for a in typing.get_args(sections[name]))
        out.append(f"\n## `{name}` ({'required' if required else 'optional'})\n")
        if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
            out.append(escape(cls.__doc__) + "\n")
        out.append(_section(cls, module, f"{name}."))
    doc = inspect.getdoc(module) or ""
    layouts = doc.split("Layouts, and the facts each rests on", 1)
    if len(layouts) == 2:
        out.append("\n## Layouts and the facts each rests on\n")
        out.append("From the module's own notes:\n\n```text\n" + layouts[1].lstrip(" (:").strip() + "\n```")
    return "\n".join(out) + "\n"
