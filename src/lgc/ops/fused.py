"""The `fused` op: a group of elementwise ops over one iteration space, made by the fusion pass.

Attributes: `body`, one instruction `(op_name, operand_refs, attrs)` per member op, where a ref
k < number of inputs names an input and larger refs name earlier instructions; `results`, the
refs that are outputs; `shape`, the iteration space; `types`, (dtype, fmt) per output;
`reductions` (CPU, see passes/fuse_reduce.py), (op name, ref, op attrs, reduced axes) of each
reduction computed in the same loop, whose outputs follow the results'. The reference evaluates
the members' own `ref`s, so a fused graph means exactly what it replaced.
"""

from __future__ import annotations

import numpy as np

from ..ir.types import TensorType, np_dtype
from .base import OpDef, get_op, register


@register
class Fused(OpDef):
    """(y...) = the member ops applied in order over `shape`"""

    name = "fused"
    attrs = {"body": (), "results": (), "shape": (), "types": (), "reductions": ()}
    differentiable = False

    def infer(self, in_types, body, results, shape, types, reductions=()):
        out = [TensorType(dt, tuple(shape), fmt) for dt, fmt in types[:len(results)]]
        for (name, _, attrs, _), (dt, fmt) in zip(reductions, types[len(results):]):
            t = get_op(name).infer([TensorType(dt, tuple(shape))], **dict(attrs))[0]
            out.append(t.with_(fmt=fmt))
        return out

    def ref(self, *args, body, results, shape, types, reductions=()):
        vals = list(args)
        for name, refs, attrs in body:
            vals.append(np.asarray(get_op(name).ref(*(vals[r] for r in refs), **dict(attrs))))
        full = [np.broadcast_to(vals[r], shape) for r in results]
        full += [get_op(name).ref(np.broadcast_to(vals[r], shape), **dict(attrs))
                 for name, r, attrs, _ in reductions]
        outs = tuple(np.asarray(v).astype(np_dtype(dt)) for v, (dt, _) in zip(full, types))
        return outs if len(outs) > 1 else outs[0]

    def scalar_code(self, node, operand_names: list[str], target: str = "cpu"
                    ) -> tuple[list[str], list[str]]:
        """The body as scalar statements over `operand_names` in the spelling of `target`
        ("cpu" takes the ops' `expr_cpu` where given); returns (lines, result names)."""
        names = list(operand_names)
        lines = []
        for j, (name, refs, attrs) in enumerate(node.attrs["body"]):
            op = get_op(name)
            expr = (target == "cpu" and op.expr_cpu) or op.expr
            t = f"t{j}"
            lines.append(f"{t} = " + expr.format(*(names[r] for r in refs), **dict(attrs)))
            names.append(t)
        return lines, [names[r] for r in node.attrs["results"]]
