"""Kernel source generation: text for Numba, from what the ops declare.

A fused elementwise kernel loads each operand, runs the members' scalar templates and stores
the results; scalars arrive as 1-element arrays read once. Kernels are specialized on rank and
dtype by Numba, never on sizes: the same source serves every batch size. A reduction kernel
works on an (A, B, C, D, E) view and reduces B and D. Every kernel takes (t, T) last and does
the t-th of T parts of its outer loop, so one source serves any thread count (threads.py).
"""

from __future__ import annotations

import re

from ...ir.core import Node
from ...ops.base import get_op

__all__ = ["emit_fused", "emit_fused_reduce", "emit_reduce", "operand_loads", "scalar_reads"]


def scalar_reads(kinds: list[str]) -> tuple[list[str], list[str]]:
    """Lines reading each scalar operand once, and every operand's name in the scalar body."""
    lines = [f"    s{k} = a{k}[0]" for k, kind in enumerate(kinds) if kind == "scalar"]
    return lines, [f"s{k}" if kind == "scalar" else f"x{k}" for k, kind in enumerate(kinds)]


def operand_loads(kinds: list[str], nd: int, indent: str) -> list[str]:
    """Lines loading each array operand at the loop indices i0..i{nd-1} (0 on broadcast dims)."""
    idx = ", ".join(f"i{d}" for d in range(nd))
    lines = []
    for k, kind in enumerate(kinds):
        if kind == "full":
            lines.append(f"{indent}x{k} = a{k}[{idx}]")
        elif kind != "scalar":
            sub = ", ".join(f"i{d}" if c == "i" else "0" for d, c in enumerate(kind))
            lines.append(f"{indent}x{k} = a{k}[{sub}]")
    return lines


def emit_fused(node: Node, kinds: list[str], nd: int, threads: int) -> str:
    """Source of `kernel(outs..., ins..., t, T)` for a fused node.

    `kinds[k]` says how input k is read: "scalar" (a 1-element array read once), "full" (an
    array of the iteration shape, indexed like the outputs), or a broadcast pattern such as
    "i0" / "0i" (an array of the iteration rank whose size-1 dims, marked 0, are indexed at 0).
    `nd` is the loop depth: 1 when every array is full and contiguous (flat loop). With
    `threads` > 1 the outer loop runs the t-th of T parts, its index unsigned so that LLVM
    still drops the negative-index checks (it does for a loop from 0: 2x, measured)."""
    outs = [f"o{k}" for k in range(len(node.outputs))]
    ins = [f"a{k}" for k in range(len(node.inputs))]
    idx = ", ".join(f"i{d}" for d in range(nd))
    lines = [f"def kernel({', '.join(outs + ins)}, t, T):"]
    reads, names = scalar_reads(kinds)
    lines += reads
    if threads > 1:
        lines.append("    n0 = o0.shape[0]")
    indent = "    "
    for d in range(nd):
        span = f"o0.shape[{d}]"
        if d == 0 and threads > 1:
            span = "np.uint64(t * n0 // T), np.uint64((t + 1) * n0 // T)"
        lines.append(f"{indent}for i{d} in range({span}):")
        indent += "    "
    lines += operand_loads(kinds, nd, indent)
    body, results = node.op.scalar_code(node, names)
    lines += [indent + ln for ln in body]
    lines += [f"{indent}{o}[{idx}] = {r}" for o, r in zip(outs, results)]
    lines.append("    return 0")
    return "\n".join(lines) + "\n"


def _update(update: str, acc: str, v: str) -> str:
    """A reduction's update expression (`acc`, `v` as in `OpDef.reduce`) on the given names."""
    return re.sub(r"\bv\b", v, re.sub(r"\bacc\b", acc, update))


def emit_fused_reduce(node: Node, kinds: list[str], threads: int) -> str:
    """Source of `kernel(outs..., reds..., ins..., nb, nd, t, T)` for a fused node with
    reductions (passes/fuse_reduce.py): every array viewed as (B, C, D), outs (B, C, D), reds
    (C,), `kinds` "scalar" or a 3-letter broadcast pattern over (B, C, D). Thread t owns the
    t-th part of C: it walks B in order (memory in order) and keeps float64 accumulators for
    its C entries; each contiguous D run sums in a register first."""
    reds = node.attrs["reductions"]
    n_out = len(node.outputs) - len(reds)
    outs = [f"o{k}" for k in range(n_out)]
    accs = [f"r{k}" for k in range(len(reds))]
    ins = [f"a{k}" for k in range(len(node.inputs))]
    lines = [f"def kernel({', '.join(outs + accs + ins)}, nb, nd, t, T):"]
    reads, names = scalar_reads(kinds)
    lines += reads
    lines.append(f"    C = {accs[0]}.shape[0]")
    lines.append("    c0, c1 = " + ("t * C // T, (t + 1) * C // T" if threads > 1 else "0, C"))
    updates = [get_op(name).reduce for name, _, _, _ in reds]
    lines += [f"    acc{k} = np.full(c1 - c0, {init})" for k, (init, _) in enumerate(updates)]
    lines += ["    for i0 in range(nb):", "        for i1 in range(c0, c1):"]
    lines += [f"            run{k} = {init}" for k, (init, _) in enumerate(updates)]
    lines.append("            for i2 in range(nd):")
    indent = " " * 16
    lines += operand_loads(kinds, 3, indent)
    body, results = node.op.scalar_code(node, names)
    lines += [indent + ln for ln in body]
    lines += [f"{indent}{o}[i0, i1, i2] = {r}" for o, r in zip(outs, results)]
    n_in = len(node.inputs)
    for k, (_, ref, _, _) in enumerate(reds):
        v = names[ref] if ref < n_in else f"t{ref - n_in}"
        lines.append(f"{indent}run{k} = " + _update(updates[k][1], f"run{k}", v))
    for k in range(len(reds)):  # a run's partial result joins the total by the same update
        total = f"acc{k}[i1 - c0]"
        lines.append(f"            {total} = " + _update(updates[k][1], total, f"run{k}"))
    lines.append("    for i1 in range(c0, c1):")
    lines += [f"        {a}[i1] = acc{k}[i1 - c0]" for k, a in enumerate(accs)]
    lines.append("    return 0")
    return "\n".join(lines) + "\n"


def emit_reduce(init: str, update: str, threads: int) -> str:
    """Source of `kernel(out, x, t, T)` for x viewed as (A, B, C, D, E) and out as (A, C, E):
    out reduces B and D. Kept and reduced axes may interleave (batch norm's statistics keep C
    of (S, C, N)), so no transposed copy is ever made. With E == 1 the accumulator is a
    register and the contiguous D loop vectorizes (compiled with reassociation allowed);
    otherwise the contiguous E loop updates a row of out in place. Thread t of T takes the
    t-th part of the A·C rows."""
    reg = _update(update, "acc", "x[a, b, c, d, 0]")
    row = _update(update, "out[a, c, e]", "x[a, b, c, d, e]")
    return (
        "def kernel(out, x, t, T):\n"
        "    B, C, D, E = x.shape[1], x.shape[2], x.shape[3], x.shape[4]\n"
        "    rows = x.shape[0] * C\n"
        + ("    for ac in range(t * rows // T, (t + 1) * rows // T):\n" if threads > 1 else
           "    for ac in range(rows):\n") +
        "        a = ac // C\n"
        "        c = ac - a * C\n"
        "        if E == 1:\n"
        f"            acc = {init}\n"
        "            for b in range(B):\n"
        "                for d in range(D):\n"
        f"                    acc = {reg}\n"
        "            out[a, c, 0] = acc\n"
        "        else:\n"
        "            for e in range(E):\n"
        f"                out[a, c, e] = {init}\n"
        "            for b in range(B):\n"
        "                for d in range(D):\n"
        "                    for e in range(E):\n"
        f"                        out[a, c, e] = {row}\n"
        "    return 0\n"
    )
