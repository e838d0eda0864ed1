"""Convolution layers: convolution2dLayer (dlconv) and transposedConv2dLayer (dltranspconv).

Weights are MATLAB's: (h, w, C, F) for convolution, (h, w, F, C) for transposed convolution;
Bias (1, 1, F). Padding and cropping are stored as MATLAB stores them (PaddingMode "manual" or
"same" with PaddingSize [t b l r]) and converted to dlconv's [before; after] form at use.
"""

from __future__ import annotations

import numpy as np

from ..convolution import dlconv, dltranspconv
from ..errors import ShapeError
from ._common import (
    channel_dim,
    fail,
    formatted,
    initializer_option,
    input_list,
    int_pair,
    make_param,
    named_errors,
    nonneg_factor,
    one_input,
    padding_2d,
    padding_size,
    positive_int,
    spatial_dims,
    user_param,
)
from .base import Layer


def _pads(mode: str, size) -> object:
    """dlconv's padding argument from MATLAB's PaddingMode/PaddingSize [t b l r]."""
    if mode == "same":
        return "same"
    t, b, l, r = (int(v) for v in size)  # noqa: E741
    return np.array([[t, l], [b, r]], dtype=np.int64)


class _ConvBase(Layer):
    """Shared by both convolutions: filter geometry, initializers, factors, parameters."""

    learnable_names = ("Weights", "Bias")
    _factory = ""

    def __init__(self, filterSize, numFilters, Name="", Stride=1, NumChannels="auto",  # noqa: N803
                 WeightsInitializer="glorot", BiasInitializer="zeros",  # noqa: N803
                 Weights=None, Bias=None, WeightLearnRateFactor=1,  # noqa: N803
                 BiasLearnRateFactor=1, WeightL2Factor=1, BiasL2Factor=0):  # noqa: N803
        super().__init__(Name)
        fn = self._factory
        self.FilterSize = int_pair(fn, "filterSize", filterSize)
        self.NumFilters = positive_int(fn, "numFilters", numFilters)
        self.Stride = int_pair(fn, "Stride", Stride)
        self.NumChannels = NumChannels if NumChannels == "auto" else positive_int(
            fn, "NumChannels", NumChannels)
        self.WeightsInitializer = initializer_option(fn, "WeightsInitializer",
                                                     WeightsInitializer)
        self.BiasInitializer = initializer_option(fn, "BiasInitializer", BiasInitializer)
        self.Weights = self._user_weights(user_param(fn, "Weights", Weights))
        self.Bias = user_param(fn, "Bias", Bias)
        if self.Bias is not None and self.Bias.size != self.NumFilters:
            raise ShapeError(f"{fn}: Bias must have NumFilters = {self.NumFilters} elements "
                             f"(size (1, 1, {self.NumFilters})), got shape {self.Bias.shape}")
        self.WeightLearnRateFactor = nonneg_factor(fn, "WeightLearnRateFactor",
                                                   WeightLearnRateFactor)
        self.BiasLearnRateFactor = nonneg_factor(fn, "BiasLearnRateFactor", BiasLearnRateFactor)
        self.WeightL2Factor = nonneg_factor(fn, "WeightL2Factor", WeightL2Factor)
        self.BiasL2Factor = nonneg_factor(fn, "BiasL2Factor", BiasL2Factor)

    # the Weights dimension holding the input channels (3rd for conv, 4th for transposed)
    _channel_axis = 2

    def _user_weights(self, w):
        if w is None:
            return None
        fn = self._factory
        if w.ndim == 3:  # MATLAB drops a trailing singleton
            w = w[..., None]
        f_axis = 5 - self._channel_axis  # the other channel dimension
        if w.ndim != 4 or tuple(w.shape[:2]) != self.FilterSize or \
                w.shape[f_axis] != self.NumFilters:
            want = ["h", "w", "C", "F"] if self._channel_axis == 2 else ["h", "w", "F", "C"]
            raise ShapeError(f"{fn}: Weights must be ({', '.join(want)}) with [h w] = FilterSize "
                             f"{self.FilterSize} and F = NumFilters {self.NumFilters}, got "
                             f"shape {w.shape}")
        if self.NumChannels != "auto" and w.shape[self._channel_axis] != self.NumChannels:
            raise ShapeError(f"{fn}: Weights have {w.shape[self._channel_axis]} input channels "
                             f"but NumChannels is {self.NumChannels}")
        return w

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        spatial_dims(self, t, 2)
        c = channel_dim(self, t)
        if self.NumChannels != "auto" and self.NumChannels != c:
            raise fail(self, f"NumChannels is {self.NumChannels} but the input ({t.fmt} "
                             f"{t.shape}) has {c} channels")
        if self.Weights is not None and self.Weights.shape[self._channel_axis] != c:
            raise fail(self, f"Weights {self.Weights.shape} expect "
                             f"{self.Weights.shape[self._channel_axis]} input channels "
                             f"(Weights.shape[{self._channel_axis}]) but the input "
                             f"({t.fmt} {t.shape}) has {c}")
        h, w = self.FilterSize
        f = self.NumFilters
        wshape = (h, w, c, f) if self._channel_axis == 2 else (h, w, f, c)
        weights = make_param(self, "Weights", wshape, "WeightsInitializer", rng)
        bias = make_param(self, "Bias", (1, 1, f), "BiasInitializer", rng)
        return {"Weights": weights, "Bias": bias}, {}


class Convolution2DLayer(_ConvBase):
    stem = "conv"
    Type = "2-D Convolution"
    _factory = "convolution2dLayer"

    def __init__(self, filterSize, numFilters, Name="", Stride=1, DilationFactor=1,  # noqa: N803
                 Padding=0, PaddingValue=0, **options):  # noqa: N803
        fn = self._factory
        pad = padding_2d(fn, "Padding", Padding)
        self.DilationFactor = int_pair(fn, "DilationFactor", DilationFactor)
        self.PaddingMode = "same" if isinstance(pad, str) else "manual"
        self.PaddingSize = padding_size(pad) or (0, 0, 0, 0)
        self.PaddingValue = PaddingValue
        super().__init__(filterSize, numFilters, Name, Stride, **options)

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y = dlconv(x, learnables["Weights"], learnables["Bias"], Stride=self.Stride,
                       DilationFactor=self.DilationFactor,
                       Padding=_pads(self.PaddingMode, self.PaddingSize),
                       PaddingValue=self.PaddingValue)
        return [y], {}


def convolution2dLayer(filterSize, numFilters, **options) -> Convolution2DLayer:  # noqa: N802, N803
    """convolution2dLayer(filterSize, numFilters, Name="", Stride=1, DilationFactor=1,
    Padding=0, PaddingValue=0, NumChannels="auto", WeightsInitializer="glorot",
    BiasInitializer="zeros", Weights=None, Bias=None, WeightLearnRateFactor=1,
    BiasLearnRateFactor=1, WeightL2Factor=1, BiasL2Factor=0) — 2-D convolution (dlconv).

    Args:
        filterSize: h or [h w]. numFilters: F (output channels).
        Padding: "same" (output size ceil(in / Stride)), p, [a b] (a top and bottom, b left
            and right) or [t b l r].
        WeightsInitializer / BiasInitializer: "glorot", "he", "narrow-normal", "orthogonal",
            "zeros", "ones" or fn(shape) -> array.
    Learnables: Weights (h, w, C, F), Bias (1, 1, F).
    Example: `convolution2dLayer(3, 16, Padding="same", Name="conv1")`.
    """
    return Convolution2DLayer(filterSize, numFilters, **options)


class TransposedConvolution2DLayer(_ConvBase):
    stem = "transposed-conv"
    Type = "2-D Transposed Convolution"
    _factory = "transposedConv2dLayer"
    _channel_axis = 3

    def __init__(self, filterSize, numFilters, Name="", Cropping=0, **options):  # noqa: N803
        crop = padding_2d(self._factory, "Cropping", Cropping)
        self.CroppingMode = "same" if isinstance(crop, str) else "manual"
        self.CroppingSize = padding_size(crop) or (0, 0, 0, 0)
        super().__init__(filterSize, numFilters, Name, **options)

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y = dltranspconv(x, learnables["Weights"], learnables["Bias"], Stride=self.Stride,
                             Cropping=_pads(self.CroppingMode, self.CroppingSize))
        return [y], {}


def transposedConv2dLayer(filterSize, numFilters, **options) -> TransposedConvolution2DLayer:  # noqa: N802, N803, E501
    """transposedConv2dLayer(filterSize, numFilters, Name="", Stride=1, Cropping=0,
    NumChannels="auto", WeightsInitializer="glorot", BiasInitializer="zeros", Weights=None,
    Bias=None, WeightLearnRateFactor=1, BiasLearnRateFactor=1, WeightL2Factor=1,
    BiasL2Factor=0) — 2-D transposed convolution (dltranspconv), upsampling by Stride.

    Cropping: "same" (output size in·Stride), p, [a b] or [t b l r].
    Learnables: Weights (h, w, F, C) (F output channels, C input channels), Bias (1, 1, F).
    """
    return TransposedConvolution2DLayer(filterSize, numFilters, **options)
