"""The Layer base class: what every layer declares and how a network uses it.

A layer is a value object holding its MATLAB properties (as attributes spelled as in MATLAB:
`Name`, `NumFilters`, `Stride`, ...). It declares its ports, initializes its learnable and
state parameters from the types of its inputs, and computes its outputs from dlarrays with the
MATLAB functions (`dlconv`, `batchnorm`, ...), so a network is traced into the op IR like any
model function. Nothing here knows about graphs: `lgc.network` does.

Contract used by `layerGraph`, `analyzeNetwork` and `dlnetwork`:

- `stem`: prefix of automatic names (`conv` -> `conv_1`, `conv_2`, ...); `Type`: the
  human-readable type shown by analyzeNetwork ("2-D Convolution").
- `InputNames` / `OutputNames`: port names. One input: ["in"]; several: ["in1", ..., "inN"];
  input layers have no inputs. Outputs: ["out"] (maxpool with unpooling outputs adds
  "indices", "size").
- `input_type()`: for input layers only, the TensorType of the network input for a batch of 1
  (analysis) — `None` for every other layer.
- `initialize(in_types, rng)` -> (learnables, state): dicts name -> numpy array, in the layer's
  parameter order, shapes as in API.md §5. Parameters the user set (e.g. `layer.Weights`) are
  kept; raises ShapeError naming the layer when they do not fit `in_types`.
- `forward(inputs, learnables, state, training)` -> (outputs, new_state): lists/dicts of
  DLArrays. `training=True` is `forward(net, ...)` behaviour (batch statistics, dropout on);
  False is `predict`. Must not mutate anything. Raise ShapeError/FormatError naming the layer.
- `learn_rate_factor(name)`, `l2_factor(name)`: MATLAB's per-parameter factors.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ..errors import ShapeError


class Layer:
    stem: ClassVar[str] = "layer"
    Type: ClassVar[str] = "Layer"
    learnable_names: ClassVar[tuple[str, ...]] = ()
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, Name: str = ""):  # noqa: N803
        if not isinstance(Name, str):
            raise ShapeError(f"{type(self).__name__}: Name must be a string, got {Name!r}")
        self.Name = Name

    # --- ports --------------------------------------------------------------------------------

    @property
    def NumInputs(self) -> int:  # noqa: N802
        return len(self.InputNames)

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return ["in"]

    @property
    def OutputNames(self) -> list[str]:  # noqa: N802
        return ["out"]

    def input_type(self):
        return None

    # --- parameters ---------------------------------------------------------------------------

    def initialize(self, in_types, rng: np.random.Generator):
        return {}, {}

    def learn_rate_factor(self, name: str) -> float:
        return self._factor(name, "LearnRateFactor", 1.0)

    def l2_factor(self, name: str) -> float:
        return self._factor(name, "L2Factor", 0.0 if name == "Bias" else 1.0)

    def _factor(self, name: str, kind: str, default: float) -> float:
        # MATLAB spells some factors after the plural parameter name (InputWeightsL2Factor),
        # others after the singular (WeightLearnRateFactor for Weights)
        for attr in (f"{name}{kind}", f"{name[:-1]}{kind}"):
            if hasattr(self, attr):
                return float(getattr(self, attr))
        return default

    # --- computation --------------------------------------------------------------------------

    def forward(self, inputs, learnables, state, training: bool):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    # --- display ------------------------------------------------------------------------------

    def properties(self) -> dict:
        """The MATLAB properties (public attributes starting with a capital letter)."""
        return {k: v for k, v in vars(self).items() if k[:1].isupper()}

    def __repr__(self) -> str:
        props = ", ".join(f"{k}={v!r}" for k, v in self.properties().items()
                          if not isinstance(v, np.ndarray))
        return f"{type(self).__name__}({props})"
