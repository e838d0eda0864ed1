"""Activation and dropout layers: reluLayer, leakyReluLayer, sigmoidLayer, tanhLayer,
softmaxLayer, dropoutLayer. No parameters; the output keeps the input's format."""

from __future__ import annotations

import numbers

from ..errors import ShapeError
from ..functional import dropout, leakyrelu, relu, sigmoid, softmax, tanh
from ._common import channel_dim, formatted, input_list, named_errors, one_input
from .base import Layer


class _Activation(Layer):
    """One input, one output of the same type: Y = _fn(X)."""

    def initialize(self, in_types, rng):
        one_input(self, in_types)
        return {}, {}

    def _apply(self, x, training):
        raise NotImplementedError

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            return [self._apply(x, training)], {}


class ReLULayer(_Activation):
    stem = "relu"
    Type = "ReLU"

    def _apply(self, x, training):
        return relu(x)


def reluLayer(Name="") -> ReLULayer:  # noqa: N802, N803
    """reluLayer(Name="") — Y = max(X, 0)."""
    return ReLULayer(Name)


class LeakyReLULayer(_Activation):
    stem = "leakyrelu"
    Type = "Leaky ReLU"

    def __init__(self, scale=0.01, Name=""):  # noqa: N803
        super().__init__(Name)
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
            raise ShapeError(f"leakyReluLayer: scale must be a real scalar, got {scale!r}")
        self.Scale = float(scale)

    def _apply(self, x, training):
        return leakyrelu(x, self.Scale)


def leakyReluLayer(scale=0.01, Name="") -> LeakyReLULayer:  # noqa: N802, N803
    """leakyReluLayer(scale=0.01, Name="") — Y = X where X > 0, else scale·X."""
    return LeakyReLULayer(scale, Name)


class SigmoidLayer(_Activation):
    stem = "sigmoid"
    Type = "Sigmoid"

    def _apply(self, x, training):
        return sigmoid(x)


def sigmoidLayer(Name="") -> SigmoidLayer:  # noqa: N802, N803
    """sigmoidLayer(Name="") — Y = 1 / (1 + exp(−X))."""
    return SigmoidLayer(Name)


class TanhLayer(_Activation):
    stem = "tanh"
    Type = "Tanh"

    def _apply(self, x, training):
        return tanh(x)


def tanhLayer(Name="") -> TanhLayer:  # noqa: N802, N803
    """tanhLayer(Name="") — Y = tanh(X)."""
    return TanhLayer(Name)


class SoftmaxLayer(_Activation):
    stem = "softmax"
    Type = "Softmax"

    def initialize(self, in_types, rng):
        channel_dim(self, one_input(self, in_types))
        return {}, {}

    def _apply(self, x, training):
        return softmax(x)


def softmaxLayer(Name="") -> SoftmaxLayer:  # noqa: N802, N803
    """softmaxLayer(Name="") — softmax over the channel dimension C."""
    return SoftmaxLayer(Name)


class DropoutLayer(_Activation):
    stem = "dropout"
    Type = "Dropout"

    def __init__(self, probability=0.5, Name=""):  # noqa: N803
        super().__init__(Name)
        if isinstance(probability, bool) or not isinstance(probability, numbers.Real) or \
                not 0 <= probability < 1:
            raise ShapeError(f"dropoutLayer: probability must be a number in [0, 1), got "
                             f"{probability!r}")
        self.Probability = float(probability)

    def _apply(self, x, training):
        # predict is the identity: the training-time 1/(1−p) scaling keeps the expectation
        return dropout(x, self.Probability) if training else x


def dropoutLayer(probability=0.5, Name="") -> DropoutLayer:  # noqa: N802, N803
    """dropoutLayer(probability=0.5, Name="") — in training (forward) zero each element with
    the given probability and scale survivors by 1/(1−p); the identity in predict."""
    return DropoutLayer(probability, Name)
