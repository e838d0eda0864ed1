"""The MATLAB normalization functions on dlarrays (API.md §2): batchnorm, groupnorm, layernorm,
crosschannelnorm.

Statistics are composed from reductions and arithmetic (two-pass mean and biased variance), so
gradients and higher derivatives (gradient penalties) come from those ops' VJP rules; only
crosschannelnorm's sliding channel window is a primitive of its own (`channel_window_sum`).
"""

from __future__ import annotations

import numbers

import numpy as np

from .dlarray import DLArray, apply, finddim, provenance, reshape, sqrt, stripdims
from .errors import FormatError, ShapeError
from .functional import _check_batch, _check_float, _formatted, _unformatted_like


def _prepare(fn: str, X, DataFormat):  # noqa: N803
    """X formatted, with a channel dimension; returns (x, channel axis, strip)."""
    x, strip = _formatted(fn, X, DataFormat)
    _check_float(fn, "X", x)
    (c,) = finddim(x, "C") or (None,)
    if c is None:
        raise FormatError(f"{fn}: X ({x.fmt} {x.shape}) has no channel dimension C")
    _check_batch(fn, x)
    return x, c, strip


def _per_channel(fn: str, arg: str, v, x: DLArray, c: int):
    """A per-channel vector given in any shape with C elements, shaped to broadcast along C."""
    if v is None:
        raise ShapeError(f"{fn}: {arg} is required")
    size = v.size if isinstance(v, DLArray) else np.size(v)
    n = x.shape[c]
    if size != n:
        raise ShapeError(f"{fn}: {arg} must have one element per channel ({n} for X {x.fmt} "
                         f"{x.shape}), got shape {np.shape(v)}")
    shape = [1] * x.ndim
    shape[c] = n
    return reshape(v, shape)


def _positive(fn: str, arg: str, v) -> float:
    if not isinstance(v, numbers.Real) or not v > 0:
        raise ShapeError(f"{fn}: {arg} must be a positive scalar, got {v!r}")
    return float(v)


def _normalize(x, axes: tuple[int, ...], eps: float):
    """(x - mean) / sqrt(var + eps) over `axes` (biased variance); also returns mean and var."""
    n = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    mu = apply("reduce_sum", x, axes=axes, keepdims=True) * (1.0 / n)
    xc = x - mu
    var = apply("reduce_sum", xc * xc, axes=axes, keepdims=True) * (1.0 / n)
    return xc * (1.0 / sqrt(var + eps)), mu, var, n


def _like(v, ref):
    """`v` (C elements) in the shape, and format, of the user's argument `ref`."""
    out = reshape(v, np.shape(ref))
    fmt = ref.fmt if isinstance(ref, DLArray) else ""
    return apply("relabel", out, fmt=fmt) if fmt else out


# --- batchnorm --------------------------------------------------------------------------------


def batchnorm(X, offset, scaleFactor, runningMean=None, runningVar=None, *,  # noqa: N803
              Training=True, Epsilon=1e-5, MeanDecay=0.1, VarianceDecay=0.1,  # noqa: N803
              DataFormat=None):  # noqa: N803
    """batchnorm — normalize each channel over all other dimensions (batch normalization).

    Forms:
        Y = batchnorm(X, offset, scaleFactor)  (batch statistics)
        Y, runMean, runVar = batchnorm(X, offset, scaleFactor, runningMean, runningVar)
            (training: batch statistics; running statistics updated as
            run = decay·batch + (1−decay)·run, the variance from the UNBIASED batch variance)
        Y = batchnorm(X, offset, scaleFactor, trainedMean, trainedVar, Training=False)
            (inference with the given statistics)

    Args:
        X: formatted dlarray with a C dimension (or unformatted with DataFormat=).
        offset, scaleFactor, running/trained statistics: C elements in any shape.
        Epsilon: added to the variance (default 1e-5). MeanDecay, VarianceDecay: weight of the
            new batch in the running statistics (default 0.1).
    Returns:
        Y like X; updated running statistics in the shape (and format) that was passed.

    Y = scaleFactor · (X − μ) / sqrt(σ² + Epsilon) + offset, with μ, σ² the biased batch
    statistics per channel. Example: `Y, m, v = batchnorm(X, beta, gamma, m, v)`.
    MATLAB difference: Python has no nargout, so inference is chosen with Training=False.
    """
    fn = "batchnorm"
    with provenance(fn):
        x, c, strip = _prepare(fn, X, DataFormat)
        eps = _positive(fn, "Epsilon", Epsilon)
        off = _per_channel(fn, "offset", offset, x, c)
        scale = _per_channel(fn, "scaleFactor", scaleFactor, x, c)
        have_stats = runningMean is not None or runningVar is not None
        if have_stats:
            mean_b = _per_channel(fn, "runningMean", runningMean, x, c)
            var_b = _per_channel(fn, "runningVar", runningVar, x, c)
        if not Training:
            if not have_stats:
                raise ShapeError(f"{fn}: Training=False needs trainedMean and trainedVar")
            y = (x - mean_b) * (scale * (1.0 / sqrt(var_b + eps))) + off
            return _unformatted_like(y, np.shape(X), DataFormat) if strip else y
        axes = tuple(i for i in range(x.ndim) if i != c)
        xn, mu, var, n = _normalize(x, axes, eps)
        y = xn * scale + off
        y = _unformatted_like(y, np.shape(X), DataFormat) if strip else y
        if not have_stats:
            return y
        dm = _decay(fn, "MeanDecay", MeanDecay)
        dv = _decay(fn, "VarianceDecay", VarianceDecay)
        # one value per channel has no unbiased variance: keep the biased one (zero)
        unbiased = var * (n / max(n - 1, 1))
        new_mean = stripdims(mu) * dm + mean_b * (1.0 - dm)
        new_var = stripdims(unbiased) * dv + var_b * (1.0 - dv)
        return y, _like(new_mean, runningMean), _like(new_var, runningVar)


def _decay(fn: str, arg: str, v) -> float:
    if not isinstance(v, numbers.Real) or not 0 <= v <= 1:
        raise ShapeError(f"{fn}: {arg} must be a scalar in [0, 1], got {v!r}")
    return float(v)


# --- groupnorm, layernorm ---------------------------------------------------------------------


def groupnorm(X, numGroups, offset, scaleFactor, *, Epsilon=1e-5, DataFormat=None):  # noqa: N803
    """groupnorm(X, numGroups, offset, scaleFactor) — normalize groups of channels.

    Args:
        X: formatted dlarray with a C dimension (or unformatted with DataFormat=).
        numGroups: an int dividing the number of channels, "all-channels" (one group) or
            "channel-wise" (one group per channel). Groups are consecutive channels.
        offset, scaleFactor: C elements in any shape. Epsilon: default 1e-5.
    Returns:
        Y like X: the statistics are per observation over the group's channels and every S, T
        and U dimension.
    """
    fn = "groupnorm"
    with provenance(fn):
        x, c, strip = _prepare(fn, X, DataFormat)
        eps = _positive(fn, "Epsilon", Epsilon)
        nc = x.shape[c]
        if isinstance(numGroups, str):
            if numGroups not in ("all-channels", "channel-wise"):
                raise ShapeError(f"{fn}: numGroups must be a positive integer, 'all-channels' or "
                                 f"'channel-wise', got {numGroups!r}")
            g = 1 if numGroups == "all-channels" else nc
        elif isinstance(numGroups, numbers.Integral) and not isinstance(numGroups, bool):
            g = int(numGroups)
            if g < 1 or nc % g:
                raise ShapeError(f"{fn}: numGroups {g} must be a positive divisor of the number "
                                 f"of channels {nc} (X {x.fmt} {x.shape})")
        else:
            raise ShapeError(f"{fn}: numGroups must be a positive integer, 'all-channels' or "
                             f"'channel-wise', got {numGroups!r}")
        off = _per_channel(fn, "offset", offset, x, c)
        scale = _per_channel(fn, "scaleFactor", scaleFactor, x, c)
        # split C into (group, channel within group): row-major keeps groups consecutive
        xr = reshape(x, x.shape[:c] + (g, nc // g) + x.shape[c + 1:])
        keep = {c} | {b + 1 for b in finddim(x, "B")}
        axes = tuple(i for i in range(xr.ndim) if i not in keep)
        xn, *_ = _normalize(xr, axes, eps)
        xn = apply("relabel", reshape(xn, x.shape), fmt=x.fmt)
        y = xn * scale + off
        return _unformatted_like(y, np.shape(X), DataFormat) if strip else y


_LAYERNORM_DIMS = ("auto", "channel-only", "spatial-channel", "batch-excluded")


def layernorm(X, offset, scaleFactor, *, Epsilon=1e-5, OperationDimension="auto",  # noqa: N803
              DataFormat=None):  # noqa: N803
    """layernorm(X, offset, scaleFactor) — normalize each observation over its features.

    Args:
        X: formatted dlarray with a C dimension (or unformatted with DataFormat=).
        offset, scaleFactor: C elements in any shape. Epsilon: default 1e-5.
        OperationDimension: "auto" (over S and C when X has S dims — "SSCB" per observation;
            over C only otherwise — "CBT" per observation and time step), "channel-only",
            "spatial-channel", or "batch-excluded" (every dimension but B).
    Returns:
        Y like X.
    """
    fn = "layernorm"
    with provenance(fn):
        x, c, strip = _prepare(fn, X, DataFormat)
        eps = _positive(fn, "Epsilon", Epsilon)
        mode = OperationDimension
        if mode not in _LAYERNORM_DIMS:
            raise ShapeError(f"{fn}: OperationDimension must be one of {_LAYERNORM_DIMS}, got "
                             f"{mode!r}")
        if mode == "auto":
            mode = "spatial-channel" if "S" in x.fmt else "channel-only"
        labels = {"channel-only": "C", "spatial-channel": "SC", "batch-excluded": "SCTU"}[mode]
        axes = tuple(i for i, lab in enumerate(x.fmt) if lab in labels)
        off = _per_channel(fn, "offset", offset, x, c)
        scale = _per_channel(fn, "scaleFactor", scaleFactor, x, c)
        xn, *_ = _normalize(x, axes, eps)
        y = xn * scale + off
        return _unformatted_like(y, np.shape(X), DataFormat) if strip else y


# --- crosschannelnorm -------------------------------------------------------------------------


def crosschannelnorm(X, windowSize, *, Alpha=1e-4, Beta=0.75, K=2,  # noqa: N803
                     DataFormat=None):  # noqa: N803
    """crosschannelnorm(X, windowSize) — local response normalization across channels.

    Y = X / (K + Alpha·ss / windowSize)^Beta, where ss is the sum of squares of X over a window
    of channels that looks back floor((windowSize−1)/2) and forward floor(windowSize/2)
    channels (asymmetric for even windows), with zeros past the first and last channel.

    Args:
        X: formatted dlarray with a C dimension (or unformatted with DataFormat=).
        windowSize: positive int. Alpha (1e-4), Beta (0.75), K (2): scalars, K > 0.
    """
    fn = "crosschannelnorm"
    with provenance(fn):
        x, c, strip = _prepare(fn, X, DataFormat)
        if (not isinstance(windowSize, numbers.Integral) or isinstance(windowSize, bool)
                or windowSize < 1):
            raise ShapeError(f"{fn}: windowSize must be a positive integer, got {windowSize!r}")
        w = int(windowSize)
        k = _positive(fn, "K", K)
        for arg, v in (("Alpha", Alpha), ("Beta", Beta)):
            if not isinstance(v, numbers.Real):
                raise ShapeError(f"{fn}: {arg} must be a real scalar, got {v!r}")
        ss = apply("channel_window_sum", x * x, axis=c, before=(w - 1) // 2, after=w // 2)
        y = x / (ss * (float(Alpha) / w) + k) ** float(Beta)
        return _unformatted_like(y, np.shape(X), DataFormat) if strip else y
