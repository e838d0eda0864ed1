"""Common-subexpression elimination: a pure node equal to an earlier one (same op, same
inputs, same attributes) is replaced by the earlier one's outputs."""

from __future__ import annotations

import numpy as np

from ..ir.core import Graph
from .rewrite import rewrite


def _attr_key(v):
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, list | tuple):
        return tuple(_attr_key(x) for x in v)
    return v


def eliminate_common_subexpressions(g: Graph) -> Graph:
    seen: dict[tuple, list] = {}

    def rule(n, b):
        if not n.op.pure:
            return None
        key = (n.op.name, tuple(v.id for v in n.inputs),
               tuple(sorted((k, _attr_key(v)) for k, v in n.attrs.items())))
        if key in seen:
            return seen[key]
        seen[key] = list(n.outputs)
        return None

    return rewrite(g, rule)
