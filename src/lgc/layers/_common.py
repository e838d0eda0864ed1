"""Helpers shared by the layer families: option validation, MATLAB padding forms, parameter
shapes, and errors that start with the layer's name and type."""

from __future__ import annotations

import contextlib
import numbers

import numpy as np

from ..dlarray import DLArray, dlarray
from ..errors import DTypeError, FormatError, ShapeError
from ..init import check_initializer, initialize
from .base import Layer


def label(layer: Layer) -> str:
    """How errors start: `conv1 (2-D Convolution)`."""
    return f"{layer.Name or '<unnamed>'} ({layer.Type})"


def fail(layer: Layer, msg: str, cls=ShapeError):
    return cls(f"{label(layer)}: {msg}")


@contextlib.contextmanager
def named_errors(layer: Layer):
    """Re-raise errors of the MATLAB functions a layer calls with the layer's name in front, so
    a network error says which layer failed as well as which function."""
    try:
        yield
    except (ShapeError, FormatError, DTypeError) as e:
        msg = str(e)
        prefix = label(layer)
        if msg.startswith(prefix):
            raise
        raise type(e)(f"{prefix}: {msg}") from None


# --- option validation (at construction: errors name the factory) -----------------------------


def positive_int(fn: str, arg: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral | float) or v < 1 or \
            float(v) != int(v):
        raise ShapeError(f"{fn}: {arg} must be a positive integer, got {v!r}")
    return int(v)


def int_pair(fn: str, arg: str, v, minimum: int = 1) -> tuple[int, int]:
    """A scalar or [a b] of integers >= minimum, as a 2-tuple (MATLAB's [h w] forms)."""
    a = np.asarray(v) if not isinstance(v, str | bool) else np.asarray([])
    ok = (a.dtype.kind in "iuf" and a.ndim <= 1 and a.size in (1, 2)
          and bool(np.all(a == np.round(a))) and bool(np.all(a >= minimum)))
    if not ok:
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ShapeError(f"{fn}: {arg} must be a {kind} integer or a vector of two {kind} "
                         f"integers [h w], got {v!r}")
    return tuple(int(x) for x in np.broadcast_to(a.ravel(), (2,)))  # type: ignore[return-value]


def padding_2d(fn: str, arg: str, v):
    """MATLAB's 2-D padding/cropping forms: "same", p, [a b] (a top/bottom, b left/right) or
    [t b l r]. Returns "same" or the (2, 2) array [[t, l], [b, r]] dlconv takes."""
    if isinstance(v, str):
        if v != "same":
            raise ShapeError(f"{fn}: {arg} must be \"same\" or numeric, got {v!r}")
        return "same"
    a = np.asarray(v) if not isinstance(v, bool) else np.asarray([])
    ok = (a.dtype.kind in "iuf" and a.ndim <= 1 and a.size in (1, 2, 4)
          and bool(np.all(a == np.round(a))) and bool(np.all(a >= 0)))
    if not ok:
        raise ShapeError(f"{fn}: {arg} must be \"same\", a non-negative integer p, [a b] or "
                         f"[t b l r], got {v!r}")
    a = a.astype(int).ravel()
    if a.size == 1:
        t = b = l = r = a[0]  # noqa: E741
    elif a.size == 2:
        t, b, l, r = a[0], a[0], a[1], a[1]  # noqa: E741
    else:
        t, b, l, r = a  # noqa: E741
    return np.array([[t, l], [b, r]], dtype=np.int64)


def padding_size(pad) -> tuple[int, int, int, int] | None:
    """MATLAB's PaddingSize [t b l r] of a (2, 2) padding, None for "same" (set at use)."""
    if isinstance(pad, str):
        return None
    return int(pad[0, 0]), int(pad[1, 0]), int(pad[0, 1]), int(pad[1, 1])


def nonneg_factor(fn: str, arg: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0:
        raise ShapeError(f"{fn}: {arg} must be a non-negative scalar, got {v!r}")
    return float(v)


def initializer_option(fn: str, arg: str, v):
    check_initializer(fn, arg, v)
    return v


def user_param(fn: str, arg: str, v):
    """A parameter value set by the user (None: to be initialized), as a float32 array."""
    if v is None:
        return None
    a = np.asarray(v)
    if a.dtype.kind not in "iuf":
        raise DTypeError(f"{fn}: {arg} must be a numeric array, got {a.dtype}")
    return a.astype(np.float32)


# --- initialization ---------------------------------------------------------------------------


def channel_dim(layer: Layer, t, what: str = "input") -> int:
    """The size of C of an input type; FormatError naming the layer when there is none."""
    if "C" not in t.fmt:
        raise fail(layer, f"the {what} ({t.fmt or 'unformatted'} {t.shape}) has no channel "
                          f"dimension C", FormatError)
    return t.shape[t.fmt.index("C")]


def spatial_dims(layer: Layer, t, n: int) -> None:
    """Check the input has exactly n spatial dimensions (a 2-D layer needs "SSC...")."""
    got = t.fmt.count("S")
    if got != n:
        raise fail(layer, f"expects input with {n} spatial dimensions (e.g. \"SSCB\"), got "
                          f"{t.fmt or 'unformatted'} {t.shape}", FormatError)


def one_input(layer: Layer, in_types):
    if len(in_types) != 1:
        raise fail(layer, f"expects 1 input, got {len(in_types)}")
    return in_types[0]


def per_channel_shape(t, c: int) -> tuple[int, ...]:
    """MATLAB's shape of a per-channel parameter: (1, 1, C) after image data ("SSCB"),
    (1, C) after 1-D, (C, 1) after feature or sequence data."""
    ns = t.fmt.count("S")
    return (1,) * ns + (c,) if ns else (c, 1)


def make_param(layer: Layer, name: str, shape, option: str, rng, **fans) -> np.ndarray:
    """The user's value of parameter `name` (checked against `shape`) or a fresh one from the
    layer's initializer option."""
    value = getattr(layer, name, None)
    shape = tuple(int(s) for s in shape)
    if value is not None:
        if tuple(value.shape) != shape:
            # MATLAB accepts per-channel vectors in any orientation with the right count
            if value.size == int(np.prod(shape)) and _vector(value.shape) and _vector(shape):
                return value.reshape(shape).astype(np.float32)
            raise fail(layer, f"{name} must have size {shape} for this input, got "
                              f"{tuple(value.shape)}")
        return value.astype(np.float32)
    return initialize(label(layer), option, getattr(layer, option), shape, rng, **fans)


def _vector(shape) -> bool:
    return sum(s != 1 for s in shape) <= 1


# --- forward ----------------------------------------------------------------------------------


def input_list(layer: Layer, inputs) -> list:
    """The inputs of forward as a list in port order (a dict is keyed by port name)."""
    if isinstance(inputs, dict):
        missing = [p for p in layer.InputNames if p not in inputs]
        if missing:
            raise fail(layer, f"missing input(s) {missing}")
        inputs = [inputs[p] for p in layer.InputNames]
    inputs = list(inputs)
    n = max(layer.NumInputs, 1)
    if len(inputs) != n:
        raise fail(layer, f"expects {n} input(s) {layer.InputNames or ['X']}, got {len(inputs)}")
    return inputs


def formatted(layer: Layer, x) -> DLArray:
    """A layer input as a formatted DLArray (layers work on formatted data)."""
    if not isinstance(x, DLArray):
        x = dlarray(np.asarray(x))
    if not x.fmt:
        raise fail(layer, f"input is unformatted {x.shape}; layers need formatted dlarrays",
                   FormatError)
    return x
