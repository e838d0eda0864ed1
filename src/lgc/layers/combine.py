"""Layers that combine or reshape activations: additionLayer, concatenationLayer,
depthConcatenationLayer, flattenLayer. Multi-input layers have inputs "in1".."inN"."""

from __future__ import annotations

import numpy as np

from ..dlarray import apply, reshape, stripdims
from ..errors import FormatError, ShapeError
from ._common import fail, formatted, input_list, named_errors, one_input, positive_int
from .base import Layer


class _MultiInput(Layer):
    _factory = ""

    def __init__(self, numInputs, Name=""):  # noqa: N803
        super().__init__(Name)
        self._num_inputs = positive_int(self._factory, "numInputs", numInputs)
        if self._num_inputs < 2:
            raise ShapeError(f"{self._factory}: numInputs must be at least 2, got {numInputs!r}")

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return [f"in{i + 1}" for i in range(self._num_inputs)]

    def properties(self) -> dict:
        return {**super().properties(), "NumInputs": self.NumInputs}

    def _types(self, in_types):
        if len(in_types) != self.NumInputs:
            raise fail(self, f"expects {self.NumInputs} inputs {self.InputNames}, got "
                             f"{len(in_types)}")
        return in_types

    def _check_formats(self, items):
        """items: (port, fmt, shape); every input must have the first one's format."""
        p0, f0, s0 = items[0]
        for p, f, s in items[1:]:
            if f != f0:
                raise fail(self, f"inputs must have the same format; {p0} is {f0 or 'unformatted'}"
                                 f" {s0} but {p} is {f or 'unformatted'} {s}", FormatError)

    def initialize(self, in_types, rng):
        types = self._types(in_types)
        items = [(p, t.fmt, t.shape) for p, t in zip(self.InputNames, types)]
        self._check(items)
        return {}, {}

    def forward(self, inputs, learnables, state, training):
        xs = [formatted(self, x) for x in input_list(self, inputs)]
        self._check([(p, x.fmt, x.shape) for p, x in zip(self.InputNames, xs)])
        with named_errors(self):
            return [self._combine(xs)], {}


class AdditionLayer(_MultiInput):
    stem = "addition"
    Type = "Addition"
    _factory = "additionLayer"

    def _check(self, items):
        self._check_formats(items)
        p0, _, s0 = items[0]
        for p, _, s in items[1:]:
            if tuple(s) != tuple(s0):
                raise fail(self, f"inputs must have the same size; {p0} is {tuple(s0)} but {p} "
                                 f"is {tuple(s)}")

    def _combine(self, xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


def additionLayer(numInputs, Name="") -> AdditionLayer:  # noqa: N802, N803
    """additionLayer(numInputs, Name="") — elementwise sum of inputs "in1".."inN" (same
    size and format)."""
    return AdditionLayer(numInputs, Name)


class ConcatenationLayer(_MultiInput):
    stem = "concat"
    Type = "Concatenation"
    _factory = "concatenationLayer"

    def __init__(self, dim, numInputs, Name=""):  # noqa: N803
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 0:
            raise ShapeError(f"concatenationLayer: dim must be a non-negative integer (0-based), "
                             f"got {dim!r}")
        self.Dim = int(dim)
        super().__init__(numInputs, Name)

    def _check(self, items):
        self._check_formats(items)
        p0, f0, s0 = items[0]
        if self.Dim >= len(s0):
            raise fail(self, f"Dim {self.Dim} (0-based) is out of range for input {p0} "
                             f"({f0} {tuple(s0)})")
        for p, _, s in items[1:]:
            if any(a != b for i, (a, b) in enumerate(zip(s, s0)) if i != self.Dim):
                raise fail(self, f"inputs must agree in every dimension but {self.Dim}; {p0} is "
                                 f"{tuple(s0)} but {p} is {tuple(s)}")

    def _combine(self, xs):
        return apply("concatenate", *xs, axis=self.Dim)


def concatenationLayer(dim, numInputs, Name="") -> ConcatenationLayer:  # noqa: N802, N803
    """concatenationLayer(dim, numInputs, Name="") — join inputs "in1".."inN" along dimension
    `dim` of their canonical layout (e.g. 2 = C of "SSCB").

    MATLAB difference: dim is 0-based (MATLAB's concatenationLayer(3, 2) is
    concatenationLayer(2, 2) here).
    """
    return ConcatenationLayer(dim, numInputs, Name)


class DepthConcatenationLayer(_MultiInput):
    stem = "depthcat"
    Type = "Depth concatenation"
    _factory = "depthConcatenationLayer"

    def _check(self, items):
        self._check_formats(items)
        p0, f0, s0 = items[0]
        if "C" not in f0:
            raise fail(self, f"input {p0} ({f0 or 'unformatted'} {tuple(s0)}) has no channel "
                             f"dimension C", FormatError)
        c = f0.index("C")
        for p, _, s in items[1:]:
            if any(a != b for i, (a, b) in enumerate(zip(s, s0)) if i != c):
                raise fail(self, f"inputs must agree in every dimension but C; {p0} is "
                                 f"{tuple(s0)} but {p} is {tuple(s)}")

    def _combine(self, xs):
        return apply("concatenate", *xs, axis=xs[0].fmt.index("C"))


def depthConcatenationLayer(numInputs, Name="") -> DepthConcatenationLayer:  # noqa: N802, N803
    """depthConcatenationLayer(numInputs, Name="") — join inputs "in1".."inN" along C."""
    return DepthConcatenationLayer(numInputs, Name)


class FlattenLayer(Layer):
    stem = "flatten"
    Type = "Flatten"

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        if "C" not in t.fmt:
            raise fail(self, f"input ({t.fmt or 'unformatted'} {t.shape}) has no channel "
                             f"dimension C", FormatError)
        return {}, {}

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        if "C" not in x.fmt:
            raise fail(self, f"input ({x.fmt} {x.shape}) has no channel dimension C",
                       FormatError)
        feat = [i for i, lab in enumerate(x.fmt) if lab in "SC"]
        if len(feat) == 1:
            return [x], {}
        rest = [i for i in range(x.ndim) if i not in feat]
        # MATLAB flattens column-major (first S fastest, C slowest): row-major over the
        # reversed feature dims, as fullyconnect does, so fc(flatten(X)) == fc(X)
        perm = feat[::-1] + rest
        xt = apply("transpose", stripdims(x), perm=perm)
        n = int(np.prod([x.shape[i] for i in feat], dtype=np.int64))
        y = reshape(xt, (n,) + tuple(x.shape[i] for i in rest))
        fmt = "C" + "".join(x.fmt[i] for i in rest)
        return [apply("relabel", y, fmt=fmt)], {}


def flattenLayer(Name="") -> FlattenLayer:  # noqa: N802, N803
    """flattenLayer(Name="") — collapse the spatial dims into the channels: "SSCB" (h, w, c, N)
    becomes "CB" (h·w·c, N) in MATLAB's order (first S fastest), "SSCBT" becomes "CBT"."""
    return FlattenLayer(Name)
