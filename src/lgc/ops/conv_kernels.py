"""Numba lowerings of the convolution family and padding (see `OpDef.lower_numba`).

Every spatial geometry (rank, stride, dilation, padding) becomes an int64 table built once per
executable from the static shapes: tab[o, k] = the flat input position window o reads at
kernel offset k, or -1 in the padding. Kernels see x as (S, C, N) and y as (O, C, N), so one
source serves every rank and size; the batch N is innermost and contiguous in every array.
"""

from __future__ import annotations

import numpy as np

from ..ir.types import np_dtype
from .base import Lowering, kernel_threads
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


# Every conv kernel cuts the output positions into chunks of B whose blocks stay in cache
# (about CHUNK_COLUMNS GEMM columns, at most CHUNK_ELEMENTS): one GEMM per chunk and group runs
# inside the kernel (Numba calls BLAS, single-threaded). Thread t of T takes chunks t, t + T,
# ... with its own scratch: the runtime's pool (backend/numba/threads.py) calls the kernel once
# per thread, so threads and BLAS never compete for the cores. A chunk's GEMM columns are (j, n):
# output position ch·B + j, sample n (innermost and contiguous in every array). Positions past
# O (the last chunk) read zeros. Measured on LeNet and CNN shapes against per-position GEMMs
# on one big im2col (the layout before) and direct loops: 2-6x faster on two cores.

# col[t] (K·ci, B·N) ← x at chunk `ch`'s windows, group g
_FILL_COL = """
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
"""


# gt[t] (co, B·N) ← ȳ at chunk `ch`'s output positions, group g
_FILL_GT = """
for j in range(B):
    o = ch * B + j
    for c in range(co):
        r = gt[t, c]
        if o < O:
            yr = gy[o, g * co + c]
            for n in range(N):
                r[j * N + n] = yr[n]
        else:
            for n in range(N):
                r[j * N + n] = 0
"""

_SNIPPETS = {"FILL_COL": _FILL_COL, "FILL_GT": _FILL_GT}


def _source(template: str) -> str:
    """A chunked kernel's source, its FILL_COL / FILL_GT lines expanded at their indentation."""
    lines = []
    for line in template.splitlines():
        snippet = _SNIPPETS.get(line.strip())
        if snippet is not None:
            pad = line[:len(line) - len(line.lstrip())]
            lines += [pad + f for f in snippet.strip("\n").splitlines()]
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


# y[o, g·co + c] = W_g (co, K·ci) @ col: the product z[t] (co, B·N) is scattered into y
_FORWARD = """def kernel(y, col, z, x, w, tab, t, T):
    O, K = tab.shape
    KC, BN = col.shape[1], col.shape[2]
    G, co = w.shape[0], w.shape[1]
    N = x.shape[2]
    ci, B = x.shape[1] // G, BN // N
    chunks = (O + B - 1) // B
    for ch in range(t, chunks, T):
        for g in range(G):
            FILL_COL
            gemm(w[g], col[t], z[t])
            for j in range(min(B, O - ch * B)):
                for c in range(co):
                    yr = y[ch * B + j, g * co + c]
                    zr = z[t, c]
                    for n in range(N):
                        yr[n] = zr[j * N + n]
    return 0
"""

# x̄ = Σ over windows of W_gᵀ (K·ci, co) @ ȳ, for sparse geometries (strided: see
# DENSE_MIN_SHARE; dense ones run `_FORWARD` on the transposed table). Phase 1 forms every
# chunk's product in cols[ch, g] (K·ci, B·N); phase 2 gathers, for each input position s, the
# products of the windows (o, k) that read it (CSR transpose of the table): race-free, no
# scatter. The phases are two calls (`phase` 0 and 1): every product exists before any gather
# starts.
_INPUT = """def kernel(xb, cols, gt, gy, w, tab, ptr, ent, phase, t, T):
    O, K = tab.shape
    co, BN = gt.shape[1], gt.shape[2]
    G, KC = w.shape[0], w.shape[1]
    N = gy.shape[2]
    ci, B = xb.shape[1] // G, BN // N
    chunks = cols.shape[0]
    if phase == 0:
        for ch in range(t, chunks, T):
            for g in range(G):
                FILL_GT
                gemm(w[g], gt[t], cols[ch, g])
        return 0
    S = xb.shape[0]
    for s in range(t * S // T, (t + 1) * S // T):
        for c in range(xb.shape[1]):
            for n in range(N):
                xb[s, c, n] = 0
        for e in range(ptr[s], ptr[s + 1]):
            o = ent[e] // K
            k = ent[e] - o * K
            ch = o // B
            j = o - ch * B
            for g in range(G):
                for i in range(ci):
                    xr = xb[s, g * ci + i]
                    cr = cols[ch, g, k * ci + i]
                    for n in range(N):
                        xr[n] += cr[j * N + n]
    return 0
"""

# The weight gradient contracts over (o, n): per chunk and group col[t] @ gt[t]ᵀ, added by
# the GEMM into thread t's partial sum part[t]; the caller adds the partial sums.
_WEIGHTS = """def kernel(part, col, gt, x, gy, tab, t, T):
    O, K = tab.shape
    G, KC, co = part.shape[1], part.shape[2], part.shape[3]
    N = x.shape[2]
    ci = x.shape[1] // G
    B = col.shape[2] // N
    chunks = (O + B - 1) // B
    for g in range(G):
        for r in range(KC):
            for c in range(co):
                part[t, g, r, c] = 0
    for ch in range(t, chunks, T):
        for g in range(G):
            FILL_COL
            FILL_GT
            gemm(col[t], gt[t].T, part[t, g], 1.0)
    return 0
"""

# GEMM columns per chunk: a forward-style product (conv, and the input gradient on the
# transposed table) keeps its chunk in the first levels of cache; the weight gradient
# contracts over the columns and adds each chunk's product into a partial sum, so it takes
# longer chunks (measured on the CNN's and LeNet's convolutions, two threads: forward 1024 ->
# 128 columns 1.6-2.3 -> 1.0-1.1 ms on the CNN's second layer; weights best at 1024)
CHUNK_COLUMNS, WEIGHT_CHUNK_COLUMNS, CHUNK_ELEMENTS = 128, 1024, 1 << 18


def _chunk(o: int, n: int, rows: int, columns: int | None = None) -> int:
    """Output positions per chunk: about `columns` GEMM columns (CHUNK_COLUMNS), a block of at
    most CHUNK_ELEMENTS (1 MB of float32), never more than there are."""
    columns = CHUNK_COLUMNS if columns is None else columns
    return max(1, min(o, -(-columns // n), CHUNK_ELEMENTS // max(1, rows * n)))


def _lower_conv(node):
    x, w = node.inputs
    d, dt = w.ndim - 3, np_dtype(node.outputs[0].dtype)
    tab, _, o, k, ci, co, g = _geometry(x.shape[:d], w.shape, node)
    n = x.shape[-1]
    b, t = _chunk(o, n, k * ci), kernel_threads(o * n * k * ci * g)
    col, z = np.empty((t, k * ci, b * n), dt), np.empty((t, co, b * n), dt)
    wg = np.empty((g, co, k * ci), dt)  # contiguous per-group weights for the GEMM
    xs, ys = (-1, ci * g, n), (o, co * g, n)

    def call(kernel, ins, outs):
        np.copyto(wg, ins[1].reshape(k * ci, co, g).transpose(2, 1, 0))
        kernel(outs[0].reshape(ys), col, z, ins[0].reshape(xs), wg, tab)
    return Lowering(call, _source(_FORWARD), t)


def transposed_table(tab: np.ndarray, n: int) -> np.ndarray:
    """(n, K) int64: the output position whose window reads input position s at kernel
    offset k, or −1 (at most one: at a fixed offset, distinct windows read distinct
    positions). The table of the input gradient seen as a forward convolution."""
    o, k = np.nonzero(tab >= 0)
    out = np.full((n, tab.shape[1]), -1, np.int64)
    out[tab[o, k], k] = o
    return out


# The input gradient as a forward convolution (`_FORWARD` on the transposed table) when at
# least this share of its (input position, kernel offset) pairs are read by some window:
# stride 1 (about 1); stride 2 in two axes reads a quarter, the other three quarters would be
# products with zeros, so such a geometry takes the scatter-free gather (`_INPUT`) instead
DENSE_MIN_SHARE = 0.5


def _lower_conv_backward_input(node):
    gy, w = node.inputs
    dt = np_dtype(node.outputs[0].dtype)
    tab, s, o, k, ci, co, g = _geometry(node.attrs["in_size"], w.shape, node)
    n = gy.shape[-1]
    xs, ys = (s, ci * g, n), (o, co * g, n)
    itab = transposed_table(tab, s)
    if np.count_nonzero(itab >= 0) >= DENSE_MIN_SHARE * itab.size:
        # x̄[s, g·ci + i] = Σ_(k, c) w[k, i, c, g] ȳ[itab[s, k], g·co + c]: one GEMM of
        # (ci, K·co) by (K·co, B·N) per chunk of input positions, all in cache (measured on
        # the CNN's second convolution, 16 -> 32 channels: 3.8 -> 1.3 ms, as fast as forward)
        b, t = _chunk(s, n, k * co), kernel_threads(s * n * k * co * g)
        col, z = np.empty((t, k * co, b * n), dt), np.empty((t, ci, b * n), dt)
        wg = np.empty((g, ci, k * co), dt)

        def forward(kernel, ins, outs):
            np.copyto(wg.reshape(g, ci, k, co), ins[1].reshape(k, ci, co, g).transpose(3, 1, 0, 2))
            kernel(outs[0].reshape(xs), col, z, ins[0].reshape(ys), wg, itab)
        return Lowering(forward, _source(_FORWARD), t)
    ptr, ent = inverse_table(tab, s)
    b, t = _chunk(o, n, k * ci), kernel_threads(o * n * k * ci * g)
    cols = np.empty((-(-o // b), g, k * ci, b * n), dt)
    gt, wg = np.empty((t, co, b * n), dt), np.empty((g, k * ci, co), dt)

    def call(kernel, ins, outs):
        np.copyto(wg, ins[1].reshape(k * ci, co, g).transpose(2, 0, 1))
        args = (outs[0].reshape(xs), cols, gt, ins[0].reshape(ys), wg, tab, ptr, ent)
        kernel(*args, 0)
        kernel(*args, 1)
    return Lowering(call, _source(_INPUT), t)


def _lower_conv_backward_weights(node):
    x, gy = node.inputs
    a, dt = node.attrs, np_dtype(node.outputs[0].dtype)
    kernel_shape, g = a["kernel"], a["groups"]
    d = len(kernel_shape)
    ci, co = x.shape[d] // g, gy.shape[d] // g
    tab, _, o, k, *_ = _geometry(x.shape[:d], (*kernel_shape, ci, co, g), node)
    n = x.shape[-1]
    b, t = _chunk(o, n, k * ci, WEIGHT_CHUNK_COLUMNS), kernel_threads(o * n * k * ci * g)
    part = np.empty((t, g, k * ci, co), dt)
    col, gt = np.empty((t, k * ci, b * n), dt), np.empty((t, co, b * n), dt)
    total = np.empty((g, k * ci, co), dt)
    xs, ys, ws = (-1, ci * g, n), (o, co * g, n), (k * ci, co, g)

    def call(kernel, ins, outs):
        kernel(part, col, gt, ins[0].reshape(xs), ins[1].reshape(ys), tab)
        np.sum(part, axis=0, out=total)
        np.copyto(outs[0].reshape(ws), total.transpose(1, 2, 0))
    return Lowering(call, _source(_WEIGHTS), t)


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

    def args(ins, outs):
        return [outs[0].reshape(shape), ins[0].reshape(rows_in, -1), tab, value]
    return Lowering.looped(_GATHER_ROWS, node.out.type.size, args=args)


def lower_pad_adjoint(node) -> Lowering:
    x, a = node.outputs[0], node.attrs
    tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
    rows = int(np.prod(x.shape[:lead], dtype=np.int64))
    ptr, ent = inverse_table(tab, rows)

    def args(ins, outs):
        return [outs[0].reshape(rows, -1), ins[0].reshape(tab.size, -1), ptr, ent]
    return Lowering.looped(_SUM_ROWS, node.inputs[0].type.size, args=args)
