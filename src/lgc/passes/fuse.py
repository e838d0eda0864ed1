"""Elementwise fusion: producer -> consumer chains of fusible ops over the same iteration space
become one `fused` node (several outputs when members are used outside the group).

A node joins the group of one of its producers when their output shapes agree and its other
inputs exist before the group starts; identity ops (relabel, stop_gradient) only join groups.
Small constants that feed a group become its inputs; backends pass scalars to kernels as
arguments, never as literals, so one kernel serves every constant value.
"""

from __future__ import annotations

from ..ir.core import Graph, Node, Value
from ..ir.types import TensorType


class _Group:
    def __init__(self, first: Node, position: int):
        self.nodes = [first]
        self.start = position
        self.shape = first.outputs[0].shape


def _fusible(n: Node) -> bool:
    return n.op.fusible and len(n.outputs) == 1


def fuse_elementwise(g: Graph) -> Graph:
    """Group fusible nodes; each group runs as one node at the position of its first member.

    A node joins a producer's group only when every other input is defined before that
    group's first member, so the fused node can take the first member's place and the order
    stays valid with no cycle. When its inputs come from several groups, they merge into the
    earliest one if everything they read exists before it starts; otherwise the node joins the
    group started last that it can.
    """
    # input-free pure nodes (constants, fills) move to the top: any group may use them
    hoisted = [n for n in g.nodes if not n.inputs and n.op.pure]
    rest = [n for n in g.nodes if n.inputs or not n.op.pure]
    position: dict[Node, int] = {n: i for i, n in enumerate(hoisted + rest)}
    position.update((n, -1) for n in hoisted)
    group_of: dict[Node, _Group] = {}

    def ready(p: Node | None) -> int:
        # where a value exists: a group's members all run at its first member's place
        if p is None:
            return -1
        grp = group_of.get(p)
        return grp.start if grp is not None else position[p]

    for n in rest:
        i = position[n]
        if not _fusible(n):
            continue
        shape = n.outputs[0].shape
        candidates = {id(grp): grp for v in n.inputs
                      if (grp := group_of.get(v.producer)) is not None and grp.shape == shape}
        joined = _merge(list(candidates.values()), n, ready, position, group_of)
        for grp in sorted(candidates.values(), key=lambda c: -c.start):
            if joined is not None:
                break
            if all(v.producer in grp.nodes or ready(v.producer) < grp.start
                   for v in n.inputs):
                joined = grp
        if joined is None and not n.op.alias:
            joined = _Group(n, i)
        if joined is not None:
            if joined.nodes[0] is not n:
                joined.nodes.append(n)
            group_of[n] = joined
    used_outside = _uses_outside(g, group_of)
    sub: dict[Value, Value] = {}
    nodes: list[Node] = []
    for n in hoisted + rest:
        grp = group_of.get(n)
        if grp is not None:
            if grp.nodes[0] is n:
                nodes.append(_build(grp.nodes, used_outside, sub))
            continue
        if any(v in sub for v in n.inputs):
            new = Node(n.op, [sub.get(v, v) for v in n.inputs], n.attrs,
                       [o.type for o in n.outputs], n.prov)
            sub.update(zip(n.outputs, new.outputs))
            n = new
        nodes.append(n)
    return Graph(g.name, g.inputs, nodes, [sub.get(v, v) for v in g.outputs])


def _merge(groups: list[_Group], n: Node, ready, position: dict[Node, int],
           group_of: dict[Node, _Group]) -> _Group | None:
    """Merge `groups` (all feeding `n`) into the earliest, when every value their members and
    `n` read from outside them is defined before it starts; the merged group, or None."""
    if len(groups) < 2:
        return None
    groups = sorted(groups, key=lambda c: c.start)
    first = groups[0]
    members = {m for grp in groups for m in grp.nodes}
    readers = [*members, n]
    if not all(v.producer in members or ready(v.producer) < first.start
               for m in readers for v in m.inputs):
        return None
    first.nodes = sorted(members, key=position.__getitem__)
    for m in first.nodes:
        group_of[m] = first
    return first


def _uses_outside(g: Graph, group_of: dict[Node, _Group]) -> set[Value]:
    used = set(g.outputs)
    for n in g.nodes:
        for v in n.inputs:
            p = v.producer
            if p in group_of and group_of.get(n) is not group_of[p]:
                used.add(v)
    return used


def _build(group: list[Node], used_outside: set[Value], sub: dict[Value, Value]) -> Node:
    from ..ops.base import get_op

    members = set(group)
    inputs: list[Value] = []
    refs: dict[Value, int] = {}
    for m in group:
        for v in m.inputs:
            if v.producer not in members and v not in refs:
                refs[v] = len(inputs)
                inputs.append(v)
    body = []
    for m in group:
        operand_refs = tuple(refs[v] for v in m.inputs)
        refs[m.outputs[0]] = len(inputs) + len(body)
        body.append((m.op.name, operand_refs, tuple(sorted(m.attrs.items()))))
    outs = [m.outputs[0] for m in group if m.outputs[0] in used_outside]
    shape = group[0].outputs[0].shape
    attrs = {"body": tuple(body), "results": tuple(refs[v] for v in outs),
             "shape": shape, "types": tuple((v.dtype, v.fmt) for v in outs)}
    prov = group[0].prov  # the kernel runs where its first member was
    fused = Node(get_op("fused"), [sub.get(v, v) for v in inputs], attrs,
                 [TensorType(v.dtype, shape, v.fmt) for v in outs], prov)
    for old, new in zip(outs, fused.outputs):
        sub[old] = new
    return fused
