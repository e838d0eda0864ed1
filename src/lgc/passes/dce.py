"""Dead-code elimination: drop nodes whose outputs no output needs (impure nodes stay only if
used: an unused random draw has no observable effect)."""

from __future__ import annotations

from ..ir.core import Graph


def eliminate_dead_code(g: Graph) -> Graph:
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    return Graph(g.name, g.inputs, kept[::-1], g.outputs)
