"""Normalization layers: batchNormalizationLayer, groupNormalizationLayer,
layerNormalizationLayer, crossChannelNormalizationLayer.

Offset, Scale (and batch normalization's TrainedMean, TrainedVariance) are per channel, shaped
as MATLAB shapes them: (1, 1, C) after image data, (C, 1) after feature or sequence data.
Batch normalization's forward in training uses batch statistics and returns the updated
running statistics as its new state (batchnorm's 5-in/3-out form); predict uses them.
"""

from __future__ import annotations

import numbers

import numpy as np

from ..errors import ShapeError
from ..normalization import _LAYERNORM_DIMS, batchnorm, crosschannelnorm, groupnorm, layernorm
from ._common import (
    channel_dim,
    fail,
    formatted,
    initializer_option,
    input_list,
    make_param,
    named_errors,
    nonneg_factor,
    one_input,
    per_channel_shape,
    positive_int,
    user_param,
)
from .base import Layer


def _positive(fn: str, arg: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
        raise ShapeError(f"{fn}: {arg} must be a positive scalar, got {v!r}")
    return float(v)


class _AffineNorm(Layer):
    """Offset and Scale per channel, their initializers and factors, Epsilon."""

    learnable_names = ("Offset", "Scale")
    _factory = ""

    def __init__(self, Name="", Epsilon=1e-5, NumChannels="auto",  # noqa: N803
                 OffsetInitializer="zeros", ScaleInitializer="ones",  # noqa: N803
                 Offset=None, Scale=None, OffsetLearnRateFactor=1,  # noqa: N803
                 ScaleLearnRateFactor=1, OffsetL2Factor=1, ScaleL2Factor=1):  # noqa: N803
        super().__init__(Name)
        fn = self._factory
        self.Epsilon = _positive(fn, "Epsilon", Epsilon)
        self.NumChannels = NumChannels if NumChannels == "auto" else positive_int(
            fn, "NumChannels", NumChannels)
        self.OffsetInitializer = initializer_option(fn, "OffsetInitializer", OffsetInitializer)
        self.ScaleInitializer = initializer_option(fn, "ScaleInitializer", ScaleInitializer)
        self.Offset = user_param(fn, "Offset", Offset)
        self.Scale = user_param(fn, "Scale", Scale)
        self.OffsetLearnRateFactor = nonneg_factor(fn, "OffsetLearnRateFactor",
                                                   OffsetLearnRateFactor)
        self.ScaleLearnRateFactor = nonneg_factor(fn, "ScaleLearnRateFactor",
                                                  ScaleLearnRateFactor)
        self.OffsetL2Factor = nonneg_factor(fn, "OffsetL2Factor", OffsetL2Factor)
        self.ScaleL2Factor = nonneg_factor(fn, "ScaleL2Factor", ScaleL2Factor)

    def _channels(self, in_types):
        t = one_input(self, in_types)
        c = channel_dim(self, t)
        if self.NumChannels != "auto" and self.NumChannels != c:
            raise fail(self, f"NumChannels is {self.NumChannels} but the input ({t.fmt} "
                             f"{t.shape}) has {c} channels")
        for name in self.learnable_names + self.state_names:
            v = getattr(self, name, None)
            if v is not None and v.size != c:
                raise fail(self, f"{name} has {v.size} elements but the input ({t.fmt} "
                                 f"{t.shape}) has {c} channels")
        return t, c

    def initialize(self, in_types, rng):
        t, c = self._channels(in_types)
        shape = per_channel_shape(t, c)
        return {"Offset": make_param(self, "Offset", shape, "OffsetInitializer", rng),
                "Scale": make_param(self, "Scale", shape, "ScaleInitializer", rng)}, {}

    def _input(self, inputs):
        (x,) = input_list(self, inputs)
        return formatted(self, x)


class BatchNormalizationLayer(_AffineNorm):
    stem = "batchnorm"
    Type = "Batch Normalization"
    state_names = ("TrainedMean", "TrainedVariance")
    _factory = "batchNormalizationLayer"

    def __init__(self, Name="", MeanDecay=0.1, VarianceDecay=0.1, TrainedMean=None,  # noqa: N803
                 TrainedVariance=None, **options):  # noqa: N803
        fn = self._factory
        for arg, v in (("MeanDecay", MeanDecay), ("VarianceDecay", VarianceDecay)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
                raise ShapeError(f"{fn}: {arg} must be a scalar in [0, 1], got {v!r}")
        self.MeanDecay = float(MeanDecay)
        self.VarianceDecay = float(VarianceDecay)
        self.TrainedMean = user_param(fn, "TrainedMean", TrainedMean)
        self.TrainedVariance = user_param(fn, "TrainedVariance", TrainedVariance)
        super().__init__(Name, **options)

    def initialize(self, in_types, rng):
        learnables, _ = super().initialize(in_types, rng)
        t, c = self._channels(in_types)
        shape = per_channel_shape(t, c)
        mean = self._stat("TrainedMean", shape, np.zeros)
        var = self._stat("TrainedVariance", shape, np.ones)
        return learnables, {"TrainedMean": mean, "TrainedVariance": var}

    def _stat(self, name, shape, default):
        v = getattr(self, name)
        return default(shape, np.float32) if v is None else v.reshape(shape).astype(np.float32)

    def forward(self, inputs, learnables, state, training):
        x = self._input(inputs)
        off, scale = learnables["Offset"], learnables["Scale"]
        mean, var = state["TrainedMean"], state["TrainedVariance"]
        with named_errors(self):
            if not training:
                y = batchnorm(x, off, scale, mean, var, Training=False, Epsilon=self.Epsilon)
                return [y], dict(state)
            y, mean, var = batchnorm(x, off, scale, mean, var, Epsilon=self.Epsilon,
                                     MeanDecay=self.MeanDecay,
                                     VarianceDecay=self.VarianceDecay)
        return [y], {"TrainedMean": mean, "TrainedVariance": var}


def batchNormalizationLayer(**options) -> BatchNormalizationLayer:  # noqa: N802
    """batchNormalizationLayer(Name="", Epsilon=1e-5, MeanDecay=0.1, VarianceDecay=0.1,
    NumChannels="auto", OffsetInitializer="zeros", ScaleInitializer="ones", Offset=None,
    Scale=None, TrainedMean=None, TrainedVariance=None, OffsetLearnRateFactor=1,
    ScaleLearnRateFactor=1, OffsetL2Factor=1, ScaleL2Factor=1) — batch normalization.

    Learnables Offset, Scale; state TrainedMean (zeros), TrainedVariance (ones). In training
    (forward) the batch statistics normalize and the running statistics are updated as
    run = decay·batch + (1−decay)·run (unbiased batch variance); predict uses them.
    """
    return BatchNormalizationLayer(**options)


class GroupNormalizationLayer(_AffineNorm):
    stem = "groupnorm"
    Type = "Group Normalization"
    _factory = "groupNormalizationLayer"

    def __init__(self, numGroups, Name="", **options):  # noqa: N803
        if isinstance(numGroups, str):
            if numGroups not in ("all-channels", "channel-wise"):
                raise ShapeError(f"{self._factory}: numGroups must be a positive integer, "
                                 f"\"all-channels\" or \"channel-wise\", got {numGroups!r}")
            self.NumGroups = numGroups
        else:
            self.NumGroups = positive_int(self._factory, "numGroups", numGroups)
        super().__init__(Name, **options)

    def initialize(self, in_types, rng):
        t, c = self._channels(in_types)
        if isinstance(self.NumGroups, int) and c % self.NumGroups:
            raise fail(self, f"NumGroups {self.NumGroups} does not divide the {c} channels of "
                             f"the input ({t.fmt} {t.shape})")
        return super().initialize(in_types, rng)

    def forward(self, inputs, learnables, state, training):
        x = self._input(inputs)
        with named_errors(self):
            y = groupnorm(x, self.NumGroups, learnables["Offset"], learnables["Scale"],
                          Epsilon=self.Epsilon)
        return [y], {}


def groupNormalizationLayer(numGroups, **options) -> GroupNormalizationLayer:  # noqa: N802, N803
    """groupNormalizationLayer(numGroups, Name="", Epsilon=1e-5, ...) — group normalization
    (groupnorm); numGroups an int dividing C, "all-channels" or "channel-wise". Offset/Scale
    options as batchNormalizationLayer."""
    return GroupNormalizationLayer(numGroups, **options)


class LayerNormalizationLayer(_AffineNorm):
    stem = "layernorm"
    Type = "Layer Normalization"
    _factory = "layerNormalizationLayer"

    def __init__(self, Name="", OperationDimension="auto", **options):  # noqa: N803
        if OperationDimension not in _LAYERNORM_DIMS:
            raise ShapeError(f"{self._factory}: OperationDimension must be one of "
                             f"{_LAYERNORM_DIMS}, got {OperationDimension!r}")
        self.OperationDimension = OperationDimension
        super().__init__(Name, **options)

    def forward(self, inputs, learnables, state, training):
        x = self._input(inputs)
        with named_errors(self):
            y = layernorm(x, learnables["Offset"], learnables["Scale"], Epsilon=self.Epsilon,
                          OperationDimension=self.OperationDimension)
        return [y], {}


def layerNormalizationLayer(**options) -> LayerNormalizationLayer:  # noqa: N802
    """layerNormalizationLayer(Name="", Epsilon=1e-5, OperationDimension="auto", ...) — layer
    normalization (layernorm): per observation over S and C for images, over C per time step
    for sequences. Offset/Scale options as batchNormalizationLayer."""
    return LayerNormalizationLayer(**options)


class CrossChannelNormalizationLayer(Layer):
    stem = "crossnorm"
    Type = "Cross Channel Normalization"

    def __init__(self, windowChannelSize, Name="", Alpha=1e-4, Beta=0.75, K=2):  # noqa: N803
        super().__init__(Name)
        fn = "crossChannelNormalizationLayer"
        self.WindowChannelSize = positive_int(fn, "windowChannelSize", windowChannelSize)
        for arg, v in (("Alpha", Alpha), ("Beta", Beta)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ShapeError(f"{fn}: {arg} must be a real scalar, got {v!r}")
        self.Alpha = float(Alpha)
        self.Beta = float(Beta)
        self.K = _positive(fn, "K", K)

    def initialize(self, in_types, rng):
        channel_dim(self, one_input(self, in_types))
        return {}, {}

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y = crosschannelnorm(x, self.WindowChannelSize, Alpha=self.Alpha, Beta=self.Beta,
                                 K=self.K)
        return [y], {}


def crossChannelNormalizationLayer(windowChannelSize, **options):  # noqa: N802, N803
    """crossChannelNormalizationLayer(windowChannelSize, Name="", Alpha=1e-4, Beta=0.75, K=2)
    — local response normalization across channels (crosschannelnorm):
    y = x / (K + Alpha·ss / windowChannelSize)^Beta."""
    return CrossChannelNormalizationLayer(windowChannelSize, **options)
