"""Pooling layers: maxPooling2dLayer, maxUnpooling2dLayer, averagePooling2dLayer,
globalAveragePooling2dLayer, globalMaxPooling2dLayer.

A max pooling layer with `HasUnpoolingOutputs=True` has the outputs "out", "indices" (maxpool's
int64 linear indices) and "size" (the input size, an int64 vector known when tracing), which
feed a maxUnpooling2dLayer's inputs "in", "indices", "size".
"""

from __future__ import annotations

import numpy as np

from ..convolution import avgpool, maxpool, maxunpool
from ..dlarray import DLArray, dlarray
from ..errors import ShapeError, TraceError
from ._common import (
    channel_dim,
    fail,
    formatted,
    input_list,
    int_pair,
    named_errors,
    one_input,
    padding_2d,
    padding_size,
    spatial_dims,
)
from .base import Layer
from .conv import _pads


class _Pool2d(Layer):
    """Pool size, stride and MATLAB padding (PaddingMode, PaddingSize [t b l r])."""

    _factory = ""

    def __init__(self, poolSize, Name="", Stride=1, Padding=0):  # noqa: N803
        super().__init__(Name)
        fn = self._factory
        self.PoolSize = int_pair(fn, "poolSize", poolSize)
        self.Stride = int_pair(fn, "Stride", Stride)
        pad = padding_2d(fn, "Padding", Padding)
        self.PaddingMode = "same" if isinstance(pad, str) else "manual"
        self.PaddingSize = padding_size(pad) or (0, 0, 0, 0)

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        spatial_dims(self, t, 2)
        channel_dim(self, t)
        return {}, {}

    def _input(self, inputs):
        (x,) = input_list(self, inputs)
        return formatted(self, x)


class MaxPooling2DLayer(_Pool2d):
    stem = "maxpool"
    Type = "2-D Max Pooling"
    _factory = "maxPooling2dLayer"

    def __init__(self, poolSize, Name="", Stride=1, Padding=0,  # noqa: N803
                 HasUnpoolingOutputs=False):  # noqa: N803
        super().__init__(poolSize, Name, Stride, Padding)
        if not isinstance(HasUnpoolingOutputs, bool | np.bool_):
            raise ShapeError(f"{self._factory}: HasUnpoolingOutputs must be True or False, got "
                             f"{HasUnpoolingOutputs!r}")
        self.HasUnpoolingOutputs = bool(HasUnpoolingOutputs)

    @property
    def OutputNames(self) -> list[str]:  # noqa: N802
        return ["out", "indices", "size"] if self.HasUnpoolingOutputs else ["out"]

    def forward(self, inputs, learnables, state, training):
        x = self._input(inputs)
        with named_errors(self):
            y, idx, size = maxpool(x, self.PoolSize, Stride=self.Stride,
                                   Padding=_pads(self.PaddingMode, self.PaddingSize),
                                   ReturnIndices=True)
        if not self.HasUnpoolingOutputs:
            return [y], {}
        return [y, idx, dlarray(np.asarray(size, dtype=np.int64))], {}


def maxPooling2dLayer(poolSize, **options) -> MaxPooling2DLayer:  # noqa: N802, N803
    """maxPooling2dLayer(poolSize, Name="", Stride=1, Padding=0, HasUnpoolingOutputs=False) —
    max over [h w] windows (maxpool).

    Padding: "same", p, [a b] or [t b l r]; padding never wins the max.
    With HasUnpoolingOutputs=True the outputs are "out", "indices", "size".
    MATLAB difference: the default Stride is 1, as in MATLAB; indices are 0-based row-major.
    """
    return MaxPooling2DLayer(poolSize, **options)


class MaxUnpooling2DLayer(Layer):
    stem = "maxunpool"
    Type = "2-D Max Unpooling"

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return ["in", "indices", "size"]

    def initialize(self, in_types, rng):
        if len(in_types) != 3:
            raise fail(self, f"expects 3 inputs (in, indices, size), got {len(in_types)}")
        t, ti, _ = in_types
        if tuple(ti.shape) != tuple(t.shape):
            raise fail(self, f"indices {ti.shape} must have the size of the input "
                             f"{t.fmt} {t.shape}")
        return {}, {}

    def forward(self, inputs, learnables, state, training):
        x, idx, size = input_list(self, inputs)
        x = formatted(self, x)
        if isinstance(size, DLArray) and size.is_traced:
            raise TraceError(f"{self.Name or '<unnamed>'} ({self.Type}): the \"size\" input is "
                             f"a traced value; connect it to a maxPooling2dLayer's \"size\" "
                             f"output, whose value is known when tracing")
        with named_errors(self):
            y = maxunpool(x, idx, tuple(int(s) for s in np.asarray(size).ravel()))
        return [y], {}


def maxUnpooling2dLayer(Name="") -> MaxUnpooling2DLayer:  # noqa: N802, N803
    """maxUnpooling2dLayer(Name="") — scatter the input to the positions a maxPooling2dLayer
    (HasUnpoolingOutputs=True) recorded; inputs "in", "indices", "size"."""
    return MaxUnpooling2DLayer(Name)


class AveragePooling2DLayer(_Pool2d):
    stem = "avgpool"
    Type = "2-D Average Pooling"
    _factory = "averagePooling2dLayer"

    def __init__(self, poolSize, Name="", Stride=1, Padding=0, PaddingValue=0):  # noqa: N803
        super().__init__(poolSize, Name, Stride, Padding)
        if not (PaddingValue == "mean" or (not isinstance(PaddingValue, str | bool) and
                                           np.ndim(PaddingValue) == 0 and PaddingValue == 0)):
            raise ShapeError(f"{self._factory}: PaddingValue must be 0 or \"mean\", got "
                             f"{PaddingValue!r}")
        self.PaddingValue = PaddingValue

    def forward(self, inputs, learnables, state, training):
        x = self._input(inputs)
        with named_errors(self):
            y = avgpool(x, self.PoolSize, Stride=self.Stride,
                        Padding=_pads(self.PaddingMode, self.PaddingSize),
                        PaddingValue=self.PaddingValue)
        return [y], {}


def averagePooling2dLayer(poolSize, **options) -> AveragePooling2DLayer:  # noqa: N802, N803
    """averagePooling2dLayer(poolSize, Name="", Stride=1, Padding=0, PaddingValue=0) — mean
    over [h w] windows (avgpool); padded zeros count unless PaddingValue="mean"."""
    return AveragePooling2DLayer(poolSize, **options)


class _GlobalPool2d(Layer):
    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        spatial_dims(self, t, 2)
        channel_dim(self, t)
        return {}, {}


class GlobalAveragePooling2DLayer(_GlobalPool2d):
    stem = "gapool"
    Type = "2-D Global Average Pooling"

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            return [avgpool(x, "global")], {}


def globalAveragePooling2dLayer(Name="") -> GlobalAveragePooling2DLayer:  # noqa: N802, N803
    """globalAveragePooling2dLayer(Name="") — mean over the whole height and width; the
    output keeps singleton S dims: (1, 1, C, N) "SSCB"."""
    return GlobalAveragePooling2DLayer(Name)


class GlobalMaxPooling2DLayer(_GlobalPool2d):
    stem = "gmpool"
    Type = "2-D Global Max Pooling"

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            return [maxpool(x, "global")], {}


def globalMaxPooling2dLayer(Name="") -> GlobalMaxPooling2DLayer:  # noqa: N802, N803
    """globalMaxPooling2dLayer(Name="") — max over the whole height and width, (1, 1, C, N)."""
    return GlobalMaxPooling2DLayer(Name)
