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
from ..ir.types import TensorType, result_dtype
from .base import OpDef, Sample, register, require_float


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
        from .conv_kernels import _lower_conv

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
        from .conv_kernels import _lower_conv_backward_input

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
        from .conv_kernels import _lower_conv_backward_weights

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
        from .conv_kernels import lower_pad

        return lower_pad(node)

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
        from .conv_kernels import lower_pad_adjoint

        return lower_pad_adjoint(node)

    def samples(self, rng):
        pads = ((1, 2), (2, 1), (0, 0))
        return [Sample([rng.normal(size=(7, 6, 2))], {"pads": pads, "mode": m})
                for m in PAD_MODES] + [
            Sample([rng.normal(size=(12,))], {"pads": ((5, 4),), "mode": "symmetric-exclude-edge"})]
