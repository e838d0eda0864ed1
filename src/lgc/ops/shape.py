"""Shape ops: reshape, transpose, broadcast, sum_to, concatenate, slicing and relabelling.

Formats: reshape forgets the format; transpose permutes it; the others keep it when the rank is
unchanged. `relabel` is the identity that sets a format (dlarray on a traced value, stripdims).
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError
from ..ir.types import TensorType, result_dtype
from .base import Lowering, OpDef, Sample, register, same_type_input


def _ints(xs) -> tuple[int, ...]:
    return tuple(int(x) for x in xs)


@register
class Reshape(OpDef):
    """y = x reshaped to `shape` (row-major)"""

    name = "reshape"
    attrs = {"shape": ()}
    reshapes = True

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["shape"] = _ints(attrs["shape"])
        return attrs

    def infer(self, in_types, shape):
        t = in_types[0]
        if int(np.prod(shape, dtype=np.int64)) != t.size:
            raise ShapeError(f"reshape: cannot reshape {t.shape} ({t.size} elements) to {shape}")
        return [TensorType(t.dtype, shape)]

    def ref(self, x, shape):
        return x.reshape(shape)

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        return [b.relabel(b.emit("reshape", cts[0], shape=x.shape), x.fmt)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 4))], {"shape": (2, 6)})]

    def simplify(self, node, b):
        x = node.inputs[0]
        if x.producer is not None and x.producer.op is self:
            return [b.emit("reshape", x.producer.inputs[0], shape=node.attrs["shape"])]
        return same_type_input(node, 0)


@register
class Transpose(OpDef):
    """y = x with its axes permuted by `perm`"""

    name = "transpose"
    attrs = {"perm": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["perm"] = _ints(attrs["perm"])
        return attrs

    def infer(self, in_types, perm):
        t = in_types[0]
        if sorted(perm) != list(range(t.ndim)):
            raise ShapeError(f"transpose: {perm} is not a permutation of the {t.ndim} axes of "
                             f"{t.shape}")
        fmt = "".join(t.fmt[p] for p in perm) if t.fmt else ""
        return [TensorType(t.dtype, tuple(t.shape[p] for p in perm), fmt)]

    def ref(self, x, perm):
        return np.transpose(x, perm)

    def vjp(self, b, node, cts):
        inverse = tuple(int(i) for i in np.argsort(node.attrs["perm"]))
        return [b.emit("transpose", cts[0], perm=inverse)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(2, 3, 4))], {"perm": (2, 0, 1)})]

    def simplify(self, node, b):
        identity = node.attrs["perm"] == tuple(range(len(node.attrs["perm"])))
        return same_type_input(node, 0) if identity else None


@register
class BroadcastTo(OpDef):
    """y = x broadcast (NumPy rules) to `shape`, with format `fmt`"""

    name = "broadcast_to"
    attrs = {"shape": (), "fmt": ""}
    # fused: the kernel reads the input with a broadcast pattern, so the full-size array is
    # never written (batch norm's gradient broadcasts per-channel terms over S×S×B)
    expr, fusible = "{0}", True

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["shape"] = _ints(attrs["shape"])
        return attrs

    def infer(self, in_types, shape, fmt):
        t = in_types[0]
        try:
            np.broadcast_shapes(t.shape, shape)
            ok = np.broadcast_shapes(t.shape, shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(f"broadcast_to: cannot broadcast {t.shape} to {shape}")
        if not fmt and t.fmt and t.ndim == len(shape):
            fmt = t.fmt
        return [TensorType(t.dtype, shape, fmt)]

    def ref(self, x, shape, fmt):
        return np.broadcast_to(x, shape).copy()

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        return [b.relabel(b.sum_to(cts[0], x.shape), x.fmt)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 1))], {"shape": (2, 3, 4)})]

    def simplify(self, node, b):
        return same_type_input(node, 0)


def sum_to_axes(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[tuple[int, ...], int]:
    """Axes of `src` to sum (keepdims) and the number of leading axes to drop to reach `dst`."""
    lead = len(src) - len(dst)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(dst) if d == 1 and src[lead + i] != 1)
    return axes, lead


@register
class SumTo(OpDef):
    """y = x summed over its broadcast axes down to `shape` (the transpose of broadcast_to)"""

    name = "sum_to"
    attrs = {"shape": ()}
    reduce = ("0.0", "acc + v")

    def reduce_axes(self, node) -> tuple[int, ...]:
        return sum_to_axes(node.inputs[0].shape, node.attrs["shape"])[0]

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["shape"] = _ints(attrs["shape"])
        return attrs

    def infer(self, in_types, shape):
        t = in_types[0]
        try:
            ok = np.broadcast_shapes(shape, t.shape) == t.shape
        except ValueError:
            ok = False
        if not ok:
            raise ShapeError(f"sum_to: {t.shape} cannot be summed down to {shape}")
        return [TensorType(t.dtype, shape, t.fmt if t.ndim == len(shape) else "")]

    def ref(self, x, shape):
        axes, _ = sum_to_axes(x.shape, shape)
        return np.sum(x, axis=axes, keepdims=True).reshape(shape).astype(x.dtype, copy=False)

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        return [b.emit("broadcast_to", cts[0], shape=x.shape, fmt=x.fmt)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(2, 3, 4))], {"shape": (3, 1)})]

    def simplify(self, node, b):
        return same_type_input(node, 0)


@register
class Concatenate(OpDef):
    """y = the inputs joined along `axis`"""

    name = "concatenate"
    attrs = {"axis": 0}

    def infer(self, in_types, axis):
        t0 = in_types[0]
        if not 0 <= axis < t0.ndim:
            raise ShapeError(f"concatenate: axis {axis} is out of range for shape {t0.shape}")
        for t in in_types[1:]:
            if t.ndim != t0.ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, t0.shape))
                                        if i != axis):
                shapes = ", ".join(str(u.shape) for u in in_types)
                raise ShapeError(f"concatenate: inputs must agree except along axis {axis}, "
                                 f"got {shapes}")
            if t.fmt != t0.fmt and t.fmt and t0.fmt:
                raise FormatError(f"concatenate: formats differ ({t0.fmt} vs {t.fmt})")
        shape = list(t0.shape)
        shape[axis] = sum(t.shape[axis] for t in in_types)
        fmt = next((t.fmt for t in in_types if t.fmt), "")
        return [TensorType(result_dtype(*(t.dtype for t in in_types)), tuple(shape), fmt)]

    def ref(self, *xs, axis):
        return np.concatenate(xs, axis=axis)

    def vjp(self, b, node, cts):
        axis = node.attrs["axis"]
        out, start = [], 0
        for x in node.inputs:
            stop = start + x.shape[axis]
            starts = tuple(start if i == axis else 0 for i in range(x.ndim))
            stops = tuple(stop if i == axis else s for i, s in enumerate(cts[0].shape))
            g = b.emit("slice", cts[0], starts=starts, stops=stops, steps=(1,) * x.ndim)
            out.append(b.emit("cast", g, dtype=x.dtype) if g.dtype != x.dtype else g)
            start = stop
        return out

    def lower_numba(self, node):
        axis = node.attrs["axis"]

        def call(kernel, ins, outs):
            # one C call for every block (a copy per input costs ~2 us of Python each)
            np.concatenate(ins, axis=axis, out=outs[0])
        return Lowering(call)

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 2)), rng.normal(size=(3, 4))], {"axis": 1})]


def _selection(attrs) -> tuple[slice, ...]:
    return tuple(slice(a, o, s) for a, o, s in zip(attrs["starts"], attrs["stops"],
                                                   attrs["steps"]))


def _slice_shape(shape, starts, stops, steps):
    return tuple(len(range(a, o, s)) for a, o, s in zip(starts, stops, steps))


@register
class Slice(OpDef):
    """y = x[starts:stops:steps] on every axis (rank kept; steps > 0)"""

    name = "slice"
    attrs = {"starts": (), "stops": (), "steps": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        return {k: _ints(v) for k, v in attrs.items()}

    def infer(self, in_types, starts, stops, steps):
        t = in_types[0]
        if not len(starts) == len(stops) == len(steps) == t.ndim:
            raise ShapeError(f"slice: needs one start/stop/step per axis of {t.shape}")
        for a, o, s, n in zip(starts, stops, steps, t.shape):
            if s <= 0 or not 0 <= a <= n or not 0 <= o <= n:
                raise ShapeError(f"slice: {a}:{o}:{s} is out of range for shape {t.shape}")
        return [t.with_(shape=_slice_shape(t.shape, starts, stops, steps))]

    def ref(self, x, starts, stops, steps):
        return x[tuple(slice(a, o, s) for a, o, s in zip(starts, stops, steps))].copy()

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        return [b.emit("unslice", cts[0], shape=x.shape, **node.attrs)]

    def lower_numba(self, node):
        sel = _selection(node.attrs)
        return Lowering(lambda kernel, ins, outs: np.copyto(outs[0], ins[0][sel]))

    def samples(self, rng):
        return [Sample([rng.normal(size=(5, 4))],
                       {"starts": (1, 0), "stops": (5, 4), "steps": (2, 3)})]


@register
class Unslice(OpDef):
    """y = zeros(shape) with y[starts:stops:steps] = x (the transpose of slice)"""

    name = "unslice"
    attrs = {"shape": (), "starts": (), "stops": (), "steps": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        return {k: _ints(v) for k, v in attrs.items()}

    def infer(self, in_types, shape, starts, stops, steps):
        t = in_types[0]
        if _slice_shape(shape, starts, stops, steps) != t.shape:
            raise ShapeError(f"unslice: {t.shape} does not fit the slice of {shape}")
        return [t.with_(shape=shape)]

    def ref(self, x, shape, starts, stops, steps):
        y = np.zeros(shape, dtype=x.dtype)
        y[tuple(slice(a, o, s) for a, o, s in zip(starts, stops, steps))] = x
        return y

    def vjp(self, b, node, cts):
        a = node.attrs
        return [b.emit("slice", cts[0], starts=a["starts"], stops=a["stops"], steps=a["steps"])]

    def lower_numba(self, node):
        sel = _selection(node.attrs)

        def call(kernel, ins, outs):
            outs[0].fill(0)
            outs[0][sel] = ins[0]
        return Lowering(call)

    def samples(self, rng):
        return [Sample([rng.normal(size=(2, 2))],
                       {"shape": (5, 4), "starts": (1, 0), "stops": (5, 4), "steps": (2, 3)})]


@register
class Relabel(OpDef):
    """y = x with format `fmt` (`""` strips it)"""

    name = "relabel"
    attrs = {"fmt": ""}
    expr, fusible, alias = "{0}", True, True

    def infer(self, in_types, fmt):
        t = in_types[0]
        if fmt and len(fmt) != t.ndim:
            raise FormatError(f"relabel: format {fmt!r} does not fit shape {t.shape}")
        return [t.with_(fmt=fmt)]

    def ref(self, x, fmt):
        return x

    def vjp(self, b, node, cts):
        return [b.relabel(cts[0], node.inputs[0].fmt)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 4))], {"fmt": "CB"})]

    def simplify(self, node, b):
        x = node.inputs[0]
        if x.producer is not None and x.producer.op is self:
            return [b.relabel(x.producer.inputs[0], node.attrs["fmt"])]
        return same_type_input(node, 0)
