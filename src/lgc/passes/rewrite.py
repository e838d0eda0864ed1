"""The one graph-rewriting walk the passes share.

`rewrite(g, fn)` visits nodes in order with their inputs already substituted. `fn(node, b)`
returns None to keep the node, or one replacement value per output; it may emit new nodes with
the builder `b`, which appends them in place. Nodes whose inputs did not change are reused, so
an unchanged graph shares every node with its input.
"""

from __future__ import annotations

from collections.abc import Callable

from ..ir.core import Builder, Graph, Node, Value

Rule = Callable[[Node, Builder], "list[Value] | None"]


def rewrite(g: Graph, fn: Rule) -> Graph:
    out = Graph(g.name, g.inputs, (), ())
    b = Builder(out)
    sub: dict[Value, Value] = {}
    for n in g.nodes:
        original = n.outputs
        inputs = tuple(sub.get(v, v) for v in n.inputs)
        if inputs != n.inputs:
            n = Node(n.op, inputs, n.attrs, [o.type for o in n.outputs], n.prov)
        with b.provenance(n.prov):
            replacement = fn(n, b)
        if replacement is None:
            out.nodes.append(n)
            replacement = list(n.outputs)
        for old, new in zip(original, replacement):
            assert old.type == new.type, (n.op.name, old.type, new.type)
            if new is not old:
                sub[old] = new
    out.outputs = [sub.get(v, v) for v in g.outputs]
    return out
