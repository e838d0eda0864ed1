"""Weight initializers (API.md §5): the functions behind the layers' `WeightsInitializer=`
options, also usable directly in model functions.

Each returns a float32 numpy array of the requested shape, drawn from `rng` (a numpy Generator;
default: lgc's generator, seeded by `lgc.rng(seed)`), so a seeded run is reproducible.

Fan-in/fan-out follow MATLAB's conventions when not given: a 2-D (out, in) fully connected or
recurrent matrix has fanIn = in, fanOut = out; a convolution (k1..kd, C, F) has
fanIn = prod(k)·C, fanOut = prod(k)·F (a transposed convolution's (k1..kd, F, C) weights are
read the same way, as MATLAB does); a vector of n elements has fanIn = fanOut = n.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

from .errors import ShapeError
from .ops.creation import generator


def _shape(fn: str, shape) -> tuple[int, ...]:
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"{fn}: shape must be a tuple of non-negative integers, got "
                         f"{shape!r}") from None
    if any(s < 0 for s in out) or any(not float(s).is_integer() for s in shape):
        raise ShapeError(f"{fn}: shape must be a tuple of non-negative integers, got {shape!r}")
    return out


def fans(shape) -> tuple[int, int]:
    """(fanIn, fanOut) of a parameter of this shape, by MATLAB's conventions."""
    shape = _shape("fans", shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[1], shape[0]
    receptive = math.prod(shape[:-2])
    return receptive * shape[-2], receptive * shape[-1]


def _rng(rng) -> np.random.Generator:
    return generator() if rng is None else rng


def _positive_fan(fn: str, arg: str, v: int) -> int:
    if not isinstance(v, numbers.Integral) or v < 1:
        raise ShapeError(f"{fn}: {arg} must be a positive integer, got {v!r}")
    return int(v)


def glorot(shape, fanIn=None, fanOut=None, rng=None) -> np.ndarray:  # noqa: N803
    """glorot(shape, fanIn=None, fanOut=None, rng=None) — Glorot (Xavier) uniform:
    U(−a, a) with a = sqrt(6 / (fanIn + fanOut)).

    Example: `W = lgc.init.glorot((10, 784))` (fully connected, fanIn 784, fanOut 10).
    """
    shape = _shape("glorot", shape)
    fi, fo = fans(shape)
    fi = _positive_fan("glorot", "fanIn", fi if fanIn is None else fanIn)
    fo = _positive_fan("glorot", "fanOut", fo if fanOut is None else fanOut)
    bound = math.sqrt(6.0 / (fi + fo))
    return _rng(rng).uniform(-bound, bound, size=shape).astype(np.float32)


def he(shape, fanIn=None, rng=None) -> np.ndarray:  # noqa: N803
    """he(shape, fanIn=None, rng=None) — He (Kaiming) normal: N(0, 2 / fanIn)."""
    shape = _shape("he", shape)
    fi = _positive_fan("he", "fanIn", fans(shape)[0] if fanIn is None else fanIn)
    return (_rng(rng).standard_normal(size=shape) * math.sqrt(2.0 / fi)).astype(np.float32)


def narrow_normal(shape, rng=None) -> np.ndarray:
    """narrow_normal(shape, rng=None) — N(0, 0.01²) (MATLAB "narrow-normal")."""
    shape = _shape("narrow_normal", shape)
    return (_rng(rng).standard_normal(size=shape) * 0.01).astype(np.float32)


def orthogonal(shape, rng=None) -> np.ndarray:
    """orthogonal(shape, rng=None) — Q of the QR decomposition of a standard normal matrix,
    its column signs corrected by sign(diag(R)) so that Q is uniformly (Haar) distributed.

    The parameter is viewed as a matrix (rows, last dim) (a 2-D shape is itself); a tall
    matrix gets orthonormal columns, a wide one orthonormal rows.
    """
    shape = _shape("orthogonal", shape)
    if len(shape) < 2:
        raise ShapeError(f"orthogonal: shape must have at least 2 dimensions, got {shape}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    if rows == 0 or cols == 0:
        return np.zeros(shape, np.float32)
    z = _rng(rng).standard_normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(z)
    # without the sign fix the distribution is biased by the QR convention
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    return q.reshape(shape).astype(np.float32)


def zeros(shape, rng=None) -> np.ndarray:
    """zeros(shape) — all zeros (`rng` is accepted for a uniform signature and unused)."""
    return np.zeros(_shape("zeros", shape), np.float32)


def ones(shape, rng=None) -> np.ndarray:
    """ones(shape) — all ones."""
    return np.ones(_shape("ones", shape), np.float32)


def unit_forget_gate(shape, rng=None) -> np.ndarray:
    """unit_forget_gate(shape) — LSTM bias (4H, 1) with ones in the forget-gate rows
    (H..2H−1, gate order i, f, g, o) and zeros elsewhere."""
    shape = _shape("unit_forget_gate", shape)
    if not shape or shape[0] % 4 or math.prod(shape[1:]) != 1:
        raise ShapeError(f"unit_forget_gate: shape must be (4H,) or (4H, 1) for an LSTM bias, "
                         f"got {shape}")
    h = shape[0] // 4
    out = np.zeros(shape, np.float32)
    out[h:2 * h] = 1.0
    return out


# MATLAB's option names -> the functions above
INITIALIZERS: dict[str, Callable] = {
    "glorot": glorot,
    "he": he,
    "narrow-normal": narrow_normal,
    "orthogonal": orthogonal,
    "zeros": zeros,
    "ones": ones,
    "unit-forget-gate": unit_forget_gate,
}


def check_initializer(where: str, option: str, init) -> None:
    """Raise ShapeError naming `where` (the layer) and `option` for an unknown initializer."""
    if callable(init):
        return
    if not isinstance(init, str) or init not in INITIALIZERS:
        names = ", ".join(f'"{k}"' for k in INITIALIZERS)
        raise ShapeError(f"{where}: {option} must be one of {names} or a function "
                         f"fn(shape) -> array, got {init!r}")


def initialize(where: str, option: str, init, shape, rng=None, fanIn=None,  # noqa: N803
               fanOut=None) -> np.ndarray:  # noqa: N803
    """The array `init` (a MATLAB initializer name or a callable fn(shape)) gives for `shape`,
    as float32; errors name `where` (the layer) and `option` (e.g. "WeightsInitializer")."""
    check_initializer(where, option, init)
    shape = _shape(where, shape)
    if callable(init):
        out = np.asarray(init(shape))
        if out.dtype.kind not in "iuf":
            raise ShapeError(f"{where}: {option} function returned a {out.dtype} array; it must "
                             f"return numbers")
        if out.shape != shape:
            if out.size != math.prod(shape):
                raise ShapeError(f"{where}: {option} function must return an array of size "
                                 f"{shape}, got {out.shape}")
            out = out.reshape(shape)
        return out.astype(np.float32)
    fn = INITIALIZERS[init]
    try:
        if fn is glorot:
            return glorot(shape, fanIn, fanOut, rng)
        if fn is he:
            return he(shape, fanIn, rng)
        return fn(shape, rng=rng)
    except ShapeError as e:
        raise ShapeError(f"{where}: {option} \"{init}\": {e}") from None
