"""Dead-code elimination: drop nodes whose outputs no output needs (impure nodes stay only if
used: an unused random draw has no observable effect), and let a node some of whose outputs
nothing reads compute less (`OpDef.prune`: an LSTM's backward kernel without its dZ)."""

from __future__ import annotations

from ..ir.core import Graph, Node, Value


def eliminate_dead_code(g: Graph) -> Graph:
    live = set(g.outputs)
    kept = []
    for n in reversed(g.nodes):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    nodes, sub = [], {}
    for n in reversed(kept):
        inputs = tuple(sub.get(v, v) for v in n.inputs)
        used = tuple(o in live for o in n.outputs)
        attrs = None if all(used) else n.op.prune(n, used)
        if attrs is not None or inputs != n.inputs:
            attrs = {**n.attrs, **(attrs or {})}
            m = Node(n.op, inputs, attrs, n.op.infer([v.type for v in inputs], **attrs), n.prov)
            sub.update(zip(n.outputs, m.outputs))
            n = m
        nodes.append(n)
    outputs: list[Value] = [sub.get(v, v) for v in g.outputs]
    return Graph(g.name, g.inputs, nodes, outputs)
