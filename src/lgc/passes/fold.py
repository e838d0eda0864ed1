"""Constant folding: a pure node whose inputs are all constants is evaluated at compile time
with the op's reference and becomes a constant, when the result is small and no larger than
its largest input."""

from __future__ import annotations

import numpy as np

from ..ir.core import Graph
from ..ops.base import constant_value
from .rewrite import rewrite

FOLD_MAX_ELEMENTS = 4096


def fold_constants(g: Graph) -> Graph:
    def rule(n, b):
        if not n.inputs or not n.op.pure:
            return None
        # never materialize an expansion (a broadcast scalar stays a scalar)
        largest_input = max(v.type.size for v in n.inputs)
        if any(o.type.size > min(FOLD_MAX_ELEMENTS, largest_input) for o in n.outputs):
            return None
        args = [constant_value(v) for v in n.inputs]
        if any(a is None for a in args):
            return None
        res = n.op.ref(*args, **n.attrs)
        res = res if isinstance(res, tuple) else (res,)
        return [b.emit("constant", value=np.asarray(r), dtype=o.dtype, fmt=o.fmt)
                for r, o in zip(res, n.outputs)]

    return rewrite(g, rule)
