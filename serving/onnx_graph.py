"""Appending nodes to an existing ONNX graph (``onnx`` imported lazily): the one helper behind every
graph this project composes around a network (serving.frame_graph, exporters' import-onnx)."""

from __future__ import annotations

from typing import Any

import numpy as np


class GraphBuilder:
    """Appends nodes with fresh names (under ``prefix``) to an ONNX graph."""

    def __init__(self, graph, prefix: str = "percept") -> None:
        self.graph = graph
        self.prefix = prefix
        self.count = 0
        # the file's own names, so that a fresh name never collides with one of them
        self.taken = {n for node in graph.node for n in (*node.input, *node.output, node.name)}
        self.taken |= {t.name for t in (*graph.initializer, *graph.input, *graph.output)}

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def ints(self, *values: int) -> str:
        """An int64 [len(values)] constant (shape arithmetic)."""
        return self.const(np.array(values, np.int64), "i")

    def fresh(self, hint: str) -> str:
        self.count += 1
        name = f"{self.prefix}/{hint}_{self.count}"
        return self.fresh(hint) if name in self.taken else name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        return self.ops(op_type, inputs, 1, [out] if out else None, **attrs)[0]

    def ops(
        self, op_type: str, inputs: list[str], n_out: int, outs: list[str] | None = None, **attrs: Any
    ) -> list[str]:
        """A node with ``n_out`` outputs (``outs`` names them)."""
        from onnx import helper

        outs = outs or [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.graph.node.append(helper.make_node(op_type, inputs, outs, name=self.fresh(op_type), **attrs))
        return outs


def rename_everywhere(graph, old: str, new: str) -> None:
    """Rename a tensor in every node, graph input/output/value_info and initializer."""
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for coll in (graph.input, graph.output, graph.value_info):
        for vi in coll:
            if vi.name == old:
                vi.name = new
    for init in graph.initializer:
        if init.name == old:
            init.name = new


def tensor_attr(value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(value)
