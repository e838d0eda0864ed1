"""Sequence primitives: the embedding gather and its scatter-add transpose, and `split`.

lstm and gru compose matmul, split and activations (lgc/recurrent.py). `split` cuts the
all-steps input projection into time steps and each step's pre-activations into gates: its VJP
is one concatenate, where separate slices would each scatter a full-size zero array back
(quadratic in the number of steps). Embedding indices are 0-based.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType
from .base import Lowering, OpDef, Sample, register, require_float

_INT = ("i64", "i32")


def _ints(xs) -> tuple[int, ...]:
    return tuple(int(x) for x in xs)


@register
class Split(OpDef):
    """y_k = the k-th consecutive section of x along `axis`, sections of sizes `sizes`"""

    name = "split"
    attrs = {"axis": 0, "sizes": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        return {"axis": int(attrs["axis"]), "sizes": _ints(attrs["sizes"])}

    def infer(self, in_types, axis, sizes):
        t = in_types[0]
        if not 0 <= axis < t.ndim:
            raise ShapeError(f"{self.name}: axis {axis} is out of range for shape {t.shape}")
        if not sizes or min(sizes) < 1 or sum(sizes) != t.shape[axis]:
            raise ShapeError(f"{self.name}: sections {sizes} must be positive and add up to "
                             f"{t.shape[axis]}, the size of axis {axis} of {t.shape}")
        return [t.with_(shape=t.shape[:axis] + (s,) + t.shape[axis + 1:]) for s in sizes]

    def ref(self, x, axis, sizes):
        # plain slicing (np.split costs ~10 us more per call): leading-axis sections of a
        # C-contiguous x are contiguous, and ascontiguousarray returns them as views
        lead, start, parts = (slice(None),) * axis, 0, []
        for n in sizes:
            parts.append(np.ascontiguousarray(x[(*lead, slice(start, start + n))]))
            start += n
        return tuple(parts) if len(parts) > 1 else parts[0]  # one output: a bare array

    def vjp(self, b, node, cts):
        parts = [ct if ct is not None else b.zeros_like(o)
                 for o, ct in zip(node.outputs, cts, strict=True)]
        g = b.emit("concatenate", *parts, axis=node.attrs["axis"])
        return [b.relabel(g, node.inputs[0].fmt)]

    def lower_numba(self, node):
        x, axis = node.inputs[0], node.attrs["axis"]
        p, q = _around(x.shape, axis)
        if p == 1:
            return None  # sections of the leading axis are contiguous views: `ref` is free
        bounds = np.cumsum((0,) + node.attrs["sizes"]).tolist()
        blocks = list(zip(bounds[:-1], bounds[1:]))

        def call(kernel, ins, outs):
            xv = ins[0].reshape(p, x.shape[axis], q)
            for y, (a, c) in zip(outs, blocks):
                np.copyto(y.reshape(p, c - a, q), xv[:, a:c])
        return Lowering(call)

    def samples(self, rng):
        return [Sample([rng.normal(size=(5, 3))], {"axis": 0, "sizes": (2, 3)}),
                Sample([rng.normal(size=(2, 6))], {"axis": 1, "sizes": (1, 2, 3)}),
                Sample([rng.normal(size=(4, 2))], {"axis": 0, "sizes": (4,)})]


def _check_indices(op: str, idx: np.ndarray, num_words: int) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= num_words):
        bad = idx[(idx < 0) | (idx >= num_words)]
        raise ShapeError(f"{op}: indices must be in [0, {num_words}) (0-based, numWords = "
                         f"{num_words}), got {bad[:5].tolist()}")


@register
class Embed(OpDef):
    """y[..., :, ...] = weights[:, x[...]], the embedding placed along `axis` where x has size 1"""

    name = "embed"
    attrs = {"axis": 0}

    def infer(self, in_types, axis):
        x, w = in_types
        if x.dtype not in _INT:
            raise DTypeError(f"{self.name}: indices must be integers, got {x.dtype} {x.shape}")
        require_float(self.name, w, "weights")
        if w.ndim != 2:
            raise ShapeError(f"{self.name}: weights must be 2-D (dim, numWords), got {w.shape}")
        if not 0 <= axis < x.ndim or x.shape[axis] != 1:
            raise ShapeError(f"{self.name}: indices {x.shape} need size 1 along axis {axis}")
        shape = x.shape[:axis] + (w.shape[0],) + x.shape[axis + 1:]
        return [TensorType(w.dtype, shape, x.fmt)]

    def ref(self, x, w, axis):
        idx = np.squeeze(x, axis)
        _check_indices(self.name, idx, w.shape[1])
        return np.ascontiguousarray(np.moveaxis(np.take(w, idx, axis=1), 0, axis))

    def vjp(self, b, node, cts):
        x, w = node.inputs
        g = b.emit("embed_backward", cts[0], x, num_words=w.shape[1], axis=node.attrs["axis"])
        return [None, g]

    def lower_numba(self, node):
        x, w = node.inputs
        p, q = _around(x.shape, node.attrs["axis"])
        ys = (p, w.shape[0], q)

        def call(kernel, ins, outs):
            _check_indices(self.name, ins[0], w.shape[1])
            kernel(outs[0].reshape(ys), ins[0].reshape(p, q), ins[1])
        return Lowering.looped(_EMBED, node.out.type.size, call)

    def samples(self, rng):
        return [Sample([rng.integers(0, 4, size=(1, 3, 2)), rng.normal(size=(2, 4))],
                       {"axis": 0}, nondiff=(0,)),
                Sample([rng.integers(0, 3, size=(4, 1)), rng.normal(size=(3, 3))],
                       {"axis": 1}, nondiff=(0,))]


@register
class EmbedBackward(OpDef):
    """g[:, k] = sum of ct[..., :, ...] over the positions where x == k (transpose of embed)"""

    name = "embed_backward"
    attrs = {"num_words": 1, "axis": 0}

    def infer(self, in_types, num_words, axis):
        ct, x = in_types
        require_float(self.name, ct, "cotangent")
        if x.dtype not in _INT:
            raise DTypeError(f"{self.name}: indices must be integers, got {x.dtype} {x.shape}")
        if (ct.ndim != x.ndim or not 0 <= axis < x.ndim or x.shape[axis] != 1
                or ct.shape[:axis] + ct.shape[axis + 1:] != x.shape[:axis] + x.shape[axis + 1:]):
            raise ShapeError(f"{self.name}: cotangent {ct.shape} does not match indices "
                             f"{x.shape} with the embedding along axis {axis}")
        if num_words < 1:
            raise ShapeError(f"{self.name}: num_words must be positive, got {num_words}")
        return [TensorType(ct.dtype, (ct.shape[axis], num_words))]

    def ref(self, ct, x, num_words, axis):
        idx = np.squeeze(x, axis).reshape(-1)
        _check_indices(self.name, idx, num_words)
        cols = np.moveaxis(ct, axis, 0).reshape(ct.shape[axis], -1)
        g = np.zeros((ct.shape[axis], num_words), dtype=ct.dtype)
        np.add.at(g.T, idx, cols.T)  # repeated indices accumulate
        return g

    def vjp(self, b, node, cts):
        ct, x = node.inputs
        return [b.emit("embed", x, cts[0], axis=node.attrs["axis"]), None]

    def lower_numba(self, node):
        ct, x = node.inputs
        axis = node.attrs["axis"]
        p, q = _around(x.shape, axis)
        cs, num_words = (p, ct.shape[axis], q), node.attrs["num_words"]

        def call(kernel, ins, outs):
            _check_indices(self.name, ins[1], num_words)
            kernel(outs[0], ins[0].reshape(cs), ins[1].reshape(p, q))
        return Lowering(call, _EMBED_BACKWARD)

    def samples(self, rng):
        return [Sample([rng.normal(size=(2, 3, 2)), rng.integers(0, 4, size=(1, 3, 2))],
                       {"num_words": 4, "axis": 0}, nondiff=(1,))]


# --- Numba lowering: arrays seen as (P, axis, Q) around the embedding / split axis ------------


def _around(shape, axis: int) -> tuple[int, int]:
    return (int(np.prod(shape[:axis], dtype=np.int64)),
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


_EMBED = """def kernel(y, idx, w):
    for p in LOOP(y.shape[0]):
        for d in range(y.shape[1]):
            for q in range(y.shape[2]):
                y[p, d, q] = w[d, idx[p, q]]
    return 0
"""

# serial: repeated indices accumulate
_EMBED_BACKWARD = """def kernel(g, ct, idx):
    for d in range(g.shape[0]):
        for k in range(g.shape[1]):
            g[d, k] = 0
    for p in range(ct.shape[0]):
        for d in range(ct.shape[1]):
            for q in range(ct.shape[2]):
                g[d, idx[p, q]] += ct[p, d, q]
    return 0
"""
