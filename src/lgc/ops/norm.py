"""Normalization primitives: the windowed channel sum of cross-channel (local response) norm.

batchnorm, groupnorm and layernorm compose reductions and arithmetic (lgc/normalization.py),
so their VJPs and higher derivatives come from those ops; only the sliding window along C
needs an op of its own.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from .base import Lowering, OpDef, Sample, pkq, register, require_float


@register
class ChannelWindowSum(OpDef):
    """y[c] = sum of x[c'] for c - before <= c' <= c + after along `axis` (zeros past the edges)"""

    name = "channel_window_sum"
    attrs = {"axis": 0, "before": 0, "after": 0}

    def normalize_attrs(self, attrs):
        attrs = super().normalize_attrs(attrs)
        return {k: int(v) for k, v in attrs.items()}

    def infer(self, in_types, axis, before, after):
        t = in_types[0]
        require_float(self.name, t)
        if not 0 <= axis < t.ndim:
            raise ShapeError(f"{self.name}: axis {axis} is out of range for shape {t.shape}")
        if before < 0 or after < 0:
            raise ShapeError(f"{self.name}: window extents must be >= 0, got before={before}, "
                             f"after={after}")
        return [t]

    def ref(self, x, axis, before, after):
        n = x.shape[axis]
        xm = np.moveaxis(x, axis, 0)
        y = np.zeros_like(xm)
        # one vectorized shifted add per window offset k: y[c] += x[c + k] where c + k is valid
        for k in range(-before, after + 1):
            lo, hi = max(0, -k), min(n, n - k)
            if lo < hi:
                y[lo:hi] += xm[lo + k:hi + k]
        return np.ascontiguousarray(np.moveaxis(y, 0, axis))

    def vjp(self, b, node, cts):
        # the transpose of a window [c - before, c + after] is the mirrored window
        a = node.attrs
        return [b.emit(self.name, cts[0], axis=a["axis"], before=a["after"], after=a["before"])]

    def lower_numba(self, node):
        a = node.attrs
        shape = pkq(node.inputs[0].shape, (a["axis"],))
        before, after = a["before"], a["after"]

        def args(ins, outs):
            return [outs[0].reshape(shape), ins[0].reshape(shape), before, after]
        return Lowering.looped(_WINDOW_SUM, node.out.type.size, args=args)

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 5, 2))], {"axis": 1, "before": 1, "after": 2}),
                Sample([rng.normal(size=(4, 3))], {"axis": 0, "before": 2, "after": 0}),
                Sample([rng.normal(size=(2, 3))], {"axis": 1, "before": 3, "after": 3})]


# y[p, c, q] = Σ x[p, c', q] for c' in [c − before, c + after] ∩ [0, K), ascending like `ref`
_WINDOW_SUM = """def kernel(y, x, before, after):
    K = x.shape[1]
    for p in LOOP(x.shape[0]):
        for c in range(K):
            for q in range(x.shape[2]):
                y[p, c, q] = 0
            for c2 in range(max(0, c - before), min(K, c + after + 1)):
                for q in range(x.shape[2]):
                    y[p, c, q] += x[p, c2, q]
    return 0
"""
