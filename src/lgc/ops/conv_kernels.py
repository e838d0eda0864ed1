"""Numba lowerings of the convolution family and padding (see `OpDef.lower_numba`).

Every spatial geometry (rank, stride, dilation, padding) becomes an int64 table built once per
executable from the static shapes: tab[o, k] = the flat input position window o reads at
kernel offset k, or -1 in the padding. Kernels see x as (S, C, N) and y as (O, C, N), so one
source serves every rank and size; the batch N is innermost and contiguous in every array.
"""

from __future__ import annotations

import numpy as np

from ..ir.types import np_dtype
from .base import Lowering, loop_for
from .conv import _source_index, out_size


def window_table(in_sizes, kernel, stride, dilation, padding) -> np.ndarray:
    """(O, K) int64: flat input position of output o at kernel offset k (row-major), −1 when
    it falls in the padding."""
    tab, ok = np.zeros((1, 1), np.int64), np.ones((1, 1), bool)
    for n, k, s, dl, p in zip(in_sizes, kernel, stride, dilation, padding):
        o = out_size(n, k, s, dl, p)
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * dl - p[0]
        shape = (tab.shape[0] * o, tab.shape[1] * k)
        tab = (tab[:, None, :, None] * n + pos[None, :, None, :]).reshape(shape)
        ok = (ok[:, None, :, None] & ((pos >= 0) & (pos < n))[None, :, None, :]).reshape(shape)
    return np.where(ok, tab, -1)


def inverse_table(tab: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR transpose of a table of sources in [0, n) (−1 skipped): entries ent[ptr[s]:ptr[s+1]]
    are the flat table positions that read source s, ascending, so adjoints gather race-free."""
    flat = tab.ravel()
    pos = np.nonzero(flat >= 0)[0]
    src = flat[pos]
    ptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=ptr[1:])
    return ptr, pos[np.argsort(src, kind="stable")].astype(np.int64)


def _geometry(x_sizes, w, node) -> tuple:
    """(tab, S, O, K, ci, co, g) for a conv-family node; w is (k..., ci, co, g)."""
    a = node.attrs
    d = len(x_sizes)
    tab = window_table(x_sizes, w[:d], a["stride"], a["dilation"], a["padding"])
    return (tab, int(np.prod(x_sizes)), tab.shape[0], tab.shape[1], *w[d:])


# The GEMMs run in `call` through np.matmul with out= on scratch allocated once per lowering;
# the copies around them are serial Numba loops (they are memory-bound, and threads of our own
# next to OpenBLAS's oversubscribe this machine's cores: measured slower). Forward and input
# gradient use the batched layout col (O, g, K·ci, N): x at one window position is a contiguous
# (ci, N) block, so the copy moves whole blocks and the GEMM output is y itself, untransposed.
# Measured against a direct-loop kernel and a (K·ci, O·N) im2col with one big GEMM, on LeNet
# and CNN shapes: this layout won on every one.

_IM2COL = """def kernel(col, x, tab):
    G, N = col.shape[1], x.shape[2]
    ci = x.shape[1] // G
    for o in range(tab.shape[0]):
        for k in range(tab.shape[1]):
            s = tab[o, k]
            for g in range(G):
                for i in range(ci):
                    r = col[o, g, k * ci + i]
                    if s < 0:
                        for n in range(N):
                            r[n] = 0
                    else:
                        xr = x[s, g * ci + i]
                        for n in range(N):
                            r[n] = xr[n]
    return 0
"""

# x̄[s] = Σ col[o, k] over the windows (o, k) that read s: a gather through the CSR transpose
_COL2IM = """def kernel(xb, col, ptr, ent, K):
    G, N = col.shape[1], xb.shape[2]
    ci = xb.shape[1] // G
    for s in range(xb.shape[0]):
        for c in range(xb.shape[1]):
            for n in range(N):
                xb[s, c, n] = 0
        for e in range(ptr[s], ptr[s + 1]):
            o = ent[e] // K
            k = ent[e] - o * K
            for g in range(G):
                for i in range(ci):
                    xr = xb[s, g * ci + i]
                    cr = col[o, g, k * ci + i]
                    for n in range(N):
                        xr[n] += cr[n]
    return 0
"""

# The weight gradient contracts over (o, n). Output positions are cut into chunks of B whose
# im2col block col (K·ci, B·N) and gradient block gt (co, B·N) stay in cache; one GEMM per
# chunk and group accumulates into the thread's partial sum, and threads take chunks in turn.
# The GEMM runs inside the kernel (Numba calls BLAS), so threads and BLAS never compete.
_WEIGHTS = """def kernel(dw, part, prod, col, gt, x, gy, tab):
    O, K = tab.shape
    T, G, KC, co = part.shape
    N = x.shape[2]
    ci = x.shape[1] // G
    B = col.shape[2] // N
    chunks = (O + B - 1) // B
    for t in LOOP(T):
        part[t] = 0
        for ch in range(t, chunks, T):
            for g in range(G):
                for j in range(B):
                    o = ch * B + j
                    for k in range(K):
                        s = tab[o, k] if o < O else -1
                        for i in range(ci):
                            r = col[t, k * ci + i]
                            if s < 0:
                                for n in range(N):
                                    r[j * N + n] = 0
                            else:
                                xr = x[s, g * ci + i]
                                for n in range(N):
                                    r[j * N + n] = xr[n]
                    for c in range(co):
                        r = gt[t, c]
                        if o < O:
                            yr = gy[o, g * co + c]
                            for n in range(N):
                                r[j * N + n] = yr[n]
                        else:
                            for n in range(N):
                                r[j * N + n] = 0
                np.dot(col[t], gt[t].T, prod[t])
                part[t, g] += prod[t]
    for r in range(KC):
        for c in range(co):
            for g in range(G):
                acc = part[0, g, r, c]
                for t in range(1, T):
                    acc += part[t, g, r, c]
                dw[r, c, g] = acc
    return 0
"""

CHUNK_COLUMNS, CHUNK_ELEMENTS = 1024, 1 << 18


def _chunk(o: int, n: int, rows: int) -> int:
    """Output positions per chunk: about CHUNK_COLUMNS GEMM columns, a block of at most
    CHUNK_ELEMENTS (1 MB of float32) so it stays in cache, never more than there are."""
    return max(1, min(o, -(-CHUNK_COLUMNS // n), CHUNK_ELEMENTS // max(1, rows * n)))


def _threads(work: int) -> int:
    """How many chunk streams a conv kernel runs: Numba's threads when the work pays for them."""
    if loop_for(work) == "range":
        return 1
    import numba

    return numba.get_num_threads()


def _grouped(w: np.ndarray, kci: int, co: int, g: int, perm, scratch: np.ndarray) -> np.ndarray:
    """The weights as per-group matrices, (K·ci, co, g) permuted by `perm`: a view when there
    is one group (BLAS takes it transposed), else copied into `scratch`."""
    m = w.reshape(kci, co, g).transpose(perm)
    if g == 1:
        return m
    np.copyto(scratch, m)
    return scratch


def _lower_conv(node):
    x, w = node.inputs
    d, dt = w.ndim - 3, np_dtype(node.outputs[0].dtype)
    tab, _, o, k, ci, co, g = _geometry(x.shape[:d], w.shape, node)
    n = x.shape[-1]
    col, wt = np.empty((o, g, k * ci, n), dt), np.empty((g, co, k * ci), dt)
    xs, ys = (-1, ci * g, n), (o, g, co, n)

    def call(kernel, ins, outs):
        kernel(col, ins[0].reshape(xs), tab)
        m = _grouped(ins[1], k * ci, co, g, (2, 1, 0), wt)
        y = outs[0].reshape(ys)
        for j in range(g):
            np.matmul(m[j], col[:, j], out=y[:, j])
    return Lowering(call, _IM2COL)


def _lower_conv_backward_input(node):
    gy, w = node.inputs
    dt = np_dtype(node.outputs[0].dtype)
    tab, s, o, k, ci, co, g = _geometry(node.attrs["in_size"], w.shape, node)
    ptr, ent = inverse_table(tab, s)
    n = gy.shape[-1]
    col, wk = np.empty((o, g, k * ci, n), dt), np.empty((g, k * ci, co), dt)
    xs, ys = (s, ci * g, n), (o, g, co, n)

    def call(kernel, ins, outs):
        m = _grouped(ins[1], k * ci, co, g, (2, 0, 1), wk)
        gv = ins[0].reshape(ys)
        for j in range(g):
            np.matmul(m[j], gv[:, j], out=col[:, j])
        kernel(outs[0].reshape(xs), col, ptr, ent, k)
    return Lowering(call, _COL2IM)


def _lower_conv_backward_weights(node):
    x, gy = node.inputs
    a, dt = node.attrs, np_dtype(node.outputs[0].dtype)
    kernel_shape, g = a["kernel"], a["groups"]
    d = len(kernel_shape)
    ci, co = x.shape[d] // g, gy.shape[d] // g
    tab, _, o, k, *_ = _geometry(x.shape[:d], (*kernel_shape, ci, co, g), node)
    n = x.shape[-1]
    b = _chunk(o, n, k * ci)
    t = _threads(o * n * k * ci * g)
    part, prod = np.empty((t, g, k * ci, co), dt), np.empty((t, k * ci, co), dt)
    col, gt = np.empty((t, k * ci, b * n), dt), np.empty((t, co, b * n), dt)
    xs, ys, ws = (-1, ci * g, n), (o, co * g, n), (k * ci, co, g)

    def call(kernel, ins, outs):
        kernel(outs[0].reshape(ws), part, prod, col, gt, ins[0].reshape(xs), ins[1].reshape(ys),
               tab)
    return Lowering(call, _WEIGHTS.replace("LOOP", "prange" if t > 1 else "range"))


# y[j] = x[tab[j]] (rows of the trailing block), `value` where tab[j] < 0
_GATHER_ROWS = """def kernel(y, x, tab, value):
    for j in LOOP(y.shape[0]):
        s = tab[j]
        if s < 0:
            for r in range(y.shape[1]):
                y[j, r] = value
        else:
            for r in range(y.shape[1]):
                y[j, r] = x[s, r]
    return 0
"""

# y[s] = Σ x[j] over the table positions j that read s (the adjoint of a row gather)
_SUM_ROWS = """def kernel(y, x, ptr, ent):
    for s in LOOP(y.shape[0]):
        for r in range(y.shape[1]):
            y[s, r] = 0
        for e in range(ptr[s], ptr[s + 1]):
            j = ent[e]
            for r in range(y.shape[1]):
                y[s, r] += x[j, r]
    return 0
"""


def _pad_table(sizes, pads, mode) -> tuple[np.ndarray, int]:
    """(tab, lead): the flat source row of each padded row over the axes up to the last padded
    one (−1: the constant), so the axes after `lead` copy as one contiguous block."""
    lead = max((ax + 1 for ax, (a, c) in enumerate(pads) if a or c), default=0)
    tab, ok = np.zeros(1, np.int64), np.ones(1, bool)
    for n, p in zip(sizes[:lead], pads[:lead]):
        src = _source_index(n, p, mode)
        tab = (tab[:, None] * n + src[None, :]).ravel()
        ok = (ok[:, None] & (src >= 0)[None, :]).ravel()
    return np.where(ok, tab, -1), lead


def lower_pad(node) -> Lowering:
    x, a = node.inputs[0], node.attrs
    tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
    rows_in = int(np.prod(x.shape[:lead], dtype=np.int64))
    value, shape = a["value"], (tab.size, -1)

    def call(kernel, ins, outs):
        kernel(outs[0].reshape(shape), ins[0].reshape(rows_in, -1), tab, value)
    return Lowering(call, _GATHER_ROWS.replace("LOOP", loop_for(node.out.type.size)))


def lower_pad_adjoint(node) -> Lowering:
    x, a = node.outputs[0], node.attrs
    tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
    rows = int(np.prod(x.shape[:lead], dtype=np.int64))
    ptr, ent = inverse_table(tab, rows)

    def call(kernel, ins, outs):
        kernel(outs[0].reshape(rows, -1), ins[0].reshape(tab.size, -1), ptr, ent)
    return Lowering(call, _SUM_ROWS.replace("LOOP", loop_for(node.inputs[0].type.size)))
