"""Ops with no array inputs: constants, fills, random numbers."""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError
from ..ir.types import TensorType, np_dtype
from .base import Lowering, OpDef, register

_rng = np.random.default_rng()


def rng(seed: int | None = None) -> np.random.Generator:
    """Seed lgc's random generator (MATLAB `rng(seed)`); returns it."""
    global _rng
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)
                             or seed < 0):
        raise DTypeError(f"rng: seed must be a non-negative integer or None, got {seed!r}")
    _rng = np.random.default_rng(seed)
    return _rng


def generator() -> np.random.Generator:
    return _rng


@register
class Constant(OpDef):
    """y = value"""

    name = "constant"
    attrs = {"value": None, "dtype": "f32", "fmt": ""}
    differentiable = False

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        attrs["value"] = np.asarray(attrs["value"], dtype=np_dtype(attrs["dtype"]))
        return attrs

    def infer(self, in_types, value, dtype, fmt):
        return [TensorType(dtype, tuple(int(s) for s in value.shape), fmt)]

    def ref(self, value, dtype, fmt):
        return value

    def lower_numba(self, node):
        value = node.attrs["value"]

        def call(kernel, ins, outs):
            outs[0][...] = value
        return Lowering(call)


@register
class Fill(OpDef):
    """y = an array of `shape` filled with `value`"""

    name = "fill"
    attrs = {"value": 0.0, "dtype": "f32", "shape": (), "fmt": ""}
    differentiable = False

    def infer(self, in_types, value, dtype, shape, fmt):
        return [TensorType(dtype, tuple(shape), fmt)]

    def ref(self, value, dtype, shape, fmt):
        return np.full(shape, value, dtype=np_dtype(dtype))

    def lower_numba(self, node):
        value = node.attrs["value"]
        return Lowering(lambda kernel, ins, outs: outs[0].fill(value))


@register
class RandomUniform(OpDef):
    """y ~ U[0, 1) of `shape`, fresh on every call"""

    name = "random_uniform"
    attrs = {"dtype": "f32", "shape": (), "fmt": ""}
    differentiable = False
    pure = False

    def infer(self, in_types, dtype, shape, fmt):
        return [TensorType(dtype, tuple(shape), fmt)]

    def ref(self, dtype, shape, fmt):
        return _rng.random(shape, dtype=np_dtype(dtype))

    def lower_numba(self, node):
        # impure: drawn from lgc's generator (looked up per call: rng(seed) replaces it)
        dtype = np_dtype(node.attrs["dtype"])
        return Lowering(lambda kernel, ins, outs: generator().random(dtype=dtype, out=outs[0]))
