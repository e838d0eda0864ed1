"""Convolution primitives over the leading spatial axes, and padding with MATLAB's PaddingValue
modes.

Layout (normalized by `lgc.convolution`): input x (S1..Sd, Cin, N); weights
(k1..kd, Cin/g, Cout/g, g); output (O1..Od, Cout, N). Channels are group-major: input channel
`grp·Cin/g + i`, output channel `grp·Cout/g + o`. Padding is zeros, `((before, after), ...)`
per spatial axis; other fill modes are a separate `pad` op in front of the convolution.

`conv`, `conv_backward_input` and `conv_backward_weights` are the three partial maps of the
trilinear form <conv(x, w), y>, so the VJP of each is made of the other two and derivatives of
any order stay inside this family. `conv_backward_input` is also the transposed convolution.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ShapeError
from ..ir.types import TensorType, np_dtype, result_dtype
from .base import Lowering, OpDef, Sample, loop_for, register, require_float


def ints(xs) -> tuple[int, ...]:
    return tuple(int(x) for x in xs)


def pairs(xs) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in xs)


def extent(k: int, dilation: int) -> int:
    """The span of a dilated kernel of size k."""
    return dilation * (k - 1) + 1


def out_size(n: int, k: int, stride: int, dilation: int, pad: tuple[int, int]) -> int:
    """floor((n + before + after − span) / stride) + 1; ≤ 0 when the window does not fit."""
    p = n + pad[0] + pad[1] - extent(k, dilation)
    return p // stride + 1 if p >= 0 else 0


def check_geometry(op: str, d: int, in_sizes, kernel, stride, dilation, padding) -> tuple:
    """Validate per-axis attributes and return the output spatial sizes."""
    for name, v in (("stride", stride), ("dilation", dilation), ("padding", padding)):
        if len(v) != d:
            raise ShapeError(f"{op}: {name} {v} must have one entry per spatial axis ({d})")
    if any(s < 1 for s in stride) or any(s < 1 for s in dilation):
        raise ShapeError(f"{op}: stride {stride} and dilation {dilation} must be positive")
    if any(p < 0 for pp in padding for p in pp):
        raise ShapeError(f"{op}: padding {padding} must be non-negative")
    if any(k < 1 for k in kernel):
        raise ShapeError(f"{op}: kernel size {tuple(kernel)} must be positive")
    outs = tuple(out_size(n, k, s, dl, p)
                 for n, k, s, dl, p in zip(in_sizes, kernel, stride, dilation, padding))
    if any(o < 1 for o in outs):
        padded = tuple(n + a + b for n, (a, b) in zip(in_sizes, padding))
        spans = tuple(extent(k, dl) for k, dl in zip(kernel, dilation))
        raise ShapeError(f"{op}: the kernel span {spans} is larger than the padded input "
                         f"{padded} (input {tuple(in_sizes)}, padding {padding})")
    return outs


def zero_pad(x: np.ndarray, padding, value: float = 0.0) -> np.ndarray:
    """x padded with `value` on its leading len(padding) axes."""
    if not any(a or b for a, b in padding):
        return x
    full = list(padding) + [(0, 0)] * (x.ndim - len(padding))
    return np.pad(x, full, constant_values=value)


def windows(xp: np.ndarray, kernel, stride, dilation) -> np.ndarray:
    """A view (O1..Od, rest..., k1..kd) of the strided, dilated windows over the leading axes."""
    d = len(kernel)
    spans = [extent(k, dl) for k, dl in zip(kernel, dilation)]
    v = sliding_window_view(xp, spans, axis=tuple(range(d)))
    sel = tuple(slice(None, None, s) for s in stride) + (slice(None),) * (xp.ndim - d)
    return v[sel + tuple(slice(None, None, dl) for dl in dilation)]


def offset_slices(kk, stride, dilation, outs) -> tuple[slice, ...]:
    """The input positions o·stride + k·dilation (o = 0..O−1) that kernel offset kk reads."""
    return tuple(slice(k * dl, k * dl + (o - 1) * s + 1, s)
                 for k, dl, o, s in zip(kk, dilation, outs, stride))


def scatter_windows(cols: np.ndarray, padded_shape, kernel, stride, dilation) -> np.ndarray:
    """The adjoint of `windows`: sum cols (O1..Od, rest..., k1..kd) back into a padded array.
    The loop runs over kernel offsets only; each step is one strided slice add."""
    d = len(kernel)
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for kk in np.ndindex(*kernel):
        out[offset_slices(kk, stride, dilation, cols.shape[:d])] += cols[(Ellipsis, *kk)]
    return out


def crop(xp: np.ndarray, padding, in_sizes) -> np.ndarray:
    return xp[tuple(slice(a, a + n) for (a, _), n in zip(padding, in_sizes))]


class _ConvOp(OpDef):
    attrs = {"stride": (), "dilation": (), "padding": ()}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        for k in ("stride", "dilation", "in_size", "kernel"):
            if k in attrs:
                attrs[k] = ints(attrs[k])
        attrs["padding"] = pairs(attrs["padding"])
        if "groups" in attrs:
            attrs["groups"] = int(attrs["groups"])
        return attrs

    @staticmethod
    def _geom(node):
        a = node.attrs
        return {"stride": a["stride"], "dilation": a["dilation"], "padding": a["padding"]}


def _weights_dims(op: str, w: TensorType, x: TensorType, xname: str) -> int:
    """The number of spatial axes d implied by weights (k..., ci, co, g) and data (S..., C, N)."""
    d = w.ndim - 3
    if d < 1:
        raise ShapeError(f"{op}: weights must be (k1..kd, Cin/g, Cout/g, g), got {w.shape}")
    if x.ndim != d + 2:
        raise ShapeError(f"{op}: {xname} must be (S1..S{d}, C, N) to match weights {w.shape}, "
                         f"got {x.shape}")
    return d


# --- channels-last kernels -------------------------------------------------------------------
# The data moves once into (g, N, S..., c) order; then each kernel offset is one batched BLAS
# matmul over a strided view (the loops run over kernel offsets only).


def _to_cl(x: np.ndarray, g: int) -> np.ndarray:
    """(S..., g·c, N) -> contiguous (g, N, S..., c)."""
    d = x.ndim - 2
    xt = x.reshape(x.shape[:d] + (g, x.shape[d] // g, x.shape[d + 1]))
    return np.ascontiguousarray(xt.transpose(d, d + 2, *range(d), d + 1))


def _from_cl(t: np.ndarray) -> np.ndarray:
    """(g, N, S..., c) -> (S..., g·c, N)."""
    d = t.ndim - 3
    g, n, c = t.shape[0], t.shape[1], t.shape[-1]
    return t.transpose(*range(2, 2 + d), 0, 2 + d, 1).reshape(t.shape[2:2 + d] + (g * c, n))


def _w_at(w: np.ndarray, kk) -> np.ndarray:
    """The (ci, co) matrices of every group at kernel offset kk, as (g, 1.., ci, co) to
    broadcast over the batch and all but the last spatial axis."""
    wk = w[kk].transpose(2, 0, 1)
    return wk.reshape((wk.shape[0],) + (1,) * len(kk) + wk.shape[1:])


def _cl_slice(kk, stride, dilation, outs) -> tuple[slice, ...]:
    return (slice(None), slice(None)) + offset_slices(kk, stride, dilation, outs)


@register
class Conv(_ConvOp):
    """y[o, grp·co+c, n] = Σ_{k,i} xpad[o·stride + k·dilation, grp·ci+i, n] · w[k, i, c, grp]"""

    name = "conv"

    def infer(self, in_types, stride, dilation, padding):
        x, w = in_types
        require_float(self.name, x, "x")
        require_float(self.name, w, "weights")
        d = _weights_dims(self.name, w, x, "x")
        ci, co, g = w.shape[d:]
        if x.shape[d] != ci * g:
            raise ShapeError(f"conv: weights {w.shape} expect {ci * g} input channels "
                             f"({g} groups of {ci}) but x {x.shape} has {x.shape[d]}")
        outs = check_geometry(self.name, d, x.shape[:d], w.shape[:d], stride, dilation, padding)
        return [TensorType(result_dtype(x.dtype, w.dtype), (*outs, co * g, x.shape[d + 1]),
                           x.fmt)]

    def ref(self, x, w, stride, dilation, padding):
        d = w.ndim - 3
        kernel, co, g = w.shape[:d], w.shape[d + 1], w.shape[d + 2]
        xt = _to_cl(zero_pad(x, padding), g)
        outs = tuple(out_size(n, k, s, dl, p)
                     for n, k, s, dl, p in zip(x.shape, kernel, stride, dilation, padding))
        yt = np.zeros((g, x.shape[d + 1], *outs, co), dtype=result_dtype_np(x, w))
        for kk in np.ndindex(*kernel):
            yt += xt[_cl_slice(kk, stride, dilation, outs)] @ _w_at(w, kk)
        return _from_cl(yt)

    def vjp(self, b, node, cts):
        x, w = node.inputs
        ct = cts[0]
        d = w.ndim - 3
        geom = self._geom(node)
        gx = b.emit("conv_backward_input", ct, w, in_size=x.shape[:d], **geom)
        gw = b.emit("conv_backward_weights", x, ct, kernel=w.shape[:d], groups=w.shape[-1],
                    **geom)
        return [_like(b, gx, x), _like(b, gw, w)]

    def lower_numba(self, node):
        return _lower_conv(node)

    def samples(self, rng):
        n = rng.normal
        return [
            Sample([n(size=(5, 2, 2)), n(size=(3, 2, 3, 1))],
                   {"stride": (1,), "dilation": (1,), "padding": ((0, 0),)}),
            Sample([n(size=(5, 4, 2, 2)), n(size=(2, 3, 2, 2, 1))],
                   {"stride": (2, 1), "dilation": (1, 1), "padding": ((1, 0), (0, 1))}),
            Sample([n(size=(5, 5, 4, 1)), n(size=(2, 2, 2, 3, 2))],
                   {"stride": (1, 2), "dilation": (2, 1), "padding": ((1, 1), (1, 2))}),
            Sample([n(size=(3, 4, 3, 1, 2)), n(size=(2, 2, 2, 1, 2, 1))],
                   {"stride": (1, 2, 1), "dilation": (1, 1, 2), "padding": ((0, 1), (0, 0),
                                                                            (1, 0))}),
        ]


@register
class ConvBackwardInput(_ConvOp):
    """x̄[o·stride + k·dilation − before, grp·ci+i, n] += Σ_c ȳ[o, grp·co+c, n] · w[k, i, c, grp]

    The input gradient of conv (its transpose in x), which is also the transposed convolution.
    """

    name = "conv_backward_input"
    attrs = {**_ConvOp.attrs, "in_size": ()}

    def infer(self, in_types, stride, dilation, padding, in_size):
        gy, w = in_types
        require_float(self.name, gy, "cotangent")
        require_float(self.name, w, "weights")
        d = _weights_dims(self.name, w, gy, "cotangent")
        ci, co, g = w.shape[d:]
        if gy.shape[d] != co * g:
            raise ShapeError(f"conv_backward_input: weights {w.shape} produce {co * g} channels "
                             f"({g} groups of {co}) but the cotangent {gy.shape} has "
                             f"{gy.shape[d]}")
        if len(in_size) != d:
            raise ShapeError(f"conv_backward_input: in_size {in_size} must have {d} entries")
        outs = check_geometry(self.name, d, in_size, w.shape[:d], stride, dilation, padding)
        if outs != gy.shape[:d]:
            raise ShapeError(f"conv_backward_input: an input of spatial size {in_size} gives "
                             f"{outs}, but the cotangent {gy.shape} has {gy.shape[:d]}")
        return [TensorType(result_dtype(gy.dtype, w.dtype), (*in_size, ci * g, gy.shape[d + 1]),
                           gy.fmt)]

    def ref(self, gy, w, stride, dilation, padding, in_size):
        d = w.ndim - 3
        kernel, ci, g = w.shape[:d], w.shape[d], w.shape[d + 2]
        outs = gy.shape[:d]
        gt = _to_cl(gy, g)
        padded = tuple(s + a + b for s, (a, b) in zip(in_size, padding))
        xt = np.zeros((g, gy.shape[d + 1], *padded, ci), dtype=result_dtype_np(gy, w))
        for kk in np.ndindex(*kernel):
            xt[_cl_slice(kk, stride, dilation, outs)] += gt @ np.swapaxes(_w_at(w, kk), -1, -2)
        return np.ascontiguousarray(crop(_from_cl(xt), padding, in_size))

    def vjp(self, b, node, cts):
        gy, w = node.inputs
        ct = cts[0]
        d = w.ndim - 3
        geom = self._geom(node)
        g_gy = b.emit("conv", ct, w, **geom)
        g_w = b.emit("conv_backward_weights", ct, gy, kernel=w.shape[:d], groups=w.shape[-1],
                     **geom)
        return [_like(b, g_gy, gy), _like(b, g_w, w)]

    def lower_numba(self, node):
        return _lower_conv_backward_input(node)

    def samples(self, rng):
        n = rng.normal
        return [
            # 5 = 2·(2−1) + 2 + 1: the last input row is never read (floor in out_size)
            Sample([n(size=(2, 3, 2)), n(size=(2, 2, 3, 1))],
                   {"stride": (2,), "dilation": (1,), "padding": ((0, 0),), "in_size": (5,)}),
            Sample([n(size=(3, 2, 4, 1)), n(size=(2, 2, 1, 2, 2))],
                   {"stride": (2, 1), "dilation": (1, 2), "padding": ((1, 0), (0, 1)),
                    "in_size": (5, 3)}),
            Sample([n(size=(2, 2, 2, 2, 1)), n(size=(2, 1, 2, 3, 2, 1))],
                   {"stride": (1, 2, 1), "dilation": (1, 1, 1), "padding": ((0, 0),) * 3,
                    "in_size": (3, 3, 3)}),
        ]


@register
class ConvBackwardWeights(_ConvOp):
    """w̄[k, i, c, grp] = Σ_{o,n} xpad[o·stride + k·dilation, grp·ci+i, n] · ȳ[o, grp·co+c, n]"""

    name = "conv_backward_weights"
    attrs = {**_ConvOp.attrs, "kernel": (), "groups": 1}

    def infer(self, in_types, stride, dilation, padding, kernel, groups):
        x, gy = in_types
        require_float(self.name, x, "x")
        require_float(self.name, gy, "cotangent")
        d = len(kernel)
        if d < 1 or x.ndim != d + 2 or gy.ndim != d + 2:
            raise ShapeError(f"conv_backward_weights: x {x.shape} and the cotangent {gy.shape} "
                             f"must be (S1..S{d}, C, N) for kernel {kernel}")
        if groups < 1 or x.shape[d] % groups or gy.shape[d] % groups:
            raise ShapeError(f"conv_backward_weights: {groups} groups do not divide the "
                             f"channels of x {x.shape} and the cotangent {gy.shape}")
        if x.shape[d + 1] != gy.shape[d + 1]:
            raise ShapeError(f"conv_backward_weights: x {x.shape} and the cotangent {gy.shape} "
                             f"have different batch sizes")
        outs = check_geometry(self.name, d, x.shape[:d], kernel, stride, dilation, padding)
        if outs != gy.shape[:d]:
            raise ShapeError(f"conv_backward_weights: x {x.shape} gives outputs {outs}, but the "
                             f"cotangent {gy.shape} has {gy.shape[:d]}")
        shape = (*kernel, x.shape[d] // groups, gy.shape[d] // groups, groups)
        return [TensorType(result_dtype(x.dtype, gy.dtype), shape)]

    def ref(self, x, gy, stride, dilation, padding, kernel, groups):
        d, g = len(kernel), groups
        ci, co = x.shape[d] // g, gy.shape[d] // g
        xt = _to_cl(zero_pad(x, padding), g)
        gm = _to_cl(gy, g).reshape(g, -1, co)  # (g, N·O, co)
        gw = np.zeros((*kernel, ci, co, g), dtype=result_dtype_np(x, gy))
        for kk in np.ndindex(*kernel):
            xs = xt[_cl_slice(kk, stride, dilation, gy.shape[:d])].reshape(g, -1, ci)
            # einsum reaches BLAS here; a batched matmul over a transposed view can crawl
            gw[kk] = np.einsum("gmi,gmc->icg", xs, gm, optimize=True)
        return gw

    def vjp(self, b, node, cts):
        x, gy = node.inputs
        ct = cts[0]
        d = len(node.attrs["kernel"])
        geom = self._geom(node)
        g_x = b.emit("conv_backward_input", gy, ct, in_size=x.shape[:d], **geom)
        g_gy = b.emit("conv", x, ct, **geom)
        return [_like(b, g_x, x), _like(b, g_gy, gy)]

    def lower_numba(self, node):
        return _lower_conv_backward_weights(node)

    def samples(self, rng):
        n = rng.normal
        return [
            Sample([n(size=(5, 2, 2)), n(size=(2, 3, 2))],
                   {"stride": (2,), "dilation": (1,), "padding": ((0, 0),), "kernel": (2,)}),
            Sample([n(size=(4, 3, 4, 1)), n(size=(3, 2, 2, 1))],
                   {"stride": (1, 2), "dilation": (2, 1), "padding": ((1, 0), (0, 1)),
                    "kernel": (2, 2), "groups": 2}),
            Sample([n(size=(3, 3, 2, 1, 2)), n(size=(2, 2, 1, 2, 2))],
                   {"stride": (1, 1, 2), "dilation": (1, 1, 1), "padding": ((0, 0),) * 3,
                    "kernel": (2, 2, 2)}),
        ]


def result_dtype_np(*arrays) -> np.dtype:
    return np.result_type(*(a.dtype for a in arrays))


def _like(b, g, x):
    """g with x's dtype and format (VJPs return cotangents typed like their inputs)."""
    if g.dtype != x.dtype:
        g = b.emit("cast", g, dtype=x.dtype)
    return b.relabel(g, x.fmt)


# --- padding ---------------------------------------------------------------------------------

PAD_MODES = {
    "constant": "constant",
    "replicate": "edge",
    "symmetric-include-edge": "symmetric",
    "symmetric-exclude-edge": "reflect",
    "circular": "wrap",
}


def _source_index(n: int, pad: tuple[int, int], mode: str) -> np.ndarray:
    """For each padded position along one axis, the input index it copies (−1: constant)."""
    if mode == "constant":
        return np.pad(np.arange(n), pad, constant_values=-1)
    return np.pad(np.arange(n), pad, mode=PAD_MODES[mode])


class _PadOp(OpDef):
    attrs = {"pads": (), "mode": "constant"}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["pads"] = pairs(attrs["pads"])
        if "value" in attrs:
            attrs["value"] = float(attrs["value"])
        return attrs

    def _check(self, t: TensorType, pads, mode, sizes) -> None:
        if mode not in PAD_MODES:
            raise ShapeError(f"{self.name}: mode must be one of {sorted(PAD_MODES)}, got "
                             f"{mode!r}")
        if len(pads) != t.ndim or any(p < 0 for pp in pads for p in pp):
            raise ShapeError(f"{self.name}: pads {pads} must be one non-negative "
                             f"(before, after) pair per axis of {t.shape}")
        for n, (a, c) in zip(sizes, pads):
            if mode != "constant" and (a or c) and n < 1:
                raise ShapeError(f"{self.name}: cannot pad an empty axis in mode {mode!r} "
                                 f"(input {tuple(sizes)})")


@register
class Pad(_PadOp):
    """y = x padded by `pads` per axis with `value` ("constant") or copies of x (other modes)"""

    name = "pad"
    attrs = {**_PadOp.attrs, "value": 0.0}

    def infer(self, in_types, pads, mode, value):
        t = in_types[0]
        require_float(self.name, t)
        self._check(t, pads, mode, t.shape)
        return [t.with_(shape=tuple(n + a + c for n, (a, c) in zip(t.shape, pads)))]

    def ref(self, x, pads, mode, value):
        if mode == "constant":
            return np.pad(x, pads, constant_values=value)
        return np.pad(x, pads, mode=PAD_MODES[mode])

    def vjp(self, b, node, cts):
        a = node.attrs
        return [b.emit("pad_adjoint", cts[0], pads=a["pads"], mode=a["mode"])]

    def lower_numba(self, node):
        x, a = node.inputs[0], node.attrs
        tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
        rows_in = int(np.prod(x.shape[:lead], dtype=np.int64))
        value, shape = a["value"], (tab.size, -1)

        def call(kernel, ins, outs):
            kernel(outs[0].reshape(shape), ins[0].reshape(rows_in, -1), tab, value)
        return Lowering(call, _GATHER_ROWS.replace("LOOP", loop_for(node.out.type.size)))

    def samples(self, rng):
        x = rng.normal(size=(4, 3, 2))
        pads = ((1, 2), (2, 1), (0, 0))
        return [Sample([x], {"pads": pads, "mode": m, "value": 0.5 if m == "constant" else 0.0})
                for m in PAD_MODES] + [
            Sample([rng.normal(size=(3,))], {"pads": ((5, 4),), "mode": "circular"})]


@register
class PadAdjoint(_PadOp):
    """x̄[i] = Σ of ȳ over the padded positions that copy x[i] (the transpose of pad)"""

    name = "pad_adjoint"

    def infer(self, in_types, pads, mode):
        t = in_types[0]
        require_float(self.name, t)
        sizes = tuple(n - a - c for n, (a, c) in zip(t.shape, pads))
        if any(n < 0 for n in sizes):
            raise ShapeError(f"pad_adjoint: pads {pads} exceed the padded shape {t.shape}")
        self._check(t, pads, mode, sizes)
        return [t.with_(shape=sizes)]

    def ref(self, y, pads, mode):
        out = y
        for ax, (a, c) in enumerate(pads):
            if not (a or c):
                continue
            n = out.shape[ax] - a - c
            src = _source_index(n, (a, c), mode)
            # one-hot map padded position -> source; its transpose sums the copies back
            m = (src[:, None] == np.arange(n)[None, :]).astype(y.dtype)
            out = np.moveaxis(np.tensordot(out, m, axes=([ax], [0])), -1, ax)
        return np.ascontiguousarray(out)

    def vjp(self, b, node, cts):
        a = node.attrs
        return [b.emit("pad", cts[0], pads=a["pads"], mode=a["mode"], value=0.0)]

    def lower_numba(self, node):
        x, a = node.outputs[0], node.attrs
        tab, lead = _pad_table(x.shape, a["pads"], a["mode"])
        rows = int(np.prod(x.shape[:lead], dtype=np.int64))
        ptr, ent = inverse_table(tab, rows)

        def call(kernel, ins, outs):
            kernel(outs[0].reshape(rows, -1), ins[0].reshape(tab.size, -1), ptr, ent)
        return Lowering(call, _SUM_ROWS.replace("LOOP", loop_for(node.inputs[0].type.size)))

    def samples(self, rng):
        pads = ((1, 2), (2, 1), (0, 0))
        return [Sample([rng.normal(size=(7, 6, 2))], {"pads": pads, "mode": m})
                for m in PAD_MODES] + [
            Sample([rng.normal(size=(12,))], {"pads": ((5, 4),), "mode": "symmetric-exclude-edge"})]


# --- Numba lowering --------------------------------------------------------------------------
# Every spatial geometry (rank, stride, dilation, padding) becomes an int64 table built once per
# executable from the static shapes: tab[o, k] = the flat input position window o reads at
# kernel offset k, or -1 in the padding. Kernels see x as (S, C, N) and y as (O, C, N), so one
# source serves every rank and size; the batch N is innermost and contiguous in every array.


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

# the weight gradient contracts over (o, n): col (g, K·ci, O·N) and t (g, co, O·N) make it one
# GEMM per group
_IM2COL_T = """def kernel(col, t, x, gy, tab):
    G, N = col.shape[0], x.shape[2]
    ci, co = x.shape[1] // G, t.shape[1]
    for o in range(tab.shape[0]):
        for k in range(tab.shape[1]):
            s = tab[o, k]
            for g in range(G):
                for i in range(ci):
                    r = col[g, k * ci + i]
                    if s < 0:
                        for n in range(N):
                            r[o * N + n] = 0
                    else:
                        xr = x[s, g * ci + i]
                        for n in range(N):
                            r[o * N + n] = xr[n]
        for g in range(G):
            for c in range(co):
                tr = t[g, c]
                yr = gy[o, g * co + c]
                for n in range(N):
                    tr[o * N + n] = yr[n]
    return 0
"""


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
    # rows padded past O·N: a power-of-two row stride sends every row's writes to the same
    # cache sets (measured 100x slower on 32x32x64 inputs)
    ld = o * n + 16
    col, t = np.empty((g, k * ci, ld), dt)[:, :, :o * n], np.empty((g, co, ld), dt)[:, :, :o * n]
    res = np.empty((g, k * ci, co), dt)
    xs, ys = (-1, ci * g, n), (o, co * g, n)

    def call(kernel, ins, outs):
        kernel(col, t, ins[0].reshape(xs), ins[1].reshape(ys), tab)
        for j in range(g):
            np.matmul(col[j], t[j].T, out=res[j])
        np.copyto(outs[0].reshape(k * ci, co, g), res.transpose(1, 2, 0))
    return Lowering(call, _IM2COL_T)


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
