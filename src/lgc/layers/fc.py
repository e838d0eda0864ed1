"""fullyConnectedLayer: fullyconnect with Weights (out, in) and Bias (out, 1).

The input size is the number of features of one observation (S, C and U dims flattened as
MATLAB does), per time step for sequence data; the output is "CB" (or "CBT").
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError, ShapeError
from ..functional import fullyconnect
from ._common import (
    fail,
    formatted,
    initializer_option,
    input_list,
    make_param,
    named_errors,
    nonneg_factor,
    one_input,
    positive_int,
    user_param,
)
from .base import Layer


class FullyConnectedLayer(Layer):
    stem = "fc"
    Type = "Fully Connected"
    learnable_names = ("Weights", "Bias")

    def __init__(self, outputSize, Name="", InputSize="auto",  # noqa: N803
                 WeightsInitializer="glorot", BiasInitializer="zeros",  # noqa: N803
                 Weights=None, Bias=None, WeightLearnRateFactor=1,  # noqa: N803
                 BiasLearnRateFactor=1, WeightL2Factor=1, BiasL2Factor=0):  # noqa: N803
        super().__init__(Name)
        fn = "fullyConnectedLayer"
        self.OutputSize = positive_int(fn, "outputSize", outputSize)
        self.InputSize = InputSize if InputSize == "auto" else positive_int(
            fn, "InputSize", InputSize)
        self.WeightsInitializer = initializer_option(fn, "WeightsInitializer",
                                                     WeightsInitializer)
        self.BiasInitializer = initializer_option(fn, "BiasInitializer", BiasInitializer)
        self.Weights = user_param(fn, "Weights", Weights)
        if self.Weights is not None and (self.Weights.ndim != 2 or
                                         self.Weights.shape[0] != self.OutputSize):
            raise ShapeError(f"{fn}: Weights must be (outputSize, inputSize) = "
                             f"({self.OutputSize}, in), got shape {self.Weights.shape}")
        if self.Weights is not None and self.InputSize not in ("auto", self.Weights.shape[1]):
            raise ShapeError(f"{fn}: Weights {self.Weights.shape} do not match InputSize "
                             f"{self.InputSize}")
        self.Bias = user_param(fn, "Bias", Bias)
        if self.Bias is not None and self.Bias.size != self.OutputSize:
            raise ShapeError(f"{fn}: Bias must have outputSize = {self.OutputSize} elements, got "
                             f"shape {self.Bias.shape}")
        self.WeightLearnRateFactor = nonneg_factor(fn, "WeightLearnRateFactor",
                                                   WeightLearnRateFactor)
        self.BiasLearnRateFactor = nonneg_factor(fn, "BiasLearnRateFactor", BiasLearnRateFactor)
        self.WeightL2Factor = nonneg_factor(fn, "WeightL2Factor", WeightL2Factor)
        self.BiasL2Factor = nonneg_factor(fn, "BiasL2Factor", BiasL2Factor)

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        if not t.fmt:
            raise fail(self, f"input is unformatted {t.shape}", FormatError)
        n_in = int(np.prod([s for s, lab in zip(t.shape, t.fmt) if lab in "SCU"],
                           dtype=np.int64))
        if self.InputSize != "auto" and self.InputSize != n_in:
            raise fail(self, f"InputSize is {self.InputSize} but the input ({t.fmt} {t.shape}) "
                             f"has {n_in} features per observation")
        if self.Weights is not None and self.Weights.shape[1] != n_in:
            raise fail(self, f"Weights {self.Weights.shape} expect {self.Weights.shape[1]} "
                             f"input features but the input ({t.fmt} {t.shape}) has {n_in}")
        weights = make_param(self, "Weights", (self.OutputSize, n_in), "WeightsInitializer",
                             rng)
        bias = make_param(self, "Bias", (self.OutputSize, 1), "BiasInitializer", rng)
        return {"Weights": weights, "Bias": bias}, {}

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y = fullyconnect(x, learnables["Weights"], learnables["Bias"])
        return [y], {}


def fullyConnectedLayer(outputSize, **options) -> FullyConnectedLayer:  # noqa: N802, N803
    """fullyConnectedLayer(outputSize, Name="", InputSize="auto", WeightsInitializer="glorot",
    BiasInitializer="zeros", Weights=None, Bias=None, WeightLearnRateFactor=1,
    BiasLearnRateFactor=1, WeightL2Factor=1, BiasL2Factor=0) — Y = Weights·X + Bias per
    observation (fullyconnect).

    Learnables: Weights (outputSize, inputSize), Bias (outputSize, 1). The output is "CB"
    ("CBT" for sequences).
    Example: `fullyConnectedLayer(10, Name="fc1")`.
    """
    return FullyConnectedLayer(outputSize, **options)
