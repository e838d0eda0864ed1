"""Elementwise fusion: producer -> consumer chains of fusible ops over the same iteration space
become one `fused` node (several outputs when members are used outside the group).

A node joins the group of one of its producers when their output shapes agree and joining
cannot create a cycle (no other input of the node depends on that group). Small constants that
feed a group become its inputs; the backends pass scalars to kernels as arguments.
"""

from __future__ import annotations

from ..ir.core import Graph, Node, Value
from ..ir.types import TensorType


class _Group:
    def __init__(self, gid: int, first: Node):
        self.id = gid
        self.nodes = [first]
        self.shape = first.outputs[0].shape


def _fusible(n: Node) -> bool:
    return n.op.fusible and len(n.outputs) == 1


def fuse_elementwise(g: Graph) -> Graph:
    group_of: dict[Node, _Group] = {}
    deps: dict[Value, frozenset[int]] = {}  # groups each value transitively depends on
    groups: list[_Group] = []
    for n in g.nodes:
        in_deps = frozenset().union(*(deps.get(v, frozenset()) for v in n.inputs))
        joined = None
        if _fusible(n):
            for v in n.inputs:
                p = v.producer
                grp = group_of.get(p) if p is not None else None
                if grp is None or grp.shape != n.outputs[0].shape:
                    continue
                others = [u for u in n.inputs if u.producer not in grp.nodes]
                if any(grp.id in deps.get(u, frozenset()) for u in others):
                    continue
                joined = grp
                break
            if joined is None:
                joined = _Group(len(groups), n)
                groups.append(joined)
            else:
                joined.nodes.append(n)
            group_of[n] = joined
            in_deps = in_deps | {joined.id}
        for o in n.outputs:
            deps[o] = in_deps
    used_outside = _uses_outside(g, group_of)
    # units: each group, or a single unfused node, in order of first appearance
    units: list[list[Node]] = []
    unit_of: dict[Node, int] = {}
    for n in g.nodes:
        grp = group_of.get(n)
        if grp is not None and grp.nodes[0] is not n:
            unit_of[n] = unit_of[grp.nodes[0]]
            continue
        unit_of[n] = len(units)
        units.append(grp.nodes if grp is not None else [n])
    sub: dict[Value, Value] = {}
    nodes: list[Node] = []
    for k in _unit_order(units, unit_of):
        members = units[k]
        if group_of.get(members[0]) is not None:
            nodes.append(_build(members, used_outside, sub))
            continue
        (n,) = members
        if any(v in sub for v in n.inputs):
            new = Node(n.op, [sub.get(v, v) for v in n.inputs], n.attrs,
                       [o.type for o in n.outputs], n.prov)
            sub.update(zip(n.outputs, new.outputs))
            n = new
        nodes.append(n)
    return Graph(g.name, g.inputs, nodes, [sub.get(v, v) for v in g.outputs])


def _unit_order(units: list[list[Node]], unit_of: dict[Node, int]) -> list[int]:
    """Units in dependency order, keeping the original order where possible."""
    done: set[int] = set()
    order: list[int] = []
    for k0 in range(len(units)):
        stack = [(k0, False)]
        while stack:
            k, expanded = stack.pop()
            if k in done:
                continue
            if expanded:
                done.add(k)
                order.append(k)
                continue
            stack.append((k, True))
            for m in units[k]:
                for v in m.inputs:
                    p = v.producer
                    j = unit_of.get(p) if p is not None else None
                    if j is not None and j != k and j not in done:
                        stack.append((j, False))
    return order


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
    prov = group[-1].prov
    fused = Node(get_op("fused"), [sub.get(v, v) for v in inputs], attrs,
                 [TensorType(v.dtype, shape, v.fmt) for v in outs], prov)
    for old, new in zip(outs, fused.outputs):
        sub[old] = new
    return fused
