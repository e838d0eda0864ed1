"""functionLayer: a layer that applies a user function to its inputs.

The function is traced like any model function, so it may use every dlarray operation. With
Formattable=True it receives and must return formatted dlarrays; with Formattable=False it
receives unformatted ones (in the canonical layout) and its outputs get the first input's
format back.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..dlarray import DLArray, apply, dlarray, stripdims
from ..errors import FormatError, ShapeError
from ._common import fail, input_list, named_errors
from .base import Layer


def _ports(fn: str, arg: str, names, n: int, stem: str) -> list[str]:
    if names is None:
        return [stem] if n == 1 else [f"{stem}{i + 1}" for i in range(n)]
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != n or not all(isinstance(s, str) and s for s in names) or \
            len(set(names)) != n:
        raise ShapeError(f"{fn}: {arg} must be {n} distinct non-empty names, got {names!r}")
    return names


class FunctionLayer(Layer):
    stem = "layer"
    Type = "Function"

    def __init__(self, fun, Name="", NumInputs=1, NumOutputs=1, Formattable=True,  # noqa: N803
                 InputNames=None, OutputNames=None, Description="",  # noqa: N803
                 Acceleratable=False):  # noqa: N803
        super().__init__(Name)
        fn = "functionLayer"
        if not callable(fun):
            raise ShapeError(f"{fn}: fun must be callable, got {type(fun).__name__}")
        for arg, v in (("NumInputs", NumInputs), ("NumOutputs", NumOutputs)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ShapeError(f"{fn}: {arg} must be a positive integer, got {v!r}")
        self.PredictFcn = fun
        self.Formattable = bool(Formattable)
        self.Acceleratable = bool(Acceleratable)
        self.Description = Description or f"Function layer ({getattr(fun, '__name__', fun)})"
        self._inputs = _ports(fn, "InputNames", InputNames, int(NumInputs), "in")
        self._outputs = _ports(fn, "OutputNames", OutputNames, int(NumOutputs), "out")

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return list(self._inputs)

    @property
    def OutputNames(self) -> list[str]:  # noqa: N802
        return list(self._outputs)

    def properties(self) -> dict:
        return {**super().properties(), "NumInputs": self.NumInputs,
                "NumOutputs": len(self._outputs)}

    def initialize(self, in_types, rng):
        if len(in_types) != self.NumInputs:
            raise fail(self, f"expects {self.NumInputs} inputs {self.InputNames}, got "
                             f"{len(in_types)}")
        return {}, {}

    def forward(self, inputs, learnables, state, training):
        xs = [x if isinstance(x, DLArray) else dlarray(np.asarray(x))
              for x in input_list(self, inputs)]
        fmt = xs[0].fmt
        if not self.Formattable:
            xs = [stripdims(x) for x in xs]
        with named_errors(self):
            out = self.PredictFcn(*xs)
        n = len(self._outputs)
        outs = list(out) if n > 1 and isinstance(out, tuple | list) else [out]
        if len(outs) != n:
            raise fail(self, f"the function returned {len(outs)} outputs, NumOutputs is {n}")
        return [self._format(y, fmt) for y in outs], {}

    def _format(self, y, fmt: str):
        y = y if isinstance(y, DLArray) else dlarray(np.asarray(y))
        if self.Formattable:
            if not y.fmt:
                raise fail(self, f"the function returned an unformatted array {y.shape}; with "
                                 f"Formattable=True it must return a formatted dlarray",
                           FormatError)
            return y
        if y.fmt:
            y = stripdims(y)
        if not fmt:
            return y
        if y.ndim != len(fmt):
            raise fail(self, f"the function returned {y.shape}, which does not fit the input "
                             f"format {fmt}; use Formattable=True and return a formatted "
                             f"dlarray", FormatError)
        return apply("relabel", y, fmt=fmt)


def functionLayer(fun, **options) -> FunctionLayer:  # noqa: N802
    """functionLayer(fun, Name="", NumInputs=1, NumOutputs=1, Formattable=True,
    InputNames=None, OutputNames=None, Description="", Acceleratable=False) — a layer that
    computes `fun(X1, ..., Xn)`.

    Formattable=True: fun gets formatted dlarrays and must return formatted ones.
    Formattable=False: fun gets them unformatted (canonical layout) and each output gets the
    first input's format (it must have as many dimensions).
    Example: `functionLayer(lambda X: X * sigmoid(X), Name="swish")`.
    """
    return FunctionLayer(fun, **options)
