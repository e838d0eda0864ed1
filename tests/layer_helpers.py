"""Helpers shared by the layer tests: random inputs, initialize-then-forward, closeness."""

from __future__ import annotations

import numpy as np

from lgc import dlarray, extractdata
from lgc.ir.types import TensorType


def rng(seed=0):
    return np.random.default_rng(seed)


def image(h=5, w=4, c=3, n=2, seed=0):
    return dlarray(rng(seed).normal(size=(h, w, c, n)).astype(np.float32), "SSCB")


def seq(c=3, n=2, t=4, seed=0):
    return dlarray(rng(seed).normal(size=(c, n, t)).astype(np.float32), "CBT")


def type_of(x) -> TensorType:
    return TensorType("f32" if x.dtype == np.float32 else "f64", x.shape, x.fmt)


def run(layer, *xs, training=True, seed=0):
    """initialize from the inputs' types, then forward; returns (outputs, params, state, new)."""
    params, state = layer.initialize([type_of(x) for x in xs], rng(seed))
    outs, new_state = layer.forward(list(xs), params, state, training)
    return outs, params, state, new_state


def close(a, b, **kw):
    np.testing.assert_allclose(extractdata(a), extractdata(b), rtol=1e-5, atol=1e-6, **kw)
