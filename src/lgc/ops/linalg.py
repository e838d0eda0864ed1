"""Matrix multiplication."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.types import TensorType, np_dtype, result_dtype
from .base import Lowering, OpDef, Sample, kernel_threads, register, require_float


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
        # Straight into the planned output buffer, through the kernel below: the register-
        # blocked panel kernel where the shapes suit it (`panel_pays`, intrinsics.py: a fully
        # connected layer's products), else BLAS by `gemm`, which calls SciPy's BLAS (the one
        # kernels with in-kernel GEMMs call through np.dot) on blocks of rows that are strided
        # views (np.dot would need copies, and its copying path compiles in seconds). NumPy's
        # own BLAS is a second library with a second set of threads, and two sets spinning on
        # the same cores slow each other down several times (measured: an LSTM step 7 -> 27 ms
        # when its kernels' GEMMs and the matmuls used different libraries)
        from ..backend.numba.intrinsics import panel_address, panel_pays

        dtype = np_dtype(node.out.dtype)
        (m, k), n = node.inputs[0].shape, node.out.shape[1]
        pays = panel_pays.py_func(m, k, n, dtype.itemsize)
        scratch, none = {}, np.empty((0, 0), dtype)  # none: y's rows contiguous, or BLAS

        def blasable(a):
            a = a if a.dtype == dtype else a.astype(dtype)
            return a if a.flags.c_contiguous or a.flags.f_contiguous else np.ascontiguousarray(a)

        def transposed(y):
            # room for y's rows made contiguous when the panel kernel takes the product (one
            # array for the node, made on its first call)
            if not pays or y.flags.c_contiguous:
                return none
            if y.shape not in scratch:
                scratch[y.shape] = np.empty(y.shape, dtype)
            return scratch[y.shape]

        def args(ins, outs):
            x, y = blasable(ins[0]), blasable(ins[1])
            return [x, y, outs[0], transposed(y), panel_address(dtype) if pays else 0]
        # the kernels have the threads (BLAS single-threaded during a call): a big product is
        # split by rows (or columns) between them, one single-threaded product each
        count = min(kernel_threads(self.blas_flops(node) // GEMM_FLOPS_PER_ELEMENT), max(m, n))
        # typed with any layout: one compile serves x·y, xᵀ·y and x·yᵀ (~0.25 s each)
        return Lowering(source=_MATMUL, threads=count, args=args, any_layout=True)

    def blas_flops(self, node):
        (m, k), (_, n) = node.inputs[0].shape, node.inputs[1].shape
        return 2 * m * k * n

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 4)), rng.normal(size=(4, 5))])]


# z = x @ y, part t of T: on the panel kernel where it takes the product (`panel_part` of
# intrinsics.py, compiled once and called at its address `panel`; yt: room for y's rows made
# contiguous), else by BLAS straight on views, a block of rows of z, or of columns when it is
# wider than tall (one gemm call: each call site of gemm compiles into the kernel again)
_MATMUL = """def kernel(x, y, z, yt, panel, t, T):
    if panel != 0 and call_compiled(panel, (x, y, z, yt, t, T)):
        return 0
    m, n = z.shape
    if m >= n:
        i0, i1 = t * m // T, (t + 1) * m // T
        xs, ys, zs = x[i0:i1], y[:, :], z[i0:i1]
    else:
        j0, j1 = t * n // T, (t + 1) * n // T
        xs, ys, zs = x[:, :], y[:, j0:j1], z[:, j0:j1]
    gemm(xs, ys, zs)
    return 0
"""
# GEMM flops per elementwise-kernel element when asking `kernel_threads`: a product is split
# from 2^22 flops (~40 us on one thread; a prepared call on two threads costs ~3 us more)
GEMM_FLOPS_PER_ELEMENT = 128
