"""The IR verifier: checks the invariants every pass must keep, and names the node that breaks
them.

`verify(g)` raises `VerifyError` when a value is used before its definition or is not defined
in the graph at all, when a value is defined twice, when a node's attributes are missing or
unknown for its op, when a node's recorded output types differ from what the op's `infer` gives
for its inputs and attributes, or when a graph output is not defined. Each message names the
node index, the op and the provenance, so a broken pass points at the layer it mangled.
"""

from __future__ import annotations

import numpy as np

from ..errors import LgcError
from .core import Graph, Node, Value


class VerifyError(LgcError):
    """A Graph breaks an IR invariant (SSA order, types, attributes)."""


def _where(g: Graph, i: int, n: Node) -> str:
    prov = f"from {n.prov}" if n.prov else "no provenance"
    return f"verify @{g.name}: node {i} {n.op.name} ({prov})"


def _describe(v: Value) -> str:
    return f"%{v.name}" if v.name else f"value {v.type}"


def _same_attr(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        nan = a.dtype.kind == "f" and b.dtype.kind == "f"
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=nan)
    return bool(a == b)


def verify(g: Graph) -> None:
    """Check the IR invariants of `g`; raise VerifyError naming the first offending node."""
    from ..ops.base import REGISTRY

    defined: dict[Value, str] = {}
    names: set[str] = set()
    for k, v in enumerate(g.inputs):
        if v in defined:
            raise VerifyError(f"verify @{g.name}: graph input {k} {_describe(v)} is defined "
                              f"twice (it is also {defined[v]})")
        if v.name in names:
            raise VerifyError(f"verify @{g.name}: graph input {k} is named %{v.name}, like an "
                              f"earlier input; input names must be unique")
        defined[v] = f"graph input {k}"
        names.add(v.name)
    later = {o: i for i, n in enumerate(g.nodes) for o in n.outputs}
    for i, n in enumerate(g.nodes):
        where = _where(g, i, n)
        if REGISTRY.get(n.op.name) is not n.op:
            raise VerifyError(f"{where}: op {n.op.name!r} is not the registered op of that name")
        for k, v in enumerate(n.inputs):
            if v not in defined:
                if later.get(v, -1) >= i:
                    raise VerifyError(f"{where}: input {k} ({_describe(v)}) is used before its "
                                      f"definition at node {later[v]}")
                raise VerifyError(f"{where}: input {k} ({_describe(v)}) is not defined in the "
                                  f"graph")
        missing = sorted(set(n.op.attrs) - set(n.attrs))
        unknown = sorted(set(n.attrs) - set(n.op.attrs))
        if missing or unknown:
            raise VerifyError(f"{where}: attributes do not fit the op: missing {missing}, "
                              f"unknown {unknown} (expected {sorted(n.op.attrs)})")
        try:
            normal = n.op.normalize_attrs(dict(n.attrs))
        except Exception as e:  # a malformed attribute value is the graph's fault
            raise VerifyError(f"{where}: attributes are invalid: {e}") from e
        changed = [a for a in normal if not _same_attr(normal[a], n.attrs[a])]
        if changed:
            raise VerifyError(f"{where}: attributes {changed} are not in normal form "
                              f"({ {a: n.attrs[a] for a in changed} } vs "
                              f"{ {a: normal[a] for a in changed} })")
        try:
            expected = list(n.op.infer([v.type for v in n.inputs], **n.attrs))
        except Exception as e:  # whatever infer rejects, the node is malformed
            ins = ", ".join(str(v.type) for v in n.inputs)
            raise VerifyError(f"{where}: the op rejects its inputs ({ins}): {e}") from e
        recorded = [o.type for o in n.outputs]
        if recorded != expected:
            raise VerifyError(f"{where}: recorded output types "
                              f"({', '.join(map(str, recorded))}) differ from what the op infers "
                              f"({', '.join(map(str, expected))})")
        for k, o in enumerate(n.outputs):
            if o in defined:
                raise VerifyError(f"{where}: output {k} is defined twice (it is also "
                                  f"{defined[o]})")
            if o.producer is not n or o.index != k:
                raise VerifyError(f"{where}: output {k} records a different producer")
            defined[o] = f"output {k} of node {i} {n.op.name}"
    for k, v in enumerate(g.outputs):
        if v not in defined:
            origin = f" (produced by a {v.producer.op.name} node outside the graph" \
                     f"{', from ' + v.producer.prov if v.producer.prov else ''})" \
                if v.producer is not None else ""
            raise VerifyError(f"verify @{g.name}: output {k} ({_describe(v)}) is not defined "
                              f"in the graph{origin}")
