"""Input layers: imageInputLayer, featureInputLayer, sequenceInputLayer.

An input layer declares the network input's type (`input_type()`, batch of 1) and applies the
input normalization in forward. Its statistics (Mean, StandardDeviation, Min, Max) are settable
properties; unset ones act as the identity (zeros / ones) until trainnet computes them.
Forward takes `[X]`: the network input, formatted, or unformatted in the layer's canonical
layout (image (h, w, c, N), feature (n, N), sequence (n, N, T)).
"""

from __future__ import annotations

import numpy as np

from ..dlarray import DLArray, dlarray
from ..errors import FormatError, ShapeError
from ..ir.types import TensorType
from ._common import fail, input_list, named_errors, positive_int
from .base import Layer

NORMALIZATIONS = ("zerocenter", "zscore", "rescale-symmetric", "rescale-zero-one", "none")
NORMALIZATION_DIMENSIONS = ("auto", "channel", "element", "all")


class _InputLayer(Layer):
    """Shared by the input layers: feature dims `_features` (e.g. (h, w, c) or (n,)), the
    format of the data, and the normalization."""

    _fmt: str = ""
    _factory: str = ""

    def __init__(self, Name="", Normalization="none", NormalizationDimension="auto",  # noqa: N803
                 Mean=None, StandardDeviation=None, Min=None, Max=None):  # noqa: N803
        super().__init__(Name)
        fn = self._factory
        if not (callable(Normalization) or Normalization in NORMALIZATIONS):
            raise ShapeError(f"{fn}: Normalization must be one of {NORMALIZATIONS} or a function "
                             f"handle, got {Normalization!r}")
        if NormalizationDimension not in NORMALIZATION_DIMENSIONS:
            raise ShapeError(f"{fn}: NormalizationDimension must be one of "
                             f"{NORMALIZATION_DIMENSIONS}, got {NormalizationDimension!r}")
        self.Normalization = Normalization
        self.NormalizationDimension = NormalizationDimension
        self.Mean = self._stat("Mean", Mean)
        self.StandardDeviation = self._stat("StandardDeviation", StandardDeviation)
        self.Min = self._stat("Min", Min)
        self.Max = self._stat("Max", Max)

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return []

    @property
    def _features(self) -> tuple[int, ...]:
        raise NotImplementedError

    def input_type(self) -> TensorType:
        extra = self._fmt[len(self._features):]
        return TensorType("f32", self._features + (1,) * len(extra), self._fmt)

    def _stat(self, arg: str, v):
        """A statistic with one value per element, per channel, or one overall (MATLAB's
        NormalizationDimension "element" / "channel" / "all")."""
        if v is None:
            return None
        a = np.asarray(v)
        feats = self._features
        if a.dtype.kind not in "iuf" or a.size not in (1, feats[-1], int(np.prod(feats))):
            raise ShapeError(f"{self._factory}: {arg} must have one value per element "
                             f"{feats}, per channel ({feats[-1]}) or a single value, got "
                             f"shape {a.shape}")
        return a.astype(np.float32)

    def _broadcastable(self, arg: str, default: float):
        """The statistic shaped to broadcast against the data's canonical layout."""
        v = getattr(self, arg)
        if v is None:
            return np.float32(default)
        v = self._stat(arg, v)  # the property may have been reassigned
        feats = self._features
        extra = (1,) * (len(self._fmt) - len(feats))
        if v.size == 1:
            return v.reshape(())
        if v.size == int(np.prod(feats)):
            return v.reshape(feats + extra)
        return v.reshape((1,) * (len(feats) - 1) + (feats[-1],) + extra)

    def forward(self, inputs, learnables, state, training):
        (x,) = input_list(self, inputs)
        x = self._check(x)
        with named_errors(self):
            y = self._normalize(x)
        return [y], {}

    def _check(self, x) -> DLArray:
        if not isinstance(x, DLArray) or not x.fmt:
            try:
                x = dlarray(x, self._fmt)
            except FormatError as e:
                raise fail(self, f"unformatted input {np.shape(x)} does not fit the layer's "
                                 f"format {self._fmt}: {e}", FormatError) from None
        want = self._fmt
        if x.fmt != want:
            raise fail(self, f"input must be formatted {want}, got {x.fmt} {x.shape}",
                       FormatError)
        feats = self._features
        if tuple(x.shape[:len(feats)]) != feats:
            raise fail(self, f"input {x.fmt} {x.shape} does not match InputSize {feats}")
        if x.dtype.kind != "f":
            x = x.astype(np.float32)
        return x

    def _normalize(self, x):
        mode = self.Normalization
        if callable(mode):
            return mode(x)
        if mode == "none":
            return x
        if mode == "zerocenter":
            # no Mean yet (trainnet computes it): the identity, without a subtraction op
            return x if self.Mean is None else x - self._broadcastable("Mean", 0.0)
        if mode == "zscore":
            return (x - self._broadcastable("Mean", 0.0)) / self._broadcastable(
                "StandardDeviation", 1.0)
        lo, hi = self._broadcastable("Min", 0.0), self._broadcastable("Max", 1.0)
        y = (x - lo) / (hi - lo)
        return y * 2.0 - 1.0 if mode == "rescale-symmetric" else y


def _size(fn: str, sz) -> tuple[int, ...]:
    a = np.asarray(sz)
    if a.ndim > 1 or a.size not in (2, 3) or a.dtype.kind not in "iuf" or \
            not np.all(a == np.round(a)) or not np.all(a >= 1):
        raise ShapeError(f"{fn}: inputSize must be [h w] or [h w c] of positive integers, "
                         f"got {sz!r}")
    out = tuple(int(s) for s in a)
    return out if len(out) == 3 else out + (1,)


class ImageInputLayer(_InputLayer):
    stem = "imageinput"
    Type = "Image Input"
    _fmt = "SSCB"
    _factory = "imageInputLayer"

    def __init__(self, inputSize, Name="", Normalization="zerocenter", **options):  # noqa: N803
        self.InputSize = _size(self._factory, inputSize)
        super().__init__(Name, Normalization, **options)

    @property
    def _features(self):
        return self.InputSize


def imageInputLayer(inputSize, **options) -> ImageInputLayer:  # noqa: N802, N803
    """imageInputLayer(inputSize, Name="", Normalization="zerocenter",
    NormalizationDimension="auto", Mean=None, StandardDeviation=None, Min=None, Max=None) —
    the input of a network on 2-D images.

    Args:
        inputSize: [h w c] (or [h w] for one channel).
        Normalization: "zerocenter" (X − Mean), "zscore" ((X − Mean) / StandardDeviation),
            "rescale-symmetric" (to [−1, 1] by Min/Max), "rescale-zero-one" (to [0, 1]),
            "none", or a function fn(X).
        Mean, StandardDeviation, Min, Max: (h, w, c), per channel (c elements) or scalar.
    The network input is "SSCB" (h, w, c, N).
    MATLAB difference: an unset Mean is zeros until trainnet computes it from the data.
    """
    return ImageInputLayer(inputSize, **options)


class FeatureInputLayer(_InputLayer):
    stem = "input"
    Type = "Feature Input"
    _fmt = "CB"
    _factory = "featureInputLayer"

    def __init__(self, numFeatures, Name="", Normalization="none", **options):  # noqa: N803
        self.InputSize = positive_int(self._factory, "numFeatures", numFeatures)
        super().__init__(Name, Normalization, **options)

    @property
    def _features(self):
        return (self.InputSize,)


def featureInputLayer(numFeatures, **options) -> FeatureInputLayer:  # noqa: N802, N803
    """featureInputLayer(numFeatures, Name="", Normalization="none", Mean=None, ...) — the
    input of a network on feature vectors; the network input is "CB" (n, N). Normalization
    options as imageInputLayer (statistics with numFeatures elements or one)."""
    return FeatureInputLayer(numFeatures, **options)


class SequenceInputLayer(_InputLayer):
    stem = "sequenceinput"
    Type = "Sequence Input"
    _factory = "sequenceInputLayer"

    def __init__(self, inputSize, Name="", Normalization="none", MinLength=1,  # noqa: N803
                 **options):
        fn = self._factory
        if np.ndim(inputSize) == 0:
            self.InputSize = positive_int(fn, "inputSize", inputSize)
        else:
            self.InputSize = _size(fn, inputSize)
        self.MinLength = positive_int(fn, "MinLength", MinLength)
        super().__init__(Name, Normalization, **options)

    @property
    def _fmt(self) -> str:  # type: ignore[override]
        return "CBT" if isinstance(self.InputSize, int) else "SSCBT"

    @property
    def _features(self):
        return (self.InputSize,) if isinstance(self.InputSize, int) else self.InputSize

    def _check(self, x):
        x = super()._check(x)
        t = x.shape[x.fmt.index("T")]
        if t < self.MinLength:
            raise fail(self, f"sequences have {t} time steps, fewer than MinLength "
                             f"{self.MinLength}")
        return x


def sequenceInputLayer(inputSize, **options) -> SequenceInputLayer:  # noqa: N802, N803
    """sequenceInputLayer(inputSize, Name="", Normalization="none", MinLength=1, Mean=None,
    ...) — the input of a network on sequences: inputSize n gives "CBT" (n, N, T) data,
    [h w c] gives image sequences "SSCBT". Normalization options as imageInputLayer."""
    return SequenceInputLayer(inputSize, **options)


__all__ = ["ImageInputLayer", "FeatureInputLayer", "SequenceInputLayer", "imageInputLayer",
           "featureInputLayer", "sequenceInputLayer"]
