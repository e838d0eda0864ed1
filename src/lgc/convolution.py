"""The MATLAB convolution and pooling functions on dlarrays (API.md §2): dlconv, dltranspconv,
maxpool, maxunpool, avgpool.

Each validates its arguments in user vocabulary (the function, the argument, expected and
actual), brings X into the op layout (spatial axes first, then C, then B) and builds IR through
`apply` with the primitives of `ops/conv.py` and `ops/pool.py`; none computes numbers itself.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .dlarray import DLArray, apply, canonical_order, dlarray, provenance, reshape, stripdims
from .errors import DTypeError, FormatError, ShapeError
from .functional import _check_batch, _check_float, _formatted
from .ops.conv import PAD_MODES, extent

# --- argument parsing -------------------------------------------------------------------------


def _per_dim(fn: str, arg: str, v, d: int, minimum: int = 1) -> tuple[int, ...]:
    """An int or a vector of d ints (one per spatial dimension), each >= minimum."""
    a = np.asarray(v) if not isinstance(v, str) else np.asarray([])
    ok = (a.dtype.kind in "iuf" and a.ndim <= 1 and a.size in (1, d)
          and bool(np.all(a == np.round(a))) and bool(np.all(a >= minimum)))
    if not ok:
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ShapeError(f"{fn}: {arg} must be a {kind} integer or a vector of {d} {kind} "
                         f"integers (one per spatial dimension), got {v!r}")
    return tuple(int(x) for x in np.broadcast_to(a.ravel(), (d,)))


def _pairs(fn: str, arg: str, v, d: int) -> tuple[tuple[int, int], ...]:
    """Padding/cropping as ((before, after), ...): an int, d ints (symmetric), or a (2, d)
    array [before; after] (for 1-D also a pair [before, after])."""
    a = np.asarray(v) if not isinstance(v, str) else np.asarray([])
    ok = a.dtype.kind in "iuf" and bool(np.all(a == np.round(a))) and bool(np.all(a >= 0))
    if ok and a.ndim == 2 and a.shape == (2, d):
        return tuple((int(lo), int(hi)) for lo, hi in zip(a[0], a[1]))
    if ok and d == 1 and a.ndim == 1 and a.size == 2:
        return ((int(a[0]), int(a[1])),)
    if ok and a.ndim <= 1 and a.size in (1, d):
        return tuple((int(p), int(p)) for p in np.broadcast_to(a.ravel(), (d,)))
    raise ShapeError(f"{fn}: {arg} must be \"same\", a non-negative integer, a vector of {d} "
                     f"(one per spatial dimension) or a 2-by-{d} array [before; after], "
                     f"got {v!r}")


def _same_padding(sizes, spans, strides) -> tuple[tuple[int, int], ...]:
    """Padding giving out = ceil(in / stride); the odd extra goes at the end (MATLAB)."""
    out = []
    for n, e, s in zip(sizes, spans, strides):
        total = max((math.ceil(n / s) - 1) * s + e - n, 0)
        out.append((total // 2, total - total // 2))
    return tuple(out)


def _padding(fn: str, v, d: int, sizes, spans, strides):
    if isinstance(v, str):
        if v != "same":
            raise ShapeError(f"{fn}: Padding must be \"same\" or numeric, got {v!r}")
        return _same_padding(sizes, spans, strides)
    return _pairs(fn, "Padding", v, d)


def _describe(x: DLArray) -> str:
    return f"X ({x.fmt} {x.shape})"


# --- layouts ----------------------------------------------------------------------------------


def _prepare(fn: str, X, DataFormat, time_is_spatial: bool):  # noqa: N803
    """Formatted X and its layout: (x, spatial axes, channel axis, batch axis or None, strip)."""
    in_shape = np.shape(X)
    x, strip = _formatted(fn, X, DataFormat)
    _check_float(fn, "X", x)
    _check_batch(fn, x)
    fmt = x.fmt
    if "U" in fmt:
        raise FormatError(f"{fn}: {_describe(x)} has U dimensions; label them S, C, B or T")
    if "C" not in fmt:
        raise FormatError(f"{fn}: {_describe(x)} has no channel dimension C")
    labels = "ST" if time_is_spatial else "S"
    spatial = [i for i, c in enumerate(fmt) if c in labels]
    if not 1 <= len(spatial) <= 3:
        what = "S or T" if time_is_spatial else "S"
        raise FormatError(f"{fn}: {_describe(x)} must have 1 to 3 spatial ({what}) dimensions, "
                          f"got {len(spatial)}")
    if not time_is_spatial and "T" in fmt:
        raise FormatError(f"{fn}: {_describe(x)} has a T dimension; pooling is over S only")
    c = fmt.index("C")
    b = fmt.index("B") if "B" in fmt else None
    return x, spatial, c, b, (in_shape if strip else None)


def _to_op_layout(x: DLArray, spatial, c, b):
    """x as an unformatted (S..., [T], C, N) array; returns it and the permutation used."""
    perm = list(spatial) + [c] + ([b] if b is not None else [])
    xs = stripdims(x)
    if perm != list(range(x.ndim)):
        xs = apply("transpose", xs, perm=perm)
    if b is None:
        xs = reshape(xs, xs.shape + (1,))
    return xs, perm


def _from_op_layout(y, perm, has_batch: bool, fmt: str):
    if not has_batch:
        y = reshape(y, y.shape[:-1])
    inv = [int(i) for i in np.argsort(perm)]
    if inv != list(range(len(inv))):
        y = apply("transpose", y, perm=inv)
    return apply("relabel", y, fmt=fmt)


def _caller_layout(y: DLArray, DataFormat: str, in_shape):  # noqa: N803
    """A result in the canonical layout of DataFormat, back in the caller's dimension order
    (unformatted); trailing singleton dims that DataFormat added are dropped again."""
    perm = canonical_order(DataFormat)
    y = stripdims(y)
    inv = [perm.index(i) for i in range(len(perm))]
    if inv != list(range(len(perm))):
        y = apply("transpose", y, perm=inv)
    n = len(in_shape)
    if y.ndim > n and all(s == 1 for s in y.shape[n:]):
        y = reshape(y, y.shape[:n])
    return y


def _weights(fn: str, weights, d: int, layout: str):
    """Weights as an unformatted (k1..kd, A, B, g) array (trailing singletons restored, as in
    MATLAB) and the number of groups."""
    w = weights if isinstance(weights, DLArray) else np.asarray(weights)
    if np.dtype(w.dtype).kind != "f":
        raise DTypeError(f"{fn}: weights must be float32 or float64, got {w.dtype} {w.shape}")
    if not d <= w.ndim <= d + 3:
        raise ShapeError(f"{fn}: weights for a {d}-D convolution must be {layout} "
                         f"({d + 2}-D, or {d + 3}-D with groups), got shape {w.shape}")
    full = tuple(w.shape) + (1,) * (d + 3 - w.ndim)
    w = stripdims(w) if isinstance(w, DLArray) else w
    if full != tuple(w.shape):
        w = reshape(w, full)
    return w, full[d + 2]


def _add_bias(fn: str, y, bias, d: int, n_out: int):
    """y (op layout) + bias with n_out elements (or one, shared); None or 0 means no bias."""
    if bias is None or (isinstance(bias, numbers.Number) and bias == 0):
        return y
    size = bias.size if isinstance(bias, DLArray) else np.size(bias)
    if size not in (n_out, 1):
        raise ShapeError(f"{fn}: bias must have one element per output channel ({n_out}) or "
                         f"one element, got shape {np.shape(bias)}")
    b = bias if isinstance(bias, DLArray) else np.asarray(bias, dtype=y.dtype)
    return y + reshape(b, (1,) * d + (size, 1))


# --- convolution ------------------------------------------------------------------------------


def dlconv(X, weights, bias=None, Stride=1, DilationFactor=1, Padding=0,  # noqa: N803
           PaddingValue=0, DataFormat=None):
    """dlconv(X, weights, bias, Stride=1, DilationFactor=1, Padding=0, PaddingValue=0) —
    deep learning convolution (cross-correlation, no kernel flip) over the S (or T) dimensions.

    Args:
        X: formatted dlarray with 1 to 3 spatial dims, e.g. "SCB", "SSCB", "SSSCB", "CBT".
        weights: (k1..kd, Cin/g, Cout/g) or, grouped, (k1..kd, Cin/g, Cout/g, g).
        bias: Cout elements in any shape (group-major when grouped), a scalar, or None/0.
        Stride, DilationFactor: an int or one per spatial dim.
        Padding: int, one per dim, a (2, d) array [before; after], or "same"
            (out = ceil(in / stride); an odd total puts the extra at the end).
        PaddingValue: a scalar, or "replicate", "symmetric-include-edge",
            "symmetric-exclude-edge", "circular".
    Returns:
        A dlarray in X's format with Cout channels.

    Example: `Y = dlconv(dlarray(x, "SSCB"), W, b, Padding="same")`.
    """
    fn = "dlconv"
    with provenance(fn):
        x, spatial, c, b, in_shape = _prepare(fn, X, DataFormat, time_is_spatial=True)
        d = len(spatial)
        w, g = _weights(fn, weights, d, "(k1..kd, Cin/g, Cout/g[, g])")
        ci, co = w.shape[d], w.shape[d + 1]
        if ci * g != x.shape[c]:
            raise ShapeError(f"{fn}: weights {np.shape(weights)} expect {ci * g} input channels "
                             f"({g} group(s) of {ci}), but {_describe(x)} has {x.shape[c]}")
        stride = _per_dim(fn, "Stride", Stride, d)
        dil = _per_dim(fn, "DilationFactor", DilationFactor, d)
        sizes = [x.shape[i] for i in spatial]
        spans = [extent(k, dl) for k, dl in zip(w.shape[:d], dil)]
        padding = _padding(fn, Padding, d, sizes, spans, stride)
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, padding))
        if any(e > p for e, p in zip(spans, padded)):
            raise ShapeError(f"{fn}: the filter (size {w.shape[:d]}, dilation {dil}, span "
                             f"{tuple(spans)}) is larger than the padded input {padded} of "
                             f"{_describe(x)}")
        xs, perm = _to_op_layout(x, spatial, c, b)
        xs, padding = _pad_input(fn, xs, padding, PaddingValue)
        y = apply("conv", xs, w, stride=stride, dilation=dil, padding=padding)
        y = _add_bias(fn, y, bias, d, co * g)
        y = _from_op_layout(y, perm, b is not None, x.fmt)
        return _caller_layout(y, DataFormat, in_shape) if in_shape is not None else y


def _pad_input(fn: str, xs, padding, value):
    """Apply a non-zero PaddingValue as its own pad op; zero padding stays inside conv."""
    if isinstance(value, str):
        if value not in PAD_MODES or value == "constant":
            modes = ", ".join(f'"{m}"' for m in PAD_MODES if m != "constant")
            raise ShapeError(f"{fn}: PaddingValue must be a scalar or one of {modes}, got "
                             f"{value!r}")
        mode, fill = value, 0.0
    elif isinstance(value, numbers.Real) or (np.ndim(value) == 0 and
                                             np.asarray(value).dtype.kind in "iuf"):
        mode, fill = "constant", float(value)
        if fill == 0.0:
            return xs, padding
    else:
        raise ShapeError(f"{fn}: PaddingValue must be a scalar or a padding mode name, got "
                         f"{value!r}")
    if not any(lo or hi for lo, hi in padding):
        return xs, padding
    xs = apply("pad", xs, pads=tuple(padding) + ((0, 0), (0, 0)), mode=mode, value=fill)
    return xs, tuple((0, 0) for _ in padding)


def dltranspconv(X, weights, bias=None, Stride=1, DilationFactor=1, Cropping=0,  # noqa: N803
                 DataFormat=None):
    """dltranspconv(X, weights, bias, Stride=1, DilationFactor=1, Cropping=0) — transposed
    convolution (the input gradient of dlconv) over the S (or T) dimensions.

    Args:
        X: formatted dlarray with 1 to 3 spatial dims and Cin channels.
        weights: (k1..kd, Cout/g, Cin/g) or (k1..kd, Cout/g, Cin/g, g) — the 3rd and 4th
            (channel) dims are swapped relative to dlconv.
        bias: Cout elements in any shape, a scalar, or None/0.
        Cropping: int, one per dim, a (2, d) array [before; after], or "same" (out =
            in·stride; an odd total crop removes the extra at the end).
    Returns:
        A dlarray in X's format of spatial size stride·(in−1) + dilation·(k−1) + 1 − crop.
    """
    fn = "dltranspconv"
    with provenance(fn):
        x, spatial, c, b, in_shape = _prepare(fn, X, DataFormat, time_is_spatial=True)
        d = len(spatial)
        w, g = _weights(fn, weights, d, "(k1..kd, Cout/g, Cin/g[, g])")
        co, ci = w.shape[d], w.shape[d + 1]
        if ci * g != x.shape[c]:
            raise ShapeError(f"{fn}: weights {np.shape(weights)} expect {ci * g} input channels "
                             f"in their 4th dimension ({g} group(s) of {ci}), but {_describe(x)} "
                             f"has {x.shape[c]}")
        stride = _per_dim(fn, "Stride", Stride, d)
        dil = _per_dim(fn, "DilationFactor", DilationFactor, d)
        sizes = [x.shape[i] for i in spatial]
        spans = [extent(k, dl) for k, dl in zip(w.shape[:d], dil)]
        if isinstance(Cropping, str):
            if Cropping != "same":
                raise ShapeError(f"{fn}: Cropping must be \"same\" or numeric, got {Cropping!r}")
            if any(e < s for e, s in zip(spans, stride)):
                raise ShapeError(f"{fn}: Cropping \"same\" needs filters at least as large as "
                                 f"the stride; filter span {tuple(spans)}, Stride {stride}")
            crop = tuple(((e - s) // 2, e - s - (e - s) // 2) for e, s in zip(spans, stride))
        else:
            crop = _pairs(fn, "Cropping", Cropping, d)
        outs = tuple(s * (n - 1) + e - lo - hi
                     for n, e, s, (lo, hi) in zip(sizes, spans, stride, crop))
        if any(o < 1 for o in outs):
            raise ShapeError(f"{fn}: Cropping {crop} removes the whole output (size before "
                             f"cropping {tuple(o + lo + hi for o, (lo, hi) in zip(outs, crop))})")
        xs, perm = _to_op_layout(x, spatial, c, b)
        y = apply("conv_backward_input", xs, w, stride=stride, dilation=dil, padding=crop,
                  in_size=outs)
        y = _add_bias(fn, y, bias, d, co * g)
        y = _from_op_layout(y, perm, b is not None, x.fmt)
        return _caller_layout(y, DataFormat, in_shape) if in_shape is not None else y


# --- pooling ----------------------------------------------------------------------------------


def _pool_args(fn: str, x: DLArray, d: int, poolsize, Stride, Padding):  # noqa: N803
    """(pool, stride, padding) for pooling over the leading d (S) dims of x."""
    sizes = x.shape[:d]
    if isinstance(poolsize, str):
        if poolsize != "global":
            raise ShapeError(f"{fn}: poolsize must be \"global\" or numeric, got {poolsize!r}")
        return tuple(sizes), (1,) * d, ((0, 0),) * d
    pool = _per_dim(fn, "poolsize", poolsize, d)
    stride = _per_dim(fn, "Stride", Stride, d)
    padding = _padding(fn, Padding, d, sizes, pool, stride)
    if any(p >= k for pp, k in zip(padding, pool) for p in pp):
        raise ShapeError(f"{fn}: Padding {padding} must be smaller than poolsize {pool} in "
                         f"every dimension")
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(sizes, padding))
    if any(k > p for k, p in zip(pool, padded)):
        raise ShapeError(f"{fn}: poolsize {pool} is larger than the padded input {padded} of "
                         f"{_describe(x)}")
    return pool, stride, padding


def maxpool(X, poolsize, Stride=1, Padding=0, ReturnIndices=False,  # noqa: N803
            DataFormat=None):
    """maxpool(X, poolsize, Stride=1, Padding=0) — max over pooling windows of the S dims;
    `maxpool(X, "global")` pools each whole spatial extent.

    With `ReturnIndices=True` returns `(Y, indx, inputSize)` (MATLAB `[Y, indx, inputSize]`):
    indx holds int64 linear indices into X in row-major order over its canonical layout
    (0-based), same shape as Y; inputSize is X's size. Padding never wins.
    MATLAB difference: 0-based, row-major indices.
    """
    fn = "maxpool"
    with provenance(fn):
        x, spatial, _, _, in_shape = _prepare(fn, X, DataFormat, time_is_spatial=False)
        d = len(spatial)
        pool, stride, padding = _pool_args(fn, x, d, poolsize, Stride, Padding)
        y, idx = apply("maxpool", x, pool=pool, stride=stride, padding=padding)
        if in_shape is not None:
            y, idx = (_caller_layout(v, DataFormat, in_shape) for v in (y, idx))
        if not ReturnIndices:
            return y
        return y, idx, tuple(in_shape if in_shape is not None else x.shape)


def maxunpool(X, indx, outputSize, DataFormat=None):  # noqa: N803
    """maxunpool(X, indx, outputSize) — scatter X to the positions `indx` (from maxpool) of a
    zero array of size outputSize. Values that maxpool's overlapping windows sent to the same
    position are summed (the exact transpose of maxpool's selection)."""
    fn = "maxunpool"
    with provenance(fn):
        x, spatial, _, _, in_shape = _prepare(fn, X, DataFormat, time_is_spatial=False)
        idx = indx if isinstance(indx, DLArray) else np.asarray(indx)
        if np.dtype(idx.dtype).kind not in "iu":
            raise DTypeError(f"{fn}: indx must hold integers (from maxpool), got {idx.dtype}")
        size = tuple(int(s) for s in np.ravel(outputSize))
        if in_shape is not None:
            idx = stripdims(dlarray(idx, DataFormat))
            if np.ndim(outputSize) != 1 or len(size) != len(in_shape):
                raise ShapeError(f"{fn}: outputSize {outputSize!r} must have {len(in_shape)} "
                                 f"entries, one per dimension of X")
            size = size + (1,) * (len(DataFormat) - len(size))
            size = tuple(size[p] for p in canonical_order(DataFormat))
        else:
            idx = stripdims(idx) if isinstance(idx, DLArray) else idx
        if tuple(idx.shape) != x.shape:
            raise ShapeError(f"{fn}: indx {tuple(idx.shape)} must have the size of {_describe(x)}")
        d = len(spatial)
        if len(size) != x.ndim or size[d:] != x.shape[d:] or any(s < 1 for s in size):
            raise ShapeError(f"{fn}: outputSize {tuple(np.ravel(outputSize))} must match "
                             f"{_describe(x)} in every non-spatial dimension")
        if isinstance(idx, np.ndarray) or not idx.is_traced:
            a = np.asarray(idx)
            if a.size and (a.min() < 0 or a.max() >= math.prod(size)):
                raise ShapeError(f"{fn}: indx values must lie in [0, {math.prod(size)}) for "
                                 f"outputSize {size}, got [{a.min()}, {a.max()}]")
        y = apply("maxunpool", stripdims(x), idx, shape=size, fmt=x.fmt)
        return _caller_layout(y, DataFormat, outputSize) if in_shape is not None else y


def avgpool(X, poolsize, Stride=1, Padding=0, PaddingValue=0, DataFormat=None):  # noqa: N803
    """avgpool(X, poolsize, Stride=1, Padding=0, PaddingValue=0) — mean over pooling windows
    of the S dims; `avgpool(X, "global")` averages each whole spatial extent.

    PaddingValue=0: padded zeros count in the mean (divide by the pool size);
    PaddingValue="mean": divide by the number of elements of X in each window.
    """
    fn = "avgpool"
    with provenance(fn):
        x, spatial, _, _, in_shape = _prepare(fn, X, DataFormat, time_is_spatial=False)
        d = len(spatial)
        if isinstance(PaddingValue, str) and PaddingValue == "mean":
            count_pad = False
        elif isinstance(PaddingValue, numbers.Real) and PaddingValue == 0:
            count_pad = True
        else:
            raise ShapeError(f"{fn}: PaddingValue must be 0 or \"mean\", got {PaddingValue!r}")
        pool, stride, padding = _pool_args(fn, x, d, poolsize, Stride, Padding)
        y = apply("avgpool", x, pool=pool, stride=stride, padding=padding, count_pad=count_pad)
        return _caller_layout(y, DataFormat, in_shape) if in_shape is not None else y
