"""Matrix multiplication."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType, result_dtype
from .base import Lowering, OpDef, Sample, register, require_float


@register
class Matmul(OpDef):
    """z = x @ y for 2-D x (m, k) and y (k, n); the result is unformatted"""

    name = "matmul"

    def infer(self, in_types):
        x, y = in_types
        require_float(self.name, x, "x")
        require_float(self.name, y, "y")
        if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[0]:
            raise ShapeError(f"matmul: needs 2-D operands (m, k) and (k, n), got {x.shape} and "
                             f"{y.shape}")
        return [TensorType(result_dtype(x.dtype, y.dtype), (x.shape[0], y.shape[1]))]

    def ref(self, x, y):
        return np.matmul(x, y)

    def vjp(self, b, node, cts):
        x, y = node.inputs
        ct = cts[0]
        gx = b.emit("matmul", ct, b.emit("transpose", y, perm=(1, 0)))
        gy = b.emit("matmul", b.emit("transpose", x, perm=(1, 0)), ct)
        return [b.relabel(gx, x.fmt), b.relabel(gy, y.fmt)]

    def lower_numba(self, node):
        # BLAS through NumPy, straight into the planned output buffer
        return Lowering(lambda kernel, ins, outs: np.matmul(ins[0], ins[1], out=outs[0]))

    def blas_flops(self, node):
        (m, k), (_, n) = node.inputs[0].shape, node.inputs[1].shape
        return 2 * m * k * n

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 4)), rng.normal(size=(4, 5))])]

