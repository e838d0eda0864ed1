"""The array-free rules of dlarray: format labels and their canonical order, and the checking
and normalization of reduction dims, reshape sizes and index keys.

Pure functions of shapes, formats and keys (no arrays, no tracing), so lgc.dlarray applies them
the same way to concrete and traced arrays. Their errors name the lgc function the user called.
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import DTypeError, FormatError, ShapeError

LABELS = "SCBTU"


def canonical_order(fmt: str) -> list[int]:
    """The permutation that sorts labels into `S... C B T U...` (stable among repeats)."""
    return sorted(range(len(fmt)), key=lambda i: LABELS.index(fmt[i]))


def check_format(fmt: str, shape: tuple[int, ...]) -> None:
    bad = set(fmt) - set(LABELS)
    if bad:
        raise FormatError(f"dlarray: invalid labels {''.join(sorted(bad))!r} in format {fmt!r}; "
                          f"use S, C, B, T and U")
    for once in "CBT":
        if fmt.count(once) > 1:
            raise FormatError(f"dlarray: label {once} appears {fmt.count(once)} times in {fmt!r}; "
                              f"C, B and T may appear at most once")
    if fmt and len(fmt) < len(shape):
        raise FormatError(f"dlarray: format {fmt!r} has {len(fmt)} labels for an array of shape "
                          f"{tuple(shape)} ({len(shape)} dimensions); give one label per "
                          f"dimension")


def reduction_axes(fn: str, shape: tuple[int, ...], dim) -> tuple[tuple[int, ...], bool]:
    """A reduction's `dim` (0-based int, tuple or list of them, "all" or None) as
    (sorted axes, keepdims): all elements drop their dims, chosen dims are kept as size 1."""
    nd = len(shape)
    if dim is None or (isinstance(dim, str) and dim == "all"):
        return tuple(range(nd)), False
    if isinstance(dim, numbers.Integral):
        dims_ = (dim,)
    elif isinstance(dim, tuple | list):
        dims_ = tuple(dim)
    else:
        raise ShapeError(f"{fn}: dim must be an int, a tuple of ints or 'all', got {dim!r}")
    out = []
    for d in dims_:
        if not isinstance(d, numbers.Integral) or not -nd <= d < nd:
            raise ShapeError(f"{fn}: dim {d!r} is out of range for X of shape {shape} "
                             f"({nd} dimensions)")
        out.append(int(d) % nd)
    return tuple(sorted(set(out))), True


def reshape_size(shape, old_shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """reshape's target shape with its one -1 (if any) resolved against `size` elements."""
    if isinstance(shape, numbers.Integral):
        shape = (shape,)
    if not all(isinstance(s, numbers.Integral) and s >= -1 for s in shape) or \
            list(shape).count(-1) > 1:
        raise ShapeError(f"reshape: the new shape must be non-negative ints with at most one -1, "
                         f"got {tuple(shape)} for X of shape {old_shape}")
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) == 1:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise ShapeError(f"reshape: cannot reshape {old_shape} to {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    return shape


def index_key(key: tuple, shape: tuple[int, ...]):
    """A basic index key (ints, slices with positive steps, one Ellipsis) into `shape` as the
    slice op's (starts, stops, steps) per dimension and the dims that ints drop."""
    ndim = len(shape)
    if key.count(Ellipsis) > 1:
        raise ShapeError("index: at most one ... is allowed")
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1:]
    if len(key) > ndim:
        raise ShapeError(f"index: {len(key)} indices for an array of shape {shape}")
    key = key + (slice(None),) * (ndim - len(key))
    starts, stops, steps, drop = [], [], [], []
    for d, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, numbers.Integral):
            if not -n <= k < n:
                raise ShapeError(f"index: {k} is out of range for dimension {d} of size {n} "
                                 f"(X has shape {shape})")
            k = int(k) % n
            starts.append(k), stops.append(k + 1), steps.append(1), drop.append(d)
        elif isinstance(k, slice):
            a, o, s = k.indices(n)
            if s <= 0:
                raise ShapeError("index: negative slice steps are not supported")
            starts.append(a), stops.append(builtins_max(a, o)), steps.append(s)
        else:
            raise DTypeError(f"index: unsupported index {k!r} into shape {shape}; use ints, "
                             f"slices and ...")
    return starts, stops, steps, drop


def builtins_max(a, b):
    # Python's max: lgc.dlarray shadows the builtin with the MATLAB reduction
    return a if a > b else b
