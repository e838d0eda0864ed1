"""Sequence layers: lstmLayer, gruLayer (recurrences, with their hidden/cell state as layer
state) and embeddingLayer.

Learnables are MATLAB's: lstm InputWeights (4H, in), RecurrentWeights (4H, H), Bias (4H, 1)
with gates i, f, g, o; gru (3H, in), (3H, H), (3H, 1) with gates r, z, h̃. The state starts as
zeros (H, 1) (or the user's HiddenState / CellState) and forward returns the final state
(H, N), unformatted, as the new state.
"""

from __future__ import annotations

import numpy as np

from ..dlarray import stripdims
from ..errors import FormatError, ShapeError
from ..recurrent import _GATE, _RESET_MODES, _STATE, embed, gru, lstm
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

_OUTPUT_MODES = ("sequence", "last")


class _Recurrent(Layer):
    """Options shared by lstm and gru; `_gates` is 4 (lstm) or 3 (gru)."""

    learnable_names = ("InputWeights", "RecurrentWeights", "Bias")
    _gates = 4
    _factory = ""

    def __init__(self, numHiddenUnits, Name="", OutputMode="sequence", InputSize="auto",  # noqa: N803
                 StateActivationFunction="tanh", GateActivationFunction="sigmoid",  # noqa: N803
                 InputWeightsInitializer="glorot",  # noqa: N803
                 RecurrentWeightsInitializer="orthogonal", BiasInitializer="zeros",  # noqa: N803
                 InputWeights=None, RecurrentWeights=None, Bias=None,  # noqa: N803
                 HiddenState=None, InputWeightsLearnRateFactor=1,  # noqa: N803
                 RecurrentWeightsLearnRateFactor=1, BiasLearnRateFactor=1,  # noqa: N803
                 InputWeightsL2Factor=1, RecurrentWeightsL2Factor=1, BiasL2Factor=0):  # noqa: N803
        super().__init__(Name)
        fn = self._factory
        self.NumHiddenUnits = positive_int(fn, "numHiddenUnits", numHiddenUnits)
        if OutputMode not in _OUTPUT_MODES:
            raise ShapeError(f"{fn}: OutputMode must be \"sequence\" or \"last\", got "
                             f"{OutputMode!r}")
        self.OutputMode = OutputMode
        self.InputSize = InputSize if InputSize == "auto" else positive_int(
            fn, "InputSize", InputSize)
        if StateActivationFunction not in _STATE:
            raise ShapeError(f"{fn}: StateActivationFunction must be one of {sorted(_STATE)}, "
                             f"got {StateActivationFunction!r}")
        if GateActivationFunction not in _GATE:
            raise ShapeError(f"{fn}: GateActivationFunction must be one of {sorted(_GATE)}, got "
                             f"{GateActivationFunction!r}")
        self.StateActivationFunction = StateActivationFunction
        self.GateActivationFunction = GateActivationFunction
        self.InputWeightsInitializer = initializer_option(fn, "InputWeightsInitializer",
                                                          InputWeightsInitializer)
        self.RecurrentWeightsInitializer = initializer_option(
            fn, "RecurrentWeightsInitializer", RecurrentWeightsInitializer)
        self.BiasInitializer = initializer_option(fn, "BiasInitializer", BiasInitializer)
        h, g = self.NumHiddenUnits, self._gates
        self.InputWeights = self._matrix("InputWeights", InputWeights, g * h, None)
        self.RecurrentWeights = self._matrix("RecurrentWeights", RecurrentWeights, g * h, h)
        self.Bias = self._vector("Bias", Bias, self._bias_rows())
        self.HiddenState = self._vector("HiddenState", HiddenState, h)
        for arg, v in (("InputWeightsLearnRateFactor", InputWeightsLearnRateFactor),
                       ("RecurrentWeightsLearnRateFactor", RecurrentWeightsLearnRateFactor),
                       ("BiasLearnRateFactor", BiasLearnRateFactor),
                       ("InputWeightsL2Factor", InputWeightsL2Factor),
                       ("RecurrentWeightsL2Factor", RecurrentWeightsL2Factor),
                       ("BiasL2Factor", BiasL2Factor)):
            setattr(self, arg, nonneg_factor(fn, arg, v))

    def _bias_rows(self) -> int:
        return self._gates * self.NumHiddenUnits

    def _matrix(self, arg, v, rows, cols):
        v = user_param(self._factory, arg, v)
        if v is not None and (v.ndim != 2 or v.shape[0] != rows or
                              (cols is not None and v.shape[1] != cols)):
            want = f"({rows}, {cols if cols is not None else 'inputSize'})"
            raise ShapeError(f"{self._factory}: {arg} must be {want}, got shape {v.shape}")
        return v

    def _vector(self, arg, v, n):
        v = user_param(self._factory, arg, v)
        if v is not None and v.size != n:
            raise ShapeError(f"{self._factory}: {arg} must have {n} elements, got shape "
                             f"{v.shape}")
        return None if v is None else v.reshape(n, 1)

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        if "C" not in t.fmt:
            raise fail(self, f"input ({t.fmt or 'unformatted'} {t.shape}) has no channel "
                             f"dimension C", FormatError)
        n_in = int(np.prod([s for s, lab in zip(t.shape, t.fmt) if lab in "SC"],
                           dtype=np.int64))
        if self.InputSize != "auto" and self.InputSize != n_in:
            raise fail(self, f"InputSize is {self.InputSize} but the input ({t.fmt} {t.shape}) "
                             f"has {n_in} features")
        if self.InputWeights is not None and self.InputWeights.shape[1] != n_in:
            raise fail(self, f"InputWeights {self.InputWeights.shape} expect "
                             f"{self.InputWeights.shape[1]} input features but the input "
                             f"({t.fmt} {t.shape}) has {n_in}")
        h, g = self.NumHiddenUnits, self._gates
        learnables = {
            "InputWeights": make_param(self, "InputWeights", (g * h, n_in),
                                       "InputWeightsInitializer", rng),
            "RecurrentWeights": make_param(self, "RecurrentWeights", (g * h, h),
                                           "RecurrentWeightsInitializer", rng),
            "Bias": make_param(self, "Bias", (self._bias_rows(), 1), "BiasInitializer", rng),
        }
        state = {name: (np.zeros((h, 1), np.float32) if getattr(self, name) is None
                        else getattr(self, name).astype(np.float32))
                 for name in self.state_names}
        return learnables, state

    def _output(self, y, hidden):
        """The layer output for OutputMode: every step, or the last one ("CB")."""
        return y if self.OutputMode == "sequence" else hidden


class LSTMLayer(_Recurrent):
    stem = "lstm"
    Type = "LSTM"
    state_names = ("HiddenState", "CellState")
    _factory = "lstmLayer"

    def __init__(self, numHiddenUnits, Name="", BiasInitializer="unit-forget-gate",  # noqa: N803
                 CellState=None, **options):  # noqa: N803
        super().__init__(numHiddenUnits, Name, BiasInitializer=BiasInitializer, **options)
        self.CellState = self._vector("CellState", CellState, self.NumHiddenUnits)

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y, h, c = lstm(x, state["HiddenState"], state["CellState"],
                           learnables["InputWeights"], learnables["RecurrentWeights"],
                           learnables["Bias"],
                           StateActivationFunction=self.StateActivationFunction,
                           GateActivationFunction=self.GateActivationFunction)
        return [self._output(y, h)], {"HiddenState": stripdims(h), "CellState": stripdims(c)}


def lstmLayer(numHiddenUnits, **options) -> LSTMLayer:  # noqa: N802, N803
    """lstmLayer(numHiddenUnits, Name="", OutputMode="sequence", InputSize="auto",
    StateActivationFunction="tanh", GateActivationFunction="sigmoid",
    InputWeightsInitializer="glorot", RecurrentWeightsInitializer="orthogonal",
    BiasInitializer="unit-forget-gate", InputWeights=None, RecurrentWeights=None, Bias=None,
    HiddenState=None, CellState=None, InputWeightsLearnRateFactor=1,
    RecurrentWeightsLearnRateFactor=1, BiasLearnRateFactor=1, InputWeightsL2Factor=1,
    RecurrentWeightsL2Factor=1, BiasL2Factor=0) — long short-term memory (lstm).

    OutputMode "sequence" outputs every time step ("CBT"), "last" only the last ("CB").
    Learnables InputWeights (4H, in), RecurrentWeights (4H, H), Bias (4H, 1); state
    HiddenState, CellState (H, 1) zeros, (H, N) after a forward.
    """
    return LSTMLayer(numHiddenUnits, **options)


class GRULayer(_Recurrent):
    stem = "gru"
    Type = "GRU"
    state_names = ("HiddenState",)
    _gates = 3
    _factory = "gruLayer"

    def __init__(self, numHiddenUnits, Name="", ResetGateMode="after-multiplication",  # noqa: N803
                 **options):
        if ResetGateMode not in _RESET_MODES:
            raise ShapeError(f"{self._factory}: ResetGateMode must be one of {_RESET_MODES}, "
                             f"got {ResetGateMode!r}")
        self.ResetGateMode = ResetGateMode
        super().__init__(numHiddenUnits, Name, **options)

    def _bias_rows(self) -> int:
        # the recurrent biases are learned too in this mode (MATLAB: 6H)
        mult = 6 if self.ResetGateMode == "recurrent-bias-after-multiplication" else 3
        return mult * self.NumHiddenUnits

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            y, h = gru(x, state["HiddenState"], learnables["InputWeights"],
                       learnables["RecurrentWeights"], learnables["Bias"],
                       ResetGateMode=self.ResetGateMode,
                       StateActivationFunction=self.StateActivationFunction,
                       GateActivationFunction=self.GateActivationFunction)
        return [self._output(y, h)], {"HiddenState": stripdims(h)}


def gruLayer(numHiddenUnits, **options) -> GRULayer:  # noqa: N802, N803
    """gruLayer(numHiddenUnits, Name="", OutputMode="sequence", ResetGateMode=
    "after-multiplication", BiasInitializer="zeros", ...) — gated recurrent unit (gru);
    other options as lstmLayer. Learnables (3H, in), (3H, H), Bias (3H, 1) (6H for
    "recurrent-bias-after-multiplication"); state HiddenState (H, 1)."""
    return GRULayer(numHiddenUnits, **options)


class EmbeddingLayer(Layer):
    stem = "embedding"
    Type = "Embedding"
    learnable_names = ("Weights",)

    def __init__(self, dimension, numWords, Name="", WeightsInitializer="narrow-normal",  # noqa: N803
                 Weights=None, WeightLearnRateFactor=1, WeightL2Factor=1):  # noqa: N803
        super().__init__(Name)
        fn = "embeddingLayer"
        self.Dimension = positive_int(fn, "dimension", dimension)
        self.NumWords = positive_int(fn, "numWords", numWords)
        self.WeightsInitializer = initializer_option(fn, "WeightsInitializer",
                                                     WeightsInitializer)
        self.Weights = user_param(fn, "Weights", Weights)
        if self.Weights is not None and self.Weights.shape != (self.Dimension, self.NumWords):
            raise ShapeError(f"{fn}: Weights must be (dimension, numWords) = ({self.Dimension}, "
                             f"{self.NumWords}), got shape {self.Weights.shape}")
        self.WeightLearnRateFactor = nonneg_factor(fn, "WeightLearnRateFactor",
                                                   WeightLearnRateFactor)
        self.WeightL2Factor = nonneg_factor(fn, "WeightL2Factor", WeightL2Factor)

    def initialize(self, in_types, rng):
        t = one_input(self, in_types)
        if "C" in t.fmt and t.shape[t.fmt.index("C")] != 1:
            raise fail(self, f"input ({t.fmt} {t.shape}) must hold one index per element: its "
                             f"C dimension must be a singleton")
        w = make_param(self, "Weights", (self.Dimension, self.NumWords), "WeightsInitializer",
                       rng)
        return {"Weights": w}, {}

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = formatted(self, x)
        with named_errors(self):
            return [embed(x, learnables["Weights"])], {}


def embeddingLayer(dimension, numWords, **options) -> EmbeddingLayer:  # noqa: N802, N803
    """embeddingLayer(dimension, numWords, Name="", WeightsInitializer="narrow-normal",
    Weights=None, WeightLearnRateFactor=1, WeightL2Factor=1) — map 0-based indices to the
    columns of Weights (dimension, numWords) (embed); a singleton C becomes `dimension`.
    MATLAB difference: indices are 0-based."""
    return EmbeddingLayer(dimension, numWords, **options)
