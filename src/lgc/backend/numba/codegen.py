"""Kernel source generation: text for Numba, from what the ops declare.

A fused elementwise kernel loads each operand, runs the members' scalar templates and stores
the results; scalars arrive as 1-element arrays read once. Kernels are specialized on rank and
dtype by Numba, never on sizes: the same source serves every batch size. A reduction kernel
works on a (P, K, Q) view and reduces K. `prange` is used only when the work pays for threads.
"""

from __future__ import annotations

import re

from ...ir.core import Node
from ...ops.base import PARALLEL_MIN_ELEMENTS

__all__ = ["PARALLEL_MIN_ELEMENTS", "emit_fused", "emit_reduce"]


def emit_fused(node: Node, scalar: list[bool], flat: bool, parallel: bool) -> str:
    """Source of `kernel(outs..., ins...)` for a fused node. Non-scalar inputs arrive as
    arrays of the iteration rank (broadcast views), or 1-D when `flat`."""
    nd = 1 if flat else max(len(node.attrs["shape"]), 1)
    n_out = len(node.outputs)
    outs = [f"o{k}" for k in range(n_out)]
    ins = [f"a{k}" for k in range(len(node.inputs))]
    idx = ", ".join(f"i{d}" for d in range(nd))
    lines = [f"def kernel({', '.join(outs + ins)}):"]
    names = []
    for k, is_scalar in enumerate(scalar):
        if is_scalar:
            lines.append(f"    s{k} = a{k}[0]")
            names.append(f"s{k}")
        else:
            names.append(f"x{k}")
    indent = "    "
    for d in range(nd):
        loop = "prange" if parallel and d == 0 else "range"
        lines.append(f"{indent}for i{d} in {loop}(o0.shape[{d}]):")
        indent += "    "
    for k, is_scalar in enumerate(scalar):
        if not is_scalar:
            lines.append(f"{indent}x{k} = a{k}[{idx}]")
    body, results = node.op.scalar_code(node, names)
    lines += [indent + ln for ln in body]
    lines += [f"{indent}{o}[{idx}] = {r}" for o, r in zip(outs, results)]
    lines.append("    return 0")
    return "\n".join(lines) + "\n"


def emit_reduce(init: str, update: str, parallel: bool) -> str:
    """Source of `kernel(out, x)`: out[p, q] = reduce over k of x[p, k, q]."""
    loop = "prange" if parallel else "range"
    step = re.sub(r"\bv\b", "x[p, k, q]", re.sub(r"\bacc\b", "out[p, q]", update))
    return (
        "def kernel(out, x):\n"
        f"    for p in {loop}(x.shape[0]):\n"
        "        for q in range(x.shape[2]):\n"
        f"            out[p, q] = {init}\n"
        "        for k in range(x.shape[1]):\n"
        "            for q in range(x.shape[2]):\n"
        f"                out[p, q] = {step}\n"
        "    return 0\n"
    )
