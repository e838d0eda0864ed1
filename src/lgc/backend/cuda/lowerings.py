"""Device lowerings of the non-elementwise ops for the CUDA target.

`lowering(node, kern)` returns `call(ins, outs, host)` that computes the node on the device
(`ins`/`outs` are device arrays, the outputs planned and C-contiguous; `host[k]` is input k's
host array when it is a graph input, else None), or None: the runtime then runs the op's
NumPy reference on the host (counted in `stats["host_steps"]`). `kern(source)` compiles a
kernel and returns `launch(grid, *args)`.

The CPU backend keeps these on the ops (`lower_numba`); the CUDA versions sit here, keyed by op
name, until the ops grow a `lower_cuda` of their own. Window geometry reuses the ops' int64
tables (built once from the static shapes, uploaded once): tab[o, k] = the flat input position
window o reads at offset k, −1 in the padding; their CSR transposes make adjoints race-free
gathers. Scatters whose targets are data (maxunpool, embed_backward) use atomic adds.
"""

from __future__ import annotations

import math

import numpy as np

from ...ir.types import np_dtype
from ...ops.base import pkq
from . import cuda
from .codegen import FILL, SOFTMAX, emit_copy, emit_matmul, emit_update, launch, tile


def _prod(xs) -> int:
    return int(math.prod(xs))


def _host_value(dev, host) -> np.ndarray:
    return host if host is not None else dev.copy_to_host()


def _ids(nd: int) -> list[str]:
    return [f"i{d}" for d in range(nd)]


# --- copies -----------------------------------------------------------------------------------

def _transpose(node, kern):
    perm = node.attrs["perm"]
    nd = len(perm)
    src = [f"i{perm.index(a)}" for a in range(nd)]
    k = kern(emit_copy(nd, _ids(nd), src, "o"))
    n = node.out.type.size
    return lambda ins, outs, host: k(launch(n), outs[0], ins[0])


def _slice(node, kern):
    a, nd = node.attrs, node.inputs[0].ndim
    src = [f"c{d} + i{d} * c{nd + d}" for d in range(nd)]
    k = kern(emit_copy(nd, _ids(nd), src, "o", 2 * nd))
    n, args = node.out.type.size, (*a["starts"], *a["steps"])
    return lambda ins, outs, host: k(launch(n), outs[0], ins[0], *args)


def _unslice(node, kern):
    a, nd = node.attrs, node.inputs[0].ndim
    dst = [f"c{d} + i{d} * c{nd + d}" for d in range(nd)]
    k, fill = kern(emit_copy(nd, dst, _ids(nd), "x", 2 * nd)), kern(FILL)
    n, m, args = node.inputs[0].type.size, node.out.type.size, (*a["starts"], *a["steps"])

    def call(ins, outs, host):
        fill(launch(m), outs[0].reshape(m), 0)
        k(launch(n), outs[0], ins[0], *args)
    return call


def _concatenate(node, kern):
    axis = node.attrs["axis"]
    k = kern(emit_copy(3, ["i0", "c0 + i1", "i2"], _ids(3), "x", 1))
    p, _, q = pkq(node.out.shape, (axis,))
    sizes = [v.shape[axis] for v in node.inputs]
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    total = node.out.shape[axis]

    def call(ins, outs, host):
        o = outs[0].reshape(p, total, q)
        for x, kk, off in zip(ins, sizes, offsets):
            k(launch(p * kk * q), o, x.reshape(p, kk, q), off)
    return call


def _split(node, kern):
    axis = node.attrs["axis"]
    k = kern(emit_copy(3, _ids(3), ["i0", "c0 + i1", "i2"], "o", 1))
    x = node.inputs[0]
    p, total, q = pkq(x.shape, (axis,))
    sizes = [o.shape[axis] for o in node.outputs]
    offsets = np.cumsum([0] + sizes[:-1]).tolist()

    def call(ins, outs, host):
        xv = ins[0].reshape(p, total, q)
        for o, kk, off in zip(outs, sizes, offsets):
            k(launch(p * kk * q), o.reshape(p, kk, q), xv, off)
    return call


# --- linear algebra, softmax, updates ----------------------------------------------------------

def _matmul(node, kern):
    t = tile()
    k = kern(emit_matmul(node.out.dtype, t))
    m, n = node.out.shape
    grid = ((-(-n // t) or 1, -(-m // t) or 1), (t, t))
    return lambda ins, outs, host: k(grid, outs[0], ins[0], ins[1])


def _softmax(node, kern):
    k = kern(SOFTMAX)
    p, kk, q = pkq(node.inputs[0].shape, (node.attrs["axis"],))
    return lambda ins, outs, host: k(launch(p * q), outs[0].reshape(p, kk, q),
                                     ins[0].reshape(p, kk, q))


def _update(node, kern):
    op = node.op
    k = kern(emit_update(op))
    n, na = node.inputs[0].type.size, op.n_arrays
    dtype = np_dtype(node.inputs[0].dtype).type

    def call(ins, outs, host):
        # the hyperparameters are 0-d graph inputs: read on the host, no transfer
        hyper = [float(_host_value(d, h)) for d, h in zip(ins[na:], host[na:])]
        scalars = [dtype(c) for c in op.kernel_scalars(*hyper)]
        k(launch(n), *outs, *ins[:na], *scalars)
    return call


# --- windows: padding, pooling, convolution ---------------------------------------------------

_GATHER_ROWS = """def kernel(y, x, tab, value):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        j = i // y.shape[1]
        r = i - j * y.shape[1]
        s = tab[j]
        y[j, r] = value if s < 0 else x[s, r]
"""

_SUM_ROWS = """def kernel(y, x, ptr, ent, K, div):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        s = i // y.shape[1]
        r = i - s * y.shape[1]
        acc = 0.0
        for e in range(ptr[s], ptr[s + 1]):
            o = ent[e] // K
            acc += x[o, r] / div[o]
        y[s, r] = acc
"""

# the first maximum in window order wins (np.argmax), NaN included; padding never does
_MAXPOOL = """def kernel(y, idx, x, tab):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        o = i // y.shape[1]
        r = i - o * y.shape[1]
        first = True
        m = x[0, r]
        best = 0
        for k in range(tab.shape[1]):
            s = tab[o, k]
            if s >= 0:
                v = x[s, r]
                if first or v > m or (v != v and m == m):
                    m = v
                    best = s
                    first = False
        y[o, r] = m
        idx[o, r] = best * x.shape[1] + r
"""

_AVGPOOL = """def kernel(y, x, tab, div):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        o = i // y.shape[1]
        r = i - o * y.shape[1]
        acc = 0.0
        for k in range(tab.shape[1]):
            s = tab[o, k]
            if s >= 0:
                acc += x[s, r]
        y[o, r] = acc / div[o]
"""


def _pad(node, kern):
    from ...ops.conv_kernels import _pad_table

    x, a = node.inputs[0], node.attrs
    tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
    rows_in = _prod(x.shape[:lead])
    dtab, k, n = cuda.to_device(tab), kern(_GATHER_ROWS), node.out.type.size
    return lambda ins, outs, host: k(launch(n), outs[0].reshape(tab.size, -1),
                                     ins[0].reshape(rows_in, -1), dtab, a["value"])


def _pad_adjoint(node, kern):
    from ...ops.conv_kernels import _pad_table, inverse_table

    y, a = node.out, node.attrs
    tab, lead = _pad_table(y.shape, a["pads"], a["mode"])
    rows = _prod(y.shape[:lead])
    ptr, ent = (cuda.to_device(t) for t in inverse_table(tab, rows))
    one = cuda.to_device(np.ones(tab.size, np_dtype(y.dtype)))
    k, n = kern(_SUM_ROWS), y.type.size
    return lambda ins, outs, host: k(launch(n), outs[0].reshape(rows, -1),
                                     ins[0].reshape(tab.size, -1), ptr, ent, 1, one)


def _maxpool(node, kern):
    from ...ops.pool import _pool_table

    tab, rows = _pool_table(node.inputs[0].shape, node.attrs)
    dtab, k, n = cuda.to_device(tab), kern(_MAXPOOL), node.outputs[0].type.size
    o = tab.shape[0]
    return lambda ins, outs, host: k(launch(n), outs[0].reshape(o, -1), outs[1].reshape(o, -1),
                                     ins[0].reshape(rows, -1), dtab)


def _avgpool(node, kern):
    from ...ops.pool import _pool_table, _window_divisor

    tab, rows = _pool_table(node.inputs[0].shape, node.attrs)
    div = cuda.to_device(_window_divisor(tab, node.attrs, node.out.dtype))
    dtab, k, n = cuda.to_device(tab), kern(_AVGPOOL), node.out.type.size
    o = tab.shape[0]
    return lambda ins, outs, host: k(launch(n), outs[0].reshape(o, -1),
                                     ins[0].reshape(rows, -1), dtab, div)


def _avgpool_backward(node, kern):
    from ...ops.conv_kernels import inverse_table
    from ...ops.pool import _pool_table, _window_divisor

    a = node.attrs
    tab, rows = _pool_table(a["in_size"], a)
    div = cuda.to_device(_window_divisor(tab, a, node.out.dtype))
    ptr, ent = (cuda.to_device(t) for t in inverse_table(tab, rows))
    k, n, o, kk = kern(_SUM_ROWS), node.out.type.size, tab.shape[0], tab.shape[1]
    return lambda ins, outs, host: k(launch(n), outs[0].reshape(rows, -1),
                                     ins[0].reshape(o, -1), ptr, ent, kk, div)


# --- gathers and scatters ----------------------------------------------------------------------

_GATHER_FLAT = """def kernel(y, x, idx):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        j = idx[i]
        y[i] = x[j + x.shape[0] if j < 0 else j]
"""

_SCATTER_ADD = """def kernel(y, x, idx):
    for i in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        cuda.atomic.add(y, idx[i], x[i])
"""

_EMBED = """def kernel(y, idx, w):
    for i in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        r = i // y.shape[2]
        q = i - r * y.shape[2]
        p = r // y.shape[1]
        d = r - p * y.shape[1]
        y[p, d, q] = w[d, idx[p, q]]
"""

_EMBED_BACKWARD = """def kernel(g, ct, idx):
    for i in range(cuda.grid(1), ct.size, cuda.gridsize(1)):
        r = i // ct.shape[2]
        q = i - r * ct.shape[2]
        p = r // ct.shape[1]
        d = r - p * ct.shape[1]
        cuda.atomic.add(g, (d, idx[p, q]), ct[p, d, q])
"""


def _gather_flat(node, kern):
    from ...ops.pool import _check_flat

    k, n, size = kern(_GATHER_FLAT), node.out.type.size, node.inputs[0].type.size

    def call(ins, outs, host):
        if host[1] is not None:  # indices known on the host: checked without a transfer
            _check_flat(node.op.name, host[1], -size, size)
        k(launch(n), outs[0].reshape(-1), ins[0].reshape(-1), ins[1].reshape(-1))
    return call


def _maxunpool(node, kern):
    from ...ops.pool import _check_flat

    k, fill = kern(_SCATTER_ADD), kern(FILL)
    n, m = node.inputs[0].type.size, node.out.type.size

    def call(ins, outs, host):
        if host[1] is not None:
            _check_flat(node.op.name, host[1], 0, m)
        fill(launch(m), outs[0].reshape(-1), 0)
        k(launch(n), outs[0].reshape(-1), ins[0].reshape(-1), ins[1].reshape(-1))
    return call


def _embed(node, kern):
    from ...ops.recurrent import _around, _check_indices

    x, w = node.inputs
    p, q = _around(x.shape, node.attrs["axis"])
    k, n, ys = kern(_EMBED), node.out.type.size, (p, w.shape[0], q)

    def call(ins, outs, host):
        if host[0] is not None:
            _check_indices(node.op.name, host[0], w.shape[1])
        k(launch(n), outs[0].reshape(ys), ins[0].reshape(p, q), ins[1])
    return call


def _embed_backward(node, kern):
    from ...ops.recurrent import _around, _check_indices

    ct, x = node.inputs
    a = node.attrs
    p, q = _around(x.shape, a["axis"])
    k, fill = kern(_EMBED_BACKWARD), kern(FILL)
    m, cs = node.out.type.size, (p, ct.shape[a["axis"]], q)

    def call(ins, outs, host):
        if host[1] is not None:
            _check_indices(node.op.name, host[1], a["num_words"])
        fill(launch(m), outs[0].reshape(-1), 0)
        k(launch(ct.type.size), outs[0], ins[0].reshape(cs), ins[1].reshape(p, q))
    return call


# --- convolution: direct kernels over the window table, one thread per output element --------
# x is (S, g·ci, N), y (O, g·co, N), w (K, ci, co, g): the CPU lowering's layouts

_CONV = """def kernel(y, x, w, tab):
    ci, co = w.shape[1], w.shape[2]
    for t in range(cuda.grid(1), y.size, cuda.gridsize(1)):
        r = t // y.shape[2]
        n = t - r * y.shape[2]
        o = r // y.shape[1]
        ch = r - o * y.shape[1]
        gi = ch // co
        c = ch - gi * co
        acc = 0.0
        for k in range(tab.shape[1]):
            s = tab[o, k]
            if s >= 0:
                for i in range(ci):
                    acc += x[s, gi * ci + i, n] * w[k, i, c, gi]
        y[o, ch, n] = acc
"""

# x̄[s] = Σ over the windows (o, k) that read s (CSR transpose) of Σ_c ȳ[o, c] w[k, :, c]
_CONV_BACKWARD_INPUT = """def kernel(xb, gy, w, ptr, ent, K):
    ci, co = w.shape[1], w.shape[2]
    for t in range(cuda.grid(1), xb.size, cuda.gridsize(1)):
        r = t // xb.shape[2]
        n = t - r * xb.shape[2]
        s = r // xb.shape[1]
        ch = r - s * xb.shape[1]
        gi = ch // ci
        i = ch - gi * ci
        acc = 0.0
        for e in range(ptr[s], ptr[s + 1]):
            o = ent[e] // K
            k = ent[e] - o * K
            for c in range(co):
                acc += gy[o, gi * co + c, n] * w[k, i, c, gi]
        xb[s, ch, n] = acc
"""

_CONV_BACKWARD_WEIGHTS = """def kernel(wg, x, gy, tab):
    ci, co, G = wg.shape[1], wg.shape[2], wg.shape[3]
    for t in range(cuda.grid(1), wg.size, cuda.gridsize(1)):
        r = t // G
        gi = t - r * G
        r2 = r // co
        c = r - r2 * co
        k = r2 // ci
        i = r2 - k * ci
        acc = 0.0
        for o in range(tab.shape[0]):
            s = tab[o, k]
            if s >= 0:
                for n in range(x.shape[2]):
                    acc += x[s, gi * ci + i, n] * gy[o, gi * co + c, n]
        wg[k, i, c, gi] = acc
"""


def _conv(node, kern):
    from ...ops.conv_kernels import _geometry

    x, w = node.inputs
    d = w.ndim - 3
    tab, _, o, kk, ci, co, g = _geometry(x.shape[:d], w.shape, node)
    dtab, k, m = cuda.to_device(tab), kern(_CONV), node.out.type.size
    xs, ys, ws = (-1, ci * g, x.shape[-1]), (o, co * g, x.shape[-1]), (kk, ci, co, g)
    return lambda ins, outs, host: k(launch(m), outs[0].reshape(ys), ins[0].reshape(xs),
                                     ins[1].reshape(ws), dtab)


def _conv_backward_input(node, kern):
    from ...ops.conv_kernels import _geometry, inverse_table

    gy, w = node.inputs
    tab, s, o, kk, ci, co, g = _geometry(node.attrs["in_size"], w.shape, node)
    ptr, ent = (cuda.to_device(t) for t in inverse_table(tab, s))
    k, m, n = kern(_CONV_BACKWARD_INPUT), node.out.type.size, gy.shape[-1]
    xs, ys, ws = (s, ci * g, n), (o, co * g, n), (kk, ci, co, g)
    return lambda ins, outs, host: k(launch(m), outs[0].reshape(xs), ins[0].reshape(ys),
                                     ins[1].reshape(ws), ptr, ent, kk)


def _conv_backward_weights(node, kern):
    from ...ops.conv_kernels import _geometry

    x, gy = node.inputs
    a = node.attrs
    d, g = len(a["kernel"]), a["groups"]
    ci, co = x.shape[d] // g, gy.shape[d] // g
    tab, _, o, kk, *_ = _geometry(x.shape[:d], (*a["kernel"], ci, co, g), node)
    dtab, k, m, n = cuda.to_device(tab), kern(_CONV_BACKWARD_WEIGHTS), node.out.type.size, \
        x.shape[-1]
    xs, ys, ws = (-1, ci * g, n), (o, co * g, n), (kk, ci, co, g)
    return lambda ins, outs, host: k(launch(m), outs[0].reshape(ws), ins[0].reshape(xs),
                                     ins[1].reshape(ys), dtab)


LOWERINGS = {
    "transpose": _transpose, "slice": _slice,
    "unslice": _unslice, "concatenate": _concatenate, "split": _split, "matmul": _matmul,
    "softmax": _softmax, "pad": _pad, "pad_adjoint": _pad_adjoint, "maxpool": _maxpool,
    "avgpool": _avgpool, "avgpool_backward": _avgpool_backward, "gather_flat": _gather_flat,
    "maxunpool": _maxunpool, "embed": _embed, "embed_backward": _embed_backward,
    "conv": _conv, "conv_backward_input": _conv_backward_input,
    "conv_backward_weights": _conv_backward_weights,
}


def lowering(node, kern):
    """The device call for `node`, or None for a host fallback."""
    if hasattr(node.op, "kernel_scalars") and hasattr(node.op, "body"):  # optimizer updates
        return _update(node, kern)
    build = LOWERINGS.get(node.op.name)
    return build(node, kern) if build is not None else None
