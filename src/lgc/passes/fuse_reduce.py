"""Reduction fusion (CPU): a reduction of a fused kernel's output runs inside that kernel.

Batch norm's gradient sums three products of a fused kernel over S, S and B: instead of
writing each product to memory and reading it back in a reduction kernel, the fused kernel
accumulates the sums as it computes them (and no longer writes a product nobody else reads).

The fused kernel then iterates its space as (B, C, D) — reduced, kept, reduced blocks of axes,
size-1 axes anywhere — with the kept block C outermost (parallel), so each accumulator belongs
to one thread. A reduction fuses when it reduces the kernel's whole iteration shape with that
pattern, every reduction of the kernel has the same axes, and every input of the kernel reads
each block whole or not at all (a broadcast operand). The fused node's `reductions` attribute
lists (op name, body ref, op attrs, reduced axes); their outputs follow the `results`.
"""

from __future__ import annotations

from ..ir.core import Graph, Node, Value


def reduction_blocks(shape: tuple[int, ...], axes) -> tuple[list, list, list] | None:
    """The axes of `shape` in the blocks (B, C, D): reduced, kept, reduced, in order; None when
    the reduced axes are not (at most) one block on each side of the kept ones. Size-1 axes
    join whichever block they sit in."""
    blocks: tuple[list, list, list] = ([], [], [])
    at = 0
    for d, n in enumerate(shape):
        kind = 1 if d not in axes else (0 if at == 0 else 2)
        if n == 1:
            blocks[at].append(d)
            continue
        if kind < at:
            return None
        at = kind
        blocks[at].append(d)
    if all(shape[d] == 1 for d in blocks[1]):  # nothing kept: one long contiguous inner loop
        return [], [], list(range(len(shape)))
    return blocks


def operand_pattern(shape: tuple[int, ...], blocks, iteration: tuple[int, ...]) -> str | None:
    """How an operand of `shape` (right-aligned, NumPy broadcasting) reads the (B, C, D) view:
    'i' where it spans a block, '0' where it is broadcast over it; None when it does neither."""
    padded = (1,) * (len(iteration) - len(shape)) + tuple(shape)
    out = ""
    for block in blocks:
        full = all(padded[d] == iteration[d] for d in block)
        if full and any(iteration[d] != 1 for d in block):
            out += "i"
        elif all(padded[d] == 1 for d in block):
            out += "0"
        else:
            return None
    return out


def _consumers(g: Graph) -> dict[Value, list[Node]]:
    users: dict[Value, list[Node]] = {}
    for n in g.nodes:
        for v in n.inputs:
            users.setdefault(v, []).append(n)
    return users


def _fusible_reductions(f: Node, users) -> list[Node]:
    shape = f.attrs["shape"]
    found, blocks = [], None
    for v in f.outputs:
        for r in users.get(v, []):
            if r.op.reduce is None or len(r.inputs) != 1 or v.shape != shape or r in found:
                continue
            b = reduction_blocks(shape, set(r.op.reduce_axes(r)))
            if b is None or (blocks is not None and b != blocks):
                continue
            blocks = b
            found.append(r)
    if found and all(v.type.size == 1 or operand_pattern(v.shape, blocks, shape) is not None
                     for v in f.inputs):
        return found
    return []


def fuse_reductions(g: Graph) -> Graph:
    users = _consumers(g)
    plans: dict[Node, list[Node]] = {}  # fused node -> the reductions it takes in
    for n in g.nodes:
        if n.op.name == "fused" and not n.attrs.get("reductions"):
            found = _fusible_reductions(n, users)
            if found:
                plans[n] = found
    absorbed = {r for found in plans.values() for r in found}
    if not plans:
        return g
    outputs = set(g.outputs)
    sub: dict[Value, Value] = {}
    nodes = []
    for n in g.nodes:
        if n in absorbed:
            continue
        inputs = [sub.get(v, v) for v in n.inputs]
        if n in plans:
            nodes.append(_with_reductions(n, inputs, plans[n], users, outputs, sub))
        elif inputs != list(n.inputs):
            new = Node(n.op, inputs, n.attrs, [o.type for o in n.outputs], n.prov)
            sub.update(zip(n.outputs, new.outputs))
            nodes.append(new)
        else:
            nodes.append(n)
    return Graph(g.name, g.inputs, nodes, [sub.get(v, v) for v in g.outputs])


def _with_reductions(f: Node, inputs, reds: list[Node], users, outputs, sub) -> Node:
    """`f` (reading `inputs`) computing `reds` too, dropping the outputs only they read."""
    a = f.attrs
    keep = [k for k, v in enumerate(f.outputs)
            if v in outputs or any(u not in reds for u in users.get(v, []))]
    ref_of = dict(zip(f.outputs, a["results"]))
    reductions = tuple((r.op.name, ref_of[r.inputs[0]], tuple(sorted(r.attrs.items())),
                        tuple(r.op.reduce_axes(r))) for r in reds)
    types = tuple(a["types"][k] for k in keep) + tuple((r.outputs[0].dtype, r.outputs[0].fmt)
                                                      for r in reds)
    attrs = {**a, "results": tuple(a["results"][k] for k in keep), "types": types,
             "reductions": reductions}
    out_types = [f.outputs[k].type for k in keep] + [r.outputs[0].type for r in reds]
    fused = Node(f.op, inputs, attrs, out_types, f.prov)
    for k, new in zip(keep, fused.outputs):
        sub[f.outputs[k]] = new
    for r, new in zip(reds, fused.outputs[len(keep):]):
        sub[r.outputs[0]] = new
    return fused
