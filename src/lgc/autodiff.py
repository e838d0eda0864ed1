"""Reverse-mode automatic differentiation as a graph transformation.

`backward` walks the nodes between the inputs `xs` and the output `y` in reverse order, asks
each op for its VJP rule, and accumulates cotangents. Every rule emits ordinary IR through the
builder, so the gradient is more graph: it is printed, optimized and compiled like the forward,
and can be differentiated again. No tape, and no op is named here.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ir.core import Builder, Graph, Node, Value
from .ir.types import is_float


def _between(nodes: Sequence[Node], y: Value, xs: Sequence[Value]) -> list[Node]:
    """The differentiable nodes on some path from an x to y, in execution order."""
    needed: set[Value] = {y}
    upstream: list[Node] = []
    for n in reversed(nodes):
        if any(o in needed for o in n.outputs):
            upstream.append(n)
            needed.update(n.inputs)
    depends: set[Value] = set(xs)
    path = []
    for n in reversed(upstream):
        if n.op.differentiable and any(v in depends for v in n.inputs):
            path.append(n)
            depends.update(o for o in n.outputs if is_float(o.dtype))
    return path


def backward(b: Builder, y: Value, xs: Sequence[Value], ct_y: Value | None = None) -> list[Value]:
    """Emit the gradient of scalar-like `y` with respect to each of `xs`; returns their values.

    `ct_y` is the output cotangent (ones when omitted). An x that y does not depend on gets
    zeros.
    """
    start = len(b.graph.nodes)
    path = _between(b.graph.nodes[:start], y, xs)
    if ct_y is None:
        ct_y = b.emit("fill", value=1.0, dtype=y.dtype, shape=y.shape, fmt=y.fmt)
    cts: dict[Value, Value] = {y: ct_y}
    for n in reversed(path):
        out_cts = [cts.get(o) for o in n.outputs]
        if all(c is None for c in out_cts):
            continue
        with b.provenance(f"vjp({n.prov})" if n.prov else f"vjp({n.op.name})"):
            in_cts = n.op.vjp(b, n, out_cts)
            for v, g in zip(n.inputs, in_cts):
                if g is None or not is_float(v.dtype):
                    continue
                cts[v] = b.add(cts[v], g) if v in cts else g
    grads = [b.relabel(cts[x], x.fmt) if x in cts else b.zeros_like(x) for x in xs]
    _prune(b.graph, start, grads)
    return grads


def _prune(g: Graph, start: int, keep: list[Value]) -> None:
    """Drop the nodes emitted since `start` that no gradient uses (VJP rules emit the partials
    of every input, needed or not), so traced programs stay readable."""
    live = set(keep)
    kept = []
    for n in reversed(g.nodes[start:]):
        if any(o in live for o in n.outputs):
            kept.append(n)
            live.update(n.inputs)
    g.nodes[start:] = kept[::-1]


def grad_graph(g: Graph, wrt: Sequence[int], of: int = 0) -> Graph:
    """A new graph with the same inputs whose outputs are g's outputs followed by the
    gradient of output `of` with respect to each input index in `wrt`."""
    out = Graph(f"grad_{g.name}", g.inputs, g.nodes, g.outputs)
    b = Builder(out)
    grads = backward(b, g.outputs[of], [g.inputs[i] for i in wrt])
    out.outputs = list(g.outputs) + grads
    return out
