"""Reductions over a set of axes: sum, max, min."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType
from .base import OpDef, Sample, register


def reduced_type(op: str, t: TensorType, axes: tuple[int, ...], keepdims: bool) -> TensorType:
    for a in axes:
        if not 0 <= a < t.ndim:
            raise ShapeError(f"{op}: axis {a} is out of range for an input of shape {t.shape}")
    if keepdims:
        shape = tuple(1 if i in axes else s for i, s in enumerate(t.shape))
        return t.with_(shape=shape)
    shape = tuple(s for i, s in enumerate(t.shape) if i not in axes)
    fmt = "".join(c for i, c in enumerate(t.fmt) if i not in axes)
    return TensorType(t.dtype, shape, fmt)


def keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


class _Reduce(OpDef):
    attrs = {"axes": (), "keepdims": False}
    np_fn = None

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["axes"] = tuple(sorted(int(a) for a in attrs["axes"]))
        attrs["keepdims"] = bool(attrs["keepdims"])
        return attrs

    def infer(self, in_types, axes, keepdims):
        return [reduced_type(self.name, in_types[0], axes, keepdims)]

    def ref(self, x, axes, keepdims):
        return np.asarray(type(self).np_fn(x, axis=axes, keepdims=keepdims), dtype=x.dtype)

    def reduce_axes(self, node) -> tuple[int, ...]:
        return node.attrs["axes"]

    def _ct_full(self, b, node, ct):
        """The output cotangent broadcast back to the input shape."""
        x = node.inputs[0]
        ct = b.emit("reshape", ct, shape=keepdims_shape(x.shape, node.attrs["axes"]))
        return b.emit("broadcast_to", ct, shape=x.shape, fmt=x.fmt)

    def samples(self, rng):
        x = rng.normal(size=(3, 4, 2))
        return [Sample([x], {"axes": (1,), "keepdims": True}),
                Sample([x], {"axes": (0, 2), "keepdims": False}),
                Sample([x], {"axes": (0, 1, 2), "keepdims": False})]


@register
class ReduceSum(_Reduce):
    """y = sum of x over axes"""

    name = "reduce_sum"
    np_fn = np.sum
    reduce = ("0.0", "acc + v")

    def vjp(self, b, node, cts):
        return [self._ct_full(b, node, cts[0])]


@register
class ReduceMax(_Reduce):
    """y = max of x over axes; tied maxima share the cotangent equally"""

    name = "reduce_max"
    np_fn = np.max
    reduce = ("-np.inf", "max(acc, v)")

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        axes = node.attrs["axes"]
        y = b.emit("broadcast_to", b.emit("reshape", node.out, shape=keepdims_shape(x.shape, axes)),
                   shape=x.shape, fmt=x.fmt)
        mask = b.emit("cast", b.emit("equal", x, y), dtype=x.dtype)
        count = b.emit("reduce_sum", mask, axes=axes, keepdims=True)
        return [b.mul(self._ct_full(b, node, cts[0]), b.emit("div", mask, count))]


@register
class ReduceMin(ReduceMax):
    """y = min of x over axes; tied minima share the cotangent equally"""

    name = "reduce_min"
    np_fn = np.min
    reduce = ("np.inf", "min(acc, v)")
