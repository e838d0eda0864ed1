"""Pooling primitives over the leading spatial axes: max pooling with argmax indices, its
scatter (max unpooling) and gather, and average pooling with its transpose.

Pools see x as (S1..Sd, rest...) with d = len(pool); the trailing axes (C, B, T...) are kept.
Padding is `((before, after), ...)` per spatial axis and smaller than the pool, so every window
holds at least one element of x. Max-pool indices are int64 linear indices into x in row-major
order over its whole shape (0-based); padding never wins. Average pooling divides by the pool
size (padded zeros count) or, with `count_pad=False`, by the number of elements of x in the
window (MATLAB's PaddingValue="mean").
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType, is_float, np_dtype
from .base import Lowering, OpDef, Sample, register, require_float
from .conv import crop, ints, pairs, scatter_windows, windows, zero_pad
from .conv_kernels import inverse_table, window_table


def pool_geometry(op: str, shape, pool, stride, padding) -> tuple[int, ...]:
    """Validate the pooling attributes for input `shape`; return the output spatial sizes."""
    d = len(pool)
    if d < 1 or len(shape) < d:
        raise ShapeError(f"{op}: pool {pool} needs an input with at least {d} axes, got {shape}")
    if len(stride) != d or len(padding) != d:
        raise ShapeError(f"{op}: stride {stride} and padding {padding} need one entry per "
                         f"pooled axis ({d})")
    if any(k < 1 for k in pool) or any(s < 1 for s in stride):
        raise ShapeError(f"{op}: pool size {pool} and stride {stride} must be positive")
    if any(p < 0 or p >= k for pp, k in zip(padding, pool) for p in pp):
        raise ShapeError(f"{op}: padding {padding} must be non-negative and smaller than the "
                         f"pool size {pool}")
    padded = tuple(n + a + b for n, (a, b) in zip(shape, padding))
    if any(k > p for k, p in zip(pool, padded)):
        raise ShapeError(f"{op}: pool size {pool} is larger than the padded input {padded} "
                         f"(input {tuple(shape[:d])}, padding {padding})")
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, pool, stride))


class _PoolOp(OpDef):
    attrs = {"pool": (), "stride": (), "padding": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        for k in ("pool", "stride", "in_size"):
            if k in attrs:
                attrs[k] = ints(attrs[k])
        attrs["padding"] = pairs(attrs["padding"])
        if "count_pad" in attrs:
            attrs["count_pad"] = bool(attrs["count_pad"])
        return attrs


def _flat_windows(xp, pool, stride):
    """Windows (O..., rest..., K) with the K = prod(pool) window elements flattened last."""
    w = windows(xp, pool, stride, (1,) * len(pool))
    return w.reshape(w.shape[:w.ndim - len(pool)] + (-1,))


@register
class MaxPool(_PoolOp):
    """y[o] = max of x over window o; idx[o] = the row-major linear index of that element"""

    name = "maxpool"

    def infer(self, in_types, pool, stride, padding):
        t = in_types[0]
        require_float(self.name, t)
        outs = pool_geometry(self.name, t.shape, pool, stride, padding)
        shape = outs + t.shape[len(pool):]
        return [t.with_(shape=shape), TensorType("i64", shape, t.fmt)]

    def ref(self, x, pool, stride, padding):
        # padded with -inf (values) and -1 (indices): padding never wins, as every window
        # holds an element of x
        wx = _flat_windows(zero_pad(x, padding, -np.inf), pool, stride)
        lin = np.arange(x.size, dtype=np.int64).reshape(x.shape)
        wi = _flat_windows(zero_pad(lin, padding, -1), pool, stride)
        arg = np.argmax(wx, axis=-1)[..., None]
        y = np.take_along_axis(wx, arg, axis=-1)[..., 0]
        idx = np.take_along_axis(wi, arg, axis=-1)[..., 0]
        return np.ascontiguousarray(y), np.ascontiguousarray(idx)

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        if cts[0] is None:
            return [None]
        return [b.emit("maxunpool", cts[0], node.outputs[1], shape=x.shape, fmt=x.fmt)]

    def lower_numba(self, node):
        x, a = node.inputs[0], node.attrs
        tab, rows = _pool_table(x.shape, a)

        def args(ins, outs):
            return [outs[0].reshape(tab.shape[0], -1), outs[1].reshape(tab.shape[0], -1),
                    ins[0].reshape(rows, -1), tab]
        return Lowering.looped(_MAXPOOL, x.type.size, args=args)

    def samples(self, rng):
        # distinct values spaced 1 apart: no ties, and finite differences never change an argmax
        def distinct(*shape):
            return rng.permutation(math.prod(shape)).reshape(shape) + 0.1 * rng.random(shape)

        return [
            Sample([distinct(6, 2, 2)], {"pool": (2,), "stride": (2,), "padding": ((0, 0),)}),
            Sample([distinct(4, 5, 2, 2)],
                   {"pool": (3, 2), "stride": (1, 2), "padding": ((1, 1), (0, 1))}),
            Sample([distinct(3, 4, 3, 1, 2)],
                   {"pool": (2, 2, 2), "stride": (1, 2, 1), "padding": ((0, 1), (0, 0), (1, 0))}),
        ]


def _check_indices(op: str, v: TensorType, idx: TensorType, what: str) -> None:
    if is_float(idx.dtype) or idx.dtype == "bool":
        raise DTypeError(f"{op}: indices must be integers, got {idx.dtype} {idx.shape}")
    if v.shape != idx.shape:
        raise ShapeError(f"{op}: {what} {v.shape} and indices {idx.shape} must have the same "
                         f"shape")


@register
class MaxUnpool(OpDef):
    """y = zeros(shape); y.flat[idx] += x (repeated indices accumulate)"""

    name = "maxunpool"
    attrs = {"shape": (), "fmt": ""}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["shape"] = ints(attrs["shape"])
        return attrs

    def infer(self, in_types, shape, fmt):
        v, idx = in_types
        require_float(self.name, v, "values")
        _check_indices(self.name, v, idx, "values")
        if fmt and len(fmt) != len(shape):
            raise ShapeError(f"maxunpool: format {fmt!r} does not fit shape {shape}")
        return [TensorType(v.dtype, shape, fmt)]

    def ref(self, x, idx, shape, fmt):
        n = math.prod(shape)
        y = np.bincount(idx.ravel(), weights=x.ravel(), minlength=n)
        return y.astype(x.dtype, copy=False).reshape(shape)

    def vjp(self, b, node, cts):
        x, idx = node.inputs
        return [b.emit("gather_flat", cts[0], idx, fmt=x.fmt), None]

    def lower_numba(self, node):
        n = node.out.type.size

        def call(kernel, ins, outs):
            _check_flat(self.name, ins[1], 0, n)
            kernel(outs[0].reshape(-1), ins[0].reshape(-1), ins[1].reshape(-1))
        return Lowering(call, _MAXUNPOOL)

    def samples(self, rng):
        idx = np.array([[0, 5, 7], [11, 5, 2]])  # 5 twice: accumulation
        return [Sample([rng.normal(size=(2, 3)), idx], {"shape": (3, 4)}, nondiff=(1,))]


@register
class GatherFlat(OpDef):
    """y = x.flat[idx] (the transpose of maxunpool)"""

    name = "gather_flat"
    attrs = {"fmt": ""}

    def infer(self, in_types, fmt):
        x, idx = in_types
        require_float(self.name, x)
        if is_float(idx.dtype) or idx.dtype == "bool":
            raise DTypeError(f"gather_flat: indices must be integers, got {idx.dtype}")
        if fmt and len(fmt) != idx.ndim:
            raise ShapeError(f"gather_flat: format {fmt!r} does not fit indices {idx.shape}")
        return [TensorType(x.dtype, idx.shape, fmt)]

    def ref(self, x, idx, fmt):
        return x.ravel()[idx]

    def vjp(self, b, node, cts):
        x, idx = node.inputs
        return [b.emit("maxunpool", cts[0], idx, shape=x.shape, fmt=x.fmt), None]

    def lower_numba(self, node):
        n = node.inputs[0].type.size

        def call(kernel, ins, outs):
            _check_flat(self.name, ins[1], -n, n)
            kernel(outs[0].reshape(-1), ins[0].reshape(-1), ins[1].reshape(-1))
        return Lowering.looped(_GATHER_FLAT, node.out.type.size, call)

    def samples(self, rng):
        idx = np.array([[0, 5, 7], [11, 5, 2]])
        return [Sample([rng.normal(size=(3, 4)), idx], {}, nondiff=(1,))]


def _divisor(pool, stride, padding, in_size, outs, count_pad, ndim, dtype) -> np.ndarray:
    """What each window sum is divided by, broadcastable against (O..., rest...)."""
    if count_pad:
        return np.asarray(math.prod(pool), dtype=dtype)
    div = np.ones((), dtype=dtype)
    for k, s, (a, _), n, o in zip(pool, stride, padding, in_size, outs):
        start = np.arange(o) * s - a
        real = np.minimum(start + k, n) - np.maximum(start, 0)  # elements of x in the window
        div = np.multiply.outer(div, real.astype(dtype))
    return div.reshape(div.shape + (1,) * (ndim - len(pool)))


@register
class AvgPool(_PoolOp):
    """y[o] = Σ_window xpad / (prod(pool) if count_pad else number of x elements in window)"""

    name = "avgpool"
    attrs = {**_PoolOp.attrs, "count_pad": True}

    def infer(self, in_types, pool, stride, padding, count_pad):
        t = in_types[0]
        require_float(self.name, t)
        outs = pool_geometry(self.name, t.shape, pool, stride, padding)
        return [t.with_(shape=outs + t.shape[len(pool):])]

    def ref(self, x, pool, stride, padding, count_pad):
        s = _flat_windows(zero_pad(x, padding), pool, stride).sum(axis=-1)
        d = len(pool)
        div = _divisor(pool, stride, padding, x.shape[:d], s.shape[:d], count_pad, x.ndim,
                       x.dtype)
        return (s / div).astype(x.dtype, copy=False)

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        d = len(node.attrs["pool"])
        return [b.emit("avgpool_backward", cts[0], in_size=x.shape[:d], **node.attrs)]

    def lower_numba(self, node):
        x, a = node.inputs[0], node.attrs
        tab, rows = _pool_table(x.shape, a)
        div = _window_divisor(tab, a, node.out.dtype)

        def args(ins, outs):
            return [outs[0].reshape(tab.shape[0], -1), ins[0].reshape(rows, -1), tab, div]
        return Lowering.looped(_AVGPOOL, x.type.size, args=args)

    def samples(self, rng):
        n = rng.normal
        return [
            Sample([n(size=(5, 2, 2))], {"pool": (2,), "stride": (2,), "padding": ((1, 0),)}),
            Sample([n(size=(4, 5, 2, 1))], {"pool": (3, 2), "stride": (1, 2),
                                            "padding": ((1, 2), (1, 1)), "count_pad": False}),
            Sample([n(size=(3, 4, 3, 2, 1))], {"pool": (2, 2, 2), "stride": (1, 2, 1),
                                               "padding": ((0, 1), (1, 0), (1, 1)),
                                               "count_pad": True}),
        ]


@register
class AvgPoolBackward(_PoolOp):
    """x̄ = the transpose of avgpool applied to ȳ: each ȳ[o] / divisor spread over window o"""

    name = "avgpool_backward"
    attrs = {**_PoolOp.attrs, "count_pad": True, "in_size": ()}

    def infer(self, in_types, pool, stride, padding, count_pad, in_size):
        t = in_types[0]
        require_float(self.name, t)
        d = len(pool)
        if len(in_size) != d or t.ndim < d:
            raise ShapeError(f"avgpool_backward: in_size {in_size} and the cotangent {t.shape} "
                             f"must cover the {d} pooled axes")
        outs = pool_geometry(self.name, in_size, pool, stride, padding)
        if outs != t.shape[:d]:
            raise ShapeError(f"avgpool_backward: an input of size {in_size} pools to {outs}, "
                             f"but the cotangent {t.shape} has {t.shape[:d]}")
        return [t.with_(shape=tuple(in_size) + t.shape[d:])]

    def ref(self, gy, pool, stride, padding, count_pad, in_size):
        d = len(pool)
        div = _divisor(pool, stride, padding, in_size, gy.shape[:d], count_pad, gy.ndim,
                       gy.dtype)
        g = gy / div
        cols = np.broadcast_to(g[(Ellipsis,) + (None,) * d], g.shape + tuple(pool))
        padded = tuple(n + a + b for n, (a, b) in zip(in_size, padding)) + gy.shape[d:]
        xp = scatter_windows(cols, padded, pool, stride, (1,) * d)
        return np.ascontiguousarray(crop(xp, padding, in_size)).astype(gy.dtype, copy=False)

    def vjp(self, b, node, cts):
        a = {k: v for k, v in node.attrs.items() if k != "in_size"}
        return [b.emit("avgpool", cts[0], **a)]

    def lower_numba(self, node):
        gy, a = node.inputs[0], node.attrs
        tab, rows = _pool_table(a["in_size"], a)
        div = _window_divisor(tab, a, gy.dtype)
        ptr, ent = inverse_table(tab, rows)
        k = tab.shape[1]

        def args(ins, outs):
            return [outs[0].reshape(rows, -1), ins[0].reshape(tab.shape[0], -1), ptr, ent, k,
                    div]
        return Lowering.looped(_AVGPOOL_BACKWARD, node.out.type.size, args=args)

    def samples(self, rng):
        n = rng.normal
        return [
            Sample([n(size=(3, 2, 2))], {"pool": (2,), "stride": (2,), "padding": ((1, 0),),
                                         "in_size": (5,)}),
            Sample([n(size=(5, 3, 2, 1))], {"pool": (3, 2), "stride": (1, 2),
                                            "padding": ((1, 2), (1, 1)), "count_pad": False,
                                            "in_size": (4, 5)}),
        ]


# --- Numba lowering --------------------------------------------------------------------------
# Windows are an int64 table (O, K) of flat positions over the pooled axes (−1 in the padding),
# built once from the static shapes; kernels see x as (S, R) and y as (O, R), R = the kept
# trailing axes, so one source serves every rank and size.


def _pool_table(shape, a) -> tuple[np.ndarray, int]:
    d = len(a["pool"])
    tab = window_table(shape[:d], a["pool"], a["stride"], (1,) * d, a["padding"])
    return tab, math.prod(shape[:d])


def _window_divisor(tab: np.ndarray, a, dtype: str) -> np.ndarray:
    """What each window's sum is divided by: the pool size, or the elements of x it holds."""
    count = np.full(tab.shape[0], tab.shape[1]) if a["count_pad"] else (tab >= 0).sum(axis=1)
    return count.astype(np_dtype(dtype))


def _check_flat(op: str, idx: np.ndarray, lo: int, n: int) -> None:
    """Indices must be in [lo, n) (gather_flat, like NumPy, counts negative ones from the end)."""
    if idx.size and (idx.min() < lo or idx.max() >= n):
        bad = idx[(idx < lo) | (idx >= n)]
        raise ShapeError(f"{op}: indices must be in [{lo}, {n}), got {bad[:5].tolist()}")


# the first maximum in window order wins (np.argmax), NaN included; padding never does
_MAXPOOL = """def kernel(y, idx, x, tab):
    R = x.shape[1]
    for o in LOOP(tab.shape[0]):
        first = True
        for k in range(tab.shape[1]):
            s = tab[o, k]
            if s < 0:
                continue
            if first:
                for r in range(R):
                    y[o, r] = x[s, r]
                    idx[o, r] = s * R + r
                first = False
            else:
                for r in range(R):
                    v = x[s, r]
                    m = y[o, r]
                    if v > m or (v != v and m == m):
                        y[o, r] = v
                        idx[o, r] = s * R + r
    return 0
"""

# serial: repeated indices accumulate
_MAXUNPOOL = """def kernel(y, x, idx):
    n = y.shape[0]
    for j in range(n):
        y[j] = 0
    for j in range(x.shape[0]):
        i = idx[j]
        y[i] += x[j]
    return 0
"""

_GATHER_FLAT = """def kernel(y, x, idx):
    n = x.shape[0]
    for j in LOOP(y.shape[0]):
        i = idx[j]
        y[j] = x[i + n if i < 0 else i]
    return 0
"""

_AVGPOOL = """def kernel(y, x, tab, div):
    for o in LOOP(tab.shape[0]):
        for r in range(y.shape[1]):
            y[o, r] = 0
        for k in range(tab.shape[1]):
            s = tab[o, k]
            if s >= 0:
                for r in range(y.shape[1]):
                    y[o, r] += x[s, r]
        for r in range(y.shape[1]):
            y[o, r] = y[o, r] / div[o]
    return 0
"""

# x̄[s] = Σ ȳ[o] / div[o] over the windows o that hold s: a gather, race-free
_AVGPOOL_BACKWARD = """def kernel(xb, gy, ptr, ent, K, div):
    for s in LOOP(xb.shape[0]):
        for r in range(xb.shape[1]):
            xb[s, r] = 0
        for e in range(ptr[s], ptr[s + 1]):
            o = ent[e] // K
            for r in range(xb.shape[1]):
                xb[s, r] += gy[o, r] / div[o]
    return 0
"""
