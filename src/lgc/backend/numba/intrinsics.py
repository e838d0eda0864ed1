"""Vectorizable exp, log, tanh and sigmoid for the Numba CPU kernels: arithmetic only, no libm
calls.

Numba lowers math.exp and math.tanh to scalar libm calls, and this llvmlite has no vector math
library, so a loop that calls them never vectorizes. These versions are range reduction plus a
polynomial plus 2**n built from its bits, all of which LLVM vectorizes; every branch is a select
(log: its argument's exponent and mantissa split by bitcasts, then fdlibm's polynomial). float32 is
computed in float32 (16 lanes of AVX-512), within 2 ulp of NumPy; float64 exp and sigmoid are
within 2 ulp too, float64 tanh and log keep libm (a polynomial of that accuracy costs more than it
saves). Overflow, underflow (through the subnormals), inf and NaN behave as in NumPy. Loops
vectorize under error_model="numpy" (the kernels' flag: the Python model's zero-division checks
would stop it). In plain Python the functions are NumPy's, so the kernels mean the same thing
everywhere; the generated kernels import them (HEADER in compile.py), and templates name them
through `expr_cpu` (ops/elementwise.py).

`panel_gemm` multiplies by a left operand packed once (an LSTM's weights, once per step) with a
register-blocked kernel written in LLVM IR; `panel_part` runs the same kernel on a fully connected
layer's products (the left operand read where it is), compiled once per machine and called by the
matmul kernel at its address (`call_compiled`). `step_barrier` lets the threads of one kernel call
(lgc's pool runs it once per thread) wait for each other between the steps of a recurrence, on
atomic loads and stores that LLVM keeps inside the loop, napping (`nap`) when a partner is long in
coming. `call_trampoline` and `compare_swap` are the pool's (threads.py): a call through an
address, and the atomic that puts a worker to sleep or hands it a call.
"""

from __future__ import annotations

import functools
import hashlib
import math
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
from numba.np import numpy_support

__all__ = ["barrier_wait", "call_compiled", "call_trampoline", "compare_swap", "cycles",
           "fast_exp", "fast_log", "fast_sigmoid", "fast_tanh", "gemm", "load_acquire", "nap",
           "pack_row", "panel_gemm", "panel_gemm_add", "panel_width", "step_barrier",
           "store_release", "transpose_into", "NAP_US", "PANEL_ROWS", "VERSION"]

# kernels compiled against an older version of this file must not be reused (compile.py)
VERSION = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


@intrinsic
def _pow2(typingctx, n):
    """2**n for a float n holding an integer in the normal exponent range: the exponent
    field set directly (an LLVM bitcast, which vectorizes; ldexp is a libm call)."""
    if not isinstance(n, types.Float):
        return None
    bits, mantissa, bias = (32, 23, 127) if n.bitwidth == 32 else (64, 52, 1023)

    def codegen(context, builder, signature, args):
        ity = ir.IntType(bits)
        e = builder.add(builder.fptosi(args[0], ity), ity(bias))
        return builder.bitcast(builder.shl(e, ity(mantissa)), context.get_value_type(n))

    return n(n), codegen


@intrinsic
def _ldexp(typingctx, x, n):
    """x * 2**n for a float n holding an integer (|n| < 2**31), rounded once as IEEE ldexp:
    LLVM's llvm.ldexp, which vectorizes (one VSCALEFPS per register with AVX-512)."""
    if not (isinstance(x, types.Float) and isinstance(n, types.Float) and x == n):
        return None
    bits = x.bitwidth

    def codegen(context, builder, signature, args):
        fty, i32 = context.get_value_type(x), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(fty, [fty, i32]),
                                            f"llvm.ldexp.f{bits}.i32")
        return builder.call(fn, [args[0], builder.fptosi(args[1], i32)])

    return x(x, n), codegen


# LLVM inlines the bodies into the kernel loop (its own cost model declines tanh), so the loop
# vectorizes; `contract` lets a multiply and add become one FMA (one rounding, fewer ops)
_INLINE = {"forceinline": True, "fastmath": {"contract"}}


def _ln2_split(hi_bits: int) -> tuple[float, float]:
    """ln 2 = hi + lo with hi of `hi_bits` significant bits (so n * hi is exact for the
    exponents n we meet) and lo the rest, from ln 2 computed to 40 digits."""
    with localcontext() as ctx:
        ctx.prec = 40
        ln2 = Decimal(2).ln()
        hi = round(float(ln2) * 2**hi_bits) / 2**hi_bits
        return hi, float(ln2 - Decimal(hi))


def _exp_constants(dtype, hi_bits: int, degree: int, lo: float, hi: float) -> dict:
    f = dtype.type
    ln2_hi, ln2_lo = _ln2_split(hi_bits)
    return {"log2e": f(1 / math.log(2)), "ln2_hi": f(ln2_hi), "ln2_lo": f(ln2_lo),
            # Taylor coefficients 1/k! from k = 2: |r| <= ln2/2 makes the truncation error
            # below a tenth of an ulp at these degrees (7 for float32, 13 for float64)
            "coef": np.array([1 / math.factorial(k) for k in range(degree, 1, -1)], dtype),
            # exp(lo) rounds to 0 and exp(hi) overflows to inf
            "lo": f(lo), "hi": f(hi), "half": f(0.5), "one": f(1.0), "two": f(2.0)}


_EXP = {32: _exp_constants(np.dtype(np.float32), 16, 7, -104.0, 89.0),
        64: _exp_constants(np.dtype(np.float64), 42, 13, -746.0, 710.0)}


def _exp_impl(c: dict):
    log2e, ln2_hi, ln2_lo, lo, hi, half, one = (c[k] for k in ("log2e", "ln2_hi", "ln2_lo",
                                                               "lo", "hi", "half", "one"))
    coef = c["coef"]
    n_coef = len(coef)
    # ldexp is one instruction with AVX-512 (VSCALEFPS); elsewhere LLVM calls libm's for it
    scalef = VECTOR_BYTES == 64

    def impl(x):
        xc = x if x < hi else hi  # NaN takes hi here and is passed through at the end
        xc = xc if xc > lo else lo
        n = np.floor(xc * log2e + half)
        r = (xc - n * ln2_hi) - n * ln2_lo
        p = coef[0]
        for k in range(1, n_coef):  # a constant array (no bounds checks): LLVM unrolls this
            p = p * r + coef[k]
        p = one + (r + r * r * p)
        if scalef:  # overflows to inf or rounds once into the subnormals
            y = _ldexp(p, n)
        else:  # 2**n in two factors: each stays a normal number while the product overflows
            m = np.floor(n * half)  # to inf or rounds once into the subnormals
            y = p * _pow2(m) * _pow2(n - m)
        return x if x != x else y

    return impl


def _float_type(x):
    if isinstance(x, types.Float):
        return x.bitwidth
    if isinstance(x, (types.Integer, types.Boolean)):
        return 64  # as math.exp: integers compute in float64
    return None


def _as_float(bits: int):
    return np.float32 if bits == 32 else np.float64


def fast_exp(x):
    """exp(x); vectorizable in Numba-compiled code."""
    return np.exp(x)


@overload(fast_exp, jit_options=_INLINE)
def _fast_exp(x):
    bits = _float_type(x)
    if bits is None:
        return None
    exp = _exp_impl(_EXP[bits])
    if isinstance(x, types.Float):
        return exp
    cast = _as_float(bits)
    return lambda x: fast_exp(cast(x))


@intrinsic
def _split_float(typingctx, x):
    """(m, e) with x = m·2**e, m in [1, 2), for a positive normal float32 x, e as a float: the
    exponent field read and replaced by the bias (bitcasts and integer ops, which vectorize;
    frexp is a libm call)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32, f32 = ir.IntType(32), ir.FloatType()
        bits = builder.bitcast(args[0], i32)
        e = builder.sub(builder.lshr(bits, i32(23)), i32(127))
        m = builder.bitcast(builder.or_(builder.and_(bits, i32(0x7FFFFF)), i32(127 << 23)), f32)
        return context.make_tuple(builder, signature.return_type, [m, builder.sitofp(e, f32)])

    return types.UniTuple(types.float32, 2)(x), codegen


# log1p(f) = 2 atanh(s), s = f/(2+f), |f| <= sqrt(2) - 1: s·(hfsq + R(s²)) with hfsq = f²/2, R
# fdlibm's float minimax fit (e_logf.c, as in musl): within an ulp in float32
_LOG32 = {"lg": np.array([0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841],
                         np.float32),
          "ln2_hi": np.float32(6.9313812256e-01), "ln2_lo": np.float32(9.0580006145e-06),
          "sqrt2": np.float32(math.sqrt(2)), "tiny": np.float32(np.finfo(np.float32).tiny),
          "scale": np.float32(2.0**23), "half": np.float32(0.5), "one": np.float32(1.0),
          "two": np.float32(2.0), "inf": np.float32(np.inf), "nan": np.float32(np.nan)}


def _float32_overload(fn, libm):
    """Register the overload of `fn` whose float32 body `build()` returns (vectorizable,
    inlined into the kernel loop); float64 and integer arguments call `libm` (math.log,
    math.tanh: accurate, and LLVM keeps float64 loops scalar around them anyway)."""

    def register(build):
        @overload(fn, jit_options=_INLINE)
        def _typed(x):
            bits = _float_type(x)
            if bits is None:
                return None
            return (lambda x: libm(x)) if bits == 64 else build()
        return build

    return register


def fast_log(x):
    """log(x); vectorizable in Numba-compiled code for float32 (float64 calls libm)."""
    return np.log(x)


@_float32_overload(fast_log, math.log)
def _fast_log32():
    c = _LOG32
    lg1, lg2, lg3, lg4 = (np.float32(v) for v in c["lg"])
    ln2_hi, ln2_lo, sqrt2, tiny, scale, half, one, two, inf, nan = (
        c[k] for k in ("ln2_hi", "ln2_lo", "sqrt2", "tiny", "scale", "half", "one", "two",
                       "inf", "nan"))

    def impl(x):
        sub = x < tiny  # subnormals (and 0, negatives: replaced below) scaled into the normals
        m, e = _split_float(x * scale if sub else x)
        e = e - np.float32(23.0) if sub else e
        big = m > sqrt2  # m in [sqrt(1/2), sqrt(2)): f small either side of 1
        m = m * half if big else m
        e = e + one if big else e
        f = m - one
        s = f / (two + f)
        z = s * s
        w = z * z
        r = z * (lg1 + w * lg3) + w * (lg2 + w * lg4)
        hfsq = half * f * f
        y = e * ln2_hi - ((hfsq - (s * (hfsq + r) + e * ln2_lo)) - f)
        y = -inf if x == 0 else y
        y = nan if x < 0 else y
        return y if x < inf else x  # inf and NaN as they are

    return impl


def fast_sigmoid(x):
    """1 / (1 + exp(-x)), never overflowing; vectorizable in Numba-compiled code."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


@overload(fast_sigmoid, jit_options=_INLINE)
def _fast_sigmoid(x):
    bits = _float_type(x)
    if bits is None:
        return None
    one, cast = _EXP[bits]["one"], _as_float(bits)

    def impl(x):
        xf = cast(x)
        e = fast_exp(-abs(xf))  # in (0, 1]: no overflow on either side
        # one division (not e * (1 / (1 + e))): one rounding fewer
        return (one if xf >= 0 else e) / (one + e)

    return impl


def _tanh_small_coefficients(bound: float, degree: int) -> tuple[float, ...]:
    """Coefficients c_k (highest first) of tanh(x) ~ x + x**3 * sum c_k u**k, u = x*x, for
    |x| <= bound: a least-squares fit at Chebyshev points, weighted to the relative error."""
    t = np.cos(np.pi * (np.arange(400) + 0.5) / 400)
    x = bound * (t + 1) / 2 + 1e-3 * bound
    u = x * x
    g = (np.tanh(x) - x) / x**3
    a = np.vander(u, degree + 1) * (x**2 / np.tanh(x))[:, None]
    sol, *_ = np.linalg.lstsq(a, g * x**2 / np.tanh(x), rcond=None)
    return tuple(float(s) for s in sol)


_TANH_SMALL = 0.625  # below this, 1 - 2/(exp(2x) + 1) cancels: a polynomial instead
_TANH32 = np.array(_tanh_small_coefficients(_TANH_SMALL, 5), np.float32)


def fast_tanh(x):
    """tanh(x); vectorizable in Numba-compiled code for float32 (float64 calls libm)."""
    return np.tanh(x)


@_float32_overload(fast_tanh, math.tanh)
def _fast_tanh32():
    c = _EXP[32]
    one, two, bound, coef = c["one"], c["two"], np.float32(_TANH_SMALL), _TANH32
    n_coef = len(coef)

    def impl(x):
        a = abs(x)
        big = one - two / (fast_exp(two * a) + one)  # 1 for large |x|, NaN for NaN
        big = big if x >= 0 else -big
        u = x * x
        p = coef[0]
        for k in range(1, n_coef):
            p = p * u + coef[k]
        small = x * (one + u * p)  # keeps the sign of -0.0
        return small if a < bound else big

    return impl


# --- products whose left operand is packed once ----------------------------------------------

# A recurrence multiplies the same weights by a new block of N columns at every step. BLAS
# repacks the weights on each call; `panel_gemm` takes them packed once, in panels of
# PANEL_ROWS rows stored column by column, and runs a register-blocked kernel: PANEL_ROWS rows
# by two vectors of columns held in registers over the whole of K. Measured on this machine's
# AVX-512 core, one thread, against SciPy's OpenBLAS on the same shapes: (256 x 160)·(160 x 32)
# 25 us vs 33 us, (64 x 512)·(512 x 32) 20 us vs 29 us (about the core's peak against 75 %).


def _vector_bytes() -> int:
    """64 with AVX-512, else 32; LGC_VECTOR_BYTES=32 asks for the narrower kernels on any CPU
    (the tests run them so, on a machine that would not)."""
    import os

    import llvmlite.binding as llvm

    native = 64 if llvm.get_host_cpu_features().get("avx512f") else 32
    return min(native, 32) if os.environ.get("LGC_VECTOR_BYTES") == "32" else native


VECTOR_BYTES = _vector_bytes()  # one register: 16 float32 lanes with AVX-512, else 8
PANEL_ROWS = 8 if VECTOR_BYTES == 64 else 4  # 2 x PANEL_ROWS accumulators fill half the file


@intrinsic
def _panel_product(typingctx, a, b, c, nv, add):
    """c[:R, :nv·W] (+)= a[:R] @ b[:, :nv·W] for R = PANEL_ROWS (a constant: the kernel is
    unrolled over the rows; a, b and c must have them), K = b.shape[0], W = the lanes of one
    register; a of any strides, rows of b and c of unit stride. `add` (a literal 0 or 1):
    whether c's values are added to. The R x nv registers of c stay in registers over the
    whole of K: one broadcast of a and nv FMAs per row and k."""
    if not (isinstance(nv, types.IntegerLiteral) and isinstance(add, types.IntegerLiteral)
            and all(isinstance(t, types.Array) and t.ndim == 2 and t.dtype == a.dtype
                    for t in (a, b, c)) and a.dtype in (types.float32, types.float64)):
        return None
    n_vec, rows, dtype, accumulate = nv.literal_value, PANEL_ROWS, a.dtype, add.literal_value

    def codegen(context, builder, signature, args):
        fty = context.get_value_type(dtype)
        lanes = VECTOR_BYTES // context.get_abi_sizeof(fty)
        vty, intp = ir.VectorType(fty, lanes), context.get_value_type(types.intp)
        vptr = vty.as_pointer()
        size = intp(context.get_abi_sizeof(fty))
        a_arr, b_arr, c_arr = (context.make_array(t)(context, builder, value=v)
                               for t, v in zip(signature.args[:3], args[:3]))
        lda_r, lda_k = (builder.sdiv(v, size) for v in cgutils.unpack_tuple(builder, a_arr.strides))
        ldb = builder.sdiv(cgutils.unpack_tuple(builder, b_arr.strides)[0], size)
        ldc = builder.sdiv(cgutils.unpack_tuple(builder, c_arr.strides)[0], size)
        k_len = cgutils.unpack_tuple(builder, b_arr.shape)[0]
        bits = 32 if dtype == types.float32 else 64
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                             f"llvm.fma.v{lanes}f{bits}")

        def c_slot(r, j):
            row = builder.gep(c_arr.data, [builder.mul(intp(r), ldc)])
            return builder.bitcast(builder.gep(row, [intp(j * lanes)]), vptr)

        # accumulators in stack slots that LLVM promotes to registers
        acc = [[cgutils.alloca_once_value(
            builder, builder.load(c_slot(r, j), align=4) if accumulate else ir.Constant(vty, None))
            for j in range(n_vec)] for r in range(rows)]
        splat = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
        undef = ir.Constant(vty, ir.Undefined)
        with cgutils.for_range(builder, k_len) as loop:
            b_row = builder.gep(b_arr.data, [builder.mul(loop.index, ldb)])
            bv = [builder.load(builder.bitcast(builder.gep(b_row, [intp(j * lanes)]), vptr),
                               align=4) for j in range(n_vec)]
            a_col = builder.gep(a_arr.data, [builder.mul(loop.index, lda_k)])
            for r in range(rows):
                x = builder.load(builder.gep(a_col, [builder.mul(intp(r), lda_r)]))
                xv = builder.shuffle_vector(builder.insert_element(undef, x, ir.IntType(32)(0)),
                                            undef, splat)
                for j in range(n_vec):
                    builder.store(builder.call(fma, [xv, bv[j], builder.load(acc[r][j])]),
                                  acc[r][j])
        for r in range(rows):
            for j in range(n_vec):
                builder.store(builder.load(acc[r][j]), c_slot(r, j), align=4)
        return context.get_dummy_value()

    return types.none(a, b, c, nv, add), codegen


@njit(nogil=True, cache=False)
def panel_width(x):
    """The lanes of one register for x's dtype: `panel_gemm` needs a multiple of it columns."""
    return VECTOR_BYTES // x.itemsize


@njit(nogil=True, cache=False)
def pack_row(ap, i, offset, v):
    """Row i of the packed operand, columns offset + [0, len(v)), set to v."""
    i, offset = np.intp(i), np.intp(offset)  # signed: unsigned mixed with signed is a float
    p, r = i // PANEL_ROWS, i % PANEL_ROWS
    for k in range(v.shape[0]):
        ap[p, (offset + k) * PANEL_ROWS + r] = v[k]


@njit(nogil=True, cache=False)
def _fits(b, c, k, lanes):
    return not (c.shape[1] % lanes or b.shape[1] < c.shape[1] or b.shape[0] != k
                or b.strides[1] != b.itemsize or c.strides[1] != c.itemsize)


def _panel_rows(add: int):
    """One panel's rows of c = a @ b (add 0) or c += a @ b (add 1), in blocks of two registers
    of columns and one; `add` is a constant of the compiled function (one variant each)."""

    @njit(nogil=True, cache=False)
    def rows(a, b, c):
        lanes = VECTOR_BYTES // c.itemsize
        cols = c.shape[1]
        j = 0
        while j + 2 * lanes <= cols:
            _panel_product(a, b[:, j:], c[:, j:], 2, add)
            j += 2 * lanes
        if j < cols:
            _panel_product(a, b[:, j:], c[:, j:], 1, add)

    return rows


_panel_set, _panel_add = _panel_rows(0), _panel_rows(1)


@njit(nogil=True, cache=False)
def panel_gemm(ap, b, c):
    """c = A @ b, A packed by `pack_row` into ap (P panels, K·PANEL_ROWS; rows past A's are
    zeros), b (K, cols), c (P·PANEL_ROWS, cols) with cols a multiple of `panel_width` and
    rows of unit stride."""
    k = ap.shape[1] // PANEL_ROWS
    if (not _fits(b, c, k, VECTOR_BYTES // c.itemsize) or ap.shape[1] % PANEL_ROWS
            or c.shape[0] < ap.shape[0] * PANEL_ROWS or ap.strides[1] != ap.itemsize):
        raise ValueError("panel_gemm: operands do not fit the packed panels")
    for p in range(ap.shape[0]):
        # the panel's (K, PANEL_ROWS) block seen as its (PANEL_ROWS, K) transpose
        _panel_set(ap[p].reshape((k, PANEL_ROWS)).T, b, c[p * PANEL_ROWS:(p + 1) * PANEL_ROWS])


@njit(nogil=True, cache=False)
def panel_gemm_add(a, b, c):
    """c[:M] += a @ b for a (M, K) of any strides (no packing: for a K of a few registers'
    worth, read where it is), b (K, cols), c (M rounded up to whole panels, cols) with cols a
    multiple of `panel_width`; c's rows past M are scratch."""
    m, k = a.shape
    panels = (m + PANEL_ROWS - 1) // PANEL_ROWS
    if not _fits(b, c, k, VECTOR_BYTES // c.itemsize) or c.shape[0] < panels * PANEL_ROWS:
        raise ValueError("panel_gemm_add: operands do not fit the panels")
    full = m // PANEL_ROWS
    for p in range(full):
        _panel_add(a[p * PANEL_ROWS:(p + 1) * PANEL_ROWS], b,
                   c[p * PANEL_ROWS:(p + 1) * PANEL_ROWS])
    if full < panels:  # the last rows, completed with zeros (copied by loops: a slice
        rest = np.zeros((PANEL_ROWS, k), a.dtype)  # assignment costs seconds of compile)
        for i in range(m - full * PANEL_ROWS):
            for j in range(k):
                rest[i, j] = a[full * PANEL_ROWS + i, j]
        _panel_add(rest, b, c[full * PANEL_ROWS:panels * PANEL_ROWS])


# --- waiting on other threads ----------------------------------------------------------------


def _int64_vector(arr, i) -> bool:
    return (isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64
            and isinstance(i, types.Integer))


@intrinsic
def load_acquire(typingctx, arr, i):
    """arr[i] as an atomic acquire load: never hoisted out of a loop, and nothing after it is
    read before it."""
    if not _int64_vector(arr, i):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(arr)(context, builder, value=args[0]).data
        return builder.load_atomic(builder.gep(data, [args[1]]), "acquire", 8)

    return types.int64(arr, i), codegen


@intrinsic
def store_release(typingctx, arr, i, value):
    """arr[i] = value as an atomic release store: every write before it is seen first."""
    if not _int64_vector(arr, i) or not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(arr)(context, builder, value=args[0]).data
        v = context.cast(builder, args[2], signature.args[2], types.int64)
        builder.store_atomic(v, builder.gep(data, [args[1]]), "release", 8)
        return context.get_dummy_value()

    return types.none(arr, i, value), codegen


@intrinsic
def cycles(typingctx):
    """The CPU's cycle counter (llvm.readcyclecounter: RDTSC on x86), for spin deadlines."""

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter",
                                              fnty=ir.FunctionType(ir.IntType(64), []))
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def call_trampoline(typingctx, address, block, t, count):
    """status = trampoline(block, t, count) for the trampoline at `address` (integers)."""
    if not all(isinstance(x, types.Integer) for x in (address, block, t, count)):
        return None

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer(), i64, i64])
        vals = [context.cast(builder, v, ty, types.int64) for v, ty in zip(args, signature.args)]
        fn = builder.inttoptr(vals[0], fnty.as_pointer())
        res = builder.call(fn, [builder.inttoptr(vals[1], ir.IntType(8).as_pointer()),
                                vals[2], vals[3]])
        return builder.sext(res, i64)

    return types.int64(address, block, t, count), codegen


@intrinsic
def compare_swap(typingctx, arr, i, expected, new):
    """Atomically: if arr[i] == expected, arr[i] = new; returns whether it did (arr: int64)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.dtype == types.int64):
        return None

    def codegen(context, builder, signature, args):
        data = context.make_array(arr)(context, builder, value=args[0]).data
        old, new_v = (context.cast(builder, v, ty, types.int64)
                      for v, ty in zip(args[2:], signature.args[2:]))
        res = builder.cmpxchg(builder.gep(data, [args[1]]), old, new_v, "acq_rel", "acquire")
        return builder.extract_value(res, 1)

    return types.boolean(arr, i, expected, new), codegen


@intrinsic
def nap(typingctx, us):
    """The POSIX usleep(us), by symbol name: a wait that leaves the core (at least ~50 us on
    Linux, its timer slack)."""
    if not isinstance(us, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module,
                                            ir.FunctionType(ir.IntType(32), [ir.IntType(32)]),
                                            "usleep")
        builder.call(fn, [builder.trunc(context.cast(builder, args[0], us, types.int64),
                                        ir.IntType(32))])
        return context.get_dummy_value()

    return types.none(us), codegen


SYNC_STRIDE = 16  # int64 slots between two threads' counters: one cache line each
# At a step barrier: spins (~30-60 us) before a waiting thread naps, never yielding: beside
# a busy process a yield hands it the rest of the time slice (an LSTM train step beside two:
# 240 ms, a slice per barrier; with naps, ~17 ms); a nap leaves the core and costs ~60 us
BARRIER_SPINS = 100_000
NAP_US = 50
PATIENCE = 20_000_000  # turns past the spins (a nap counts NAP_US: ~20 s) before a wait is
# taken for a partner that will never come


@njit(nogil=True, cache=False, inline="always")
def barrier_wait(sync, step, first, count, patience=PATIENCE):
    """Returns once threads first, ..., first + count - 1 have each reached `step` (counted
    in their slots of `sync`: see `step_barrier`). A partner that never arrives (its part of
    the kernel failed) raises here after `patience` turns past the spins instead of hanging
    the program."""
    u0 = np.int64(first)  # signed: an unsigned index mixed with SYNC_STRIDE is a float
    for u in range(u0, u0 + np.int64(count)):
        spins = 0
        while load_acquire(sync, u * SYNC_STRIDE) < step:
            spins += 1
            if spins > BARRIER_SPINS:  # the partner is not running: see BARRIER_SPINS
                nap(NAP_US)
                spins += NAP_US
            if spins > BARRIER_SPINS + patience:
                raise RuntimeError("step_barrier: a thread of this kernel never arrived")


@njit(nogil=True, cache=False, inline="always")
def step_barrier(sync, t, count, step, first=0, patience=PATIENCE):
    """Thread t has finished `step`; returns once threads first, ..., first + count - 1 have
    (t among them). `sync` holds a counter per thread, SYNC_STRIDE apart, all equal (say v)
    when the call starts, and steps count from v + 1 (a kernel reads v first: the counters
    serve call after call; every thread meets the same sequence of barriers, whichever
    threads each waits for). A barrier in two halves: `store_release(sync, t * SYNC_STRIDE,
    step)` when t's part is done, work that needs no partner, then `barrier_wait`."""
    store_release(sync, t * SYNC_STRIDE, step)
    barrier_wait(sync, step, first, count, patience)


@intrinsic
def _xxgemm(typingctx, transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc):
    """BLAS gemm (column-major) through Numba's `numba_xxgemm` helper, by symbol name like
    np.dot's: C = A·B + beta·C on the first elements of arrays a, b, c with the given leading
    dimensions; transa/transb are ord('n') or ord('t')."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array)
            and isinstance(c, types.Array) and a.dtype == b.dtype == c.dtype
            and a.dtype in (types.float32, types.float64)):
        return None
    dtype = a.dtype
    kind = "s" if dtype == types.float32 else "d"

    def codegen(context, builder, signature, args):
        from numba.np.linalg import check_blas_return, ensure_blas

        ensure_blas()
        char, intp = ir.IntType(8), context.get_value_type(types.intp)
        void_p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p,
                                                void_p, intp, void_p, intp, void_p, void_p, intp])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
        ta, tb, mm, nn, kk, _, la, _, lb, beta_v, _, lc = args
        ptrs = [builder.bitcast(context.make_array(t)(context, builder, value=v).data, void_p)
                for t, v in ((a, args[5]), (b, args[7]), (c, args[10]))]
        ty = context.get_value_type(dtype)
        one = cgutils.alloca_once_value(builder, ir.Constant(ty, 1.0))
        bslot = cgutils.alloca_once_value(builder, context.cast(builder, beta_v,
                                                                signature.args[9], dtype))
        i8 = lambda v, t: builder.trunc(context.cast(builder, v, t, types.int64), char)  # noqa: E731
        res = builder.call(fn, (ir.Constant(char, ord(kind)), i8(ta, signature.args[0]),
                                i8(tb, signature.args[1]),
                                *(context.cast(builder, v, t, types.intp) for v, t in
                                  ((mm, signature.args[2]), (nn, signature.args[3]),
                                   (kk, signature.args[4]))),
                                builder.bitcast(one, void_p), ptrs[0],
                                context.cast(builder, la, signature.args[6], types.intp),
                                ptrs[1], context.cast(builder, lb, signature.args[8], types.intp),
                                builder.bitcast(bslot, void_p), ptrs[2],
                                context.cast(builder, lc, signature.args[11], types.intp)))
        check_blas_return(context, builder, res)
        return context.get_dummy_value()

    return types.none(transa, transb, m, n, k, a, lda, b, ldb, beta, c, ldc), codegen


# gemm and its layout helper are cached by Numba beside this file (`cache=True`: compiled once
# per machine, not once per process): each process that compiles a matmul kernel would
# otherwise type and compile them again first (0.35 s of the kernel's 0.7 s, measured)
@njit(nogil=True, cache=True)
def _blas_layout(rows, cols, s0, s1, size):
    """(ord('n') for rows stored contiguously, ord('t') for columns, 0: neither; leading
    dimension) of a 2-D operand in row-major terms."""
    if s1 == size or cols == 1:
        return ord("n"), max(s0 // size, cols, 1)
    if s0 == size or rows == 1:
        return ord("t"), max(s1 // size, rows, 1)
    return 0, 0


@njit(nogil=True, cache=True)
def gemm(x, y, z, beta=0.0):
    """z = x @ y + beta * z by BLAS, straight on 2-D views with a unit stride along one axis
    (row and column blocks, transposes); z needs it along its rows. (Anything else raises:
    a general fallback, np.dot on copies, would cost a second of compile per kernel.)"""
    m, k = x.shape
    n = y.shape[1]
    size = z.itemsize
    if m == 0 or n == 0:
        return
    tz, lc = _blas_layout(m, n, z.strides[0], z.strides[1], size)
    tx, lx = _blas_layout(m, k, x.strides[0], x.strides[1], size)
    ty, ly = _blas_layout(k, n, y.strides[0], y.strides[1], size)
    if tz != ord("n") or tx == 0 or ty == 0:
        raise ValueError("gemm: every operand needs a unit stride along one axis (the "
                         "output along its rows)")
    # row-major z = x y is column-major z^T = y^T x^T
    _xxgemm(ty, tx, n, m, k, y, ly, x, lx, beta, z, lc)


# --- whole products by the panel kernel ------------------------------------------------------

# A whole product z = x @ y (the matmul kernel's part of it) by the same register-blocked
# kernel, x read where it is: for the shapes of a network's fully connected layers it beats
# BLAS, which packs both operands on every call. Measured on this machine's AVX-512 core, one
# thread, (128 x 256)·(256 x 128): 77 us vs SciPy's OpenBLAS 100 us; x transposed (a layer's
# input gradient Wᵀ·dY) the same. A y whose rows are not contiguous (the weight gradient
# dY·Xᵀ) is transposed first into scratch, by register tiles (256 x 128 float32: 4.3 us).
#
# The matmul kernel calls it compiled once (`panel_part`, cached by Numba: once per machine)
# at its address (`call_compiled`): a call site of a Numba function compiles the callee into
# the caller again, and this one would triple every matmul kernel's compile (0.2 -> 0.6 s).
PANEL_B_BYTES = 1 << 19  # y's K x n at most this (half this core's L2): its columns are read
# once per panel of rows, from cache; a bigger product goes to BLAS, which blocks for cache


@njit(nogil=True, cache=False)
def panel_pays(m, k, n, itemsize):
    """Whether z (m x n) = x (m x k) @ y goes to the panel kernel rather than BLAS: a panel of
    rows and a register of columns at least, and y's K x n in cache. The matmul lowering asks
    it in Python too (`panel_pays.py_func`: whether to give scratch for a transposed y)."""
    return (m >= PANEL_ROWS and n * itemsize >= VECTOR_BYTES
            and k * n * itemsize <= PANEL_B_BYTES)


@njit(nogil=True, cache=False)
def aligned_part(size, unit, t, count):
    """Part t of `count` of range(size) in whole units (the last part takes the rest)."""
    units = size // unit
    lo = t * units // count * unit
    hi = size if t == count - 1 else (t + 1) * units // count * unit
    return lo, hi


@intrinsic
def _transpose_tile(typingctx, y, out):
    """out[:W, :W] = y[:W, :W].T for W = the lanes of one register (rows of unit stride): W
    rows loaded as vectors, log2(W) rounds of two-vector shuffles (round b swaps bit b of
    the row and column indices), W rows stored."""
    if not (isinstance(y, types.Array) and isinstance(out, types.Array) and y.ndim == 2
            and out.ndim == 2 and y.dtype == out.dtype
            and y.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        fty = context.get_value_type(y.dtype)
        size = context.get_abi_sizeof(fty)
        lanes = VECTOR_BYTES // size
        vty, intp = ir.VectorType(fty, lanes), context.get_value_type(types.intp)
        i32 = ir.IntType(32)

        def rows(ty, value):
            arr = context.make_array(ty)(context, builder, value=value)
            step = builder.sdiv(cgutils.unpack_tuple(builder, arr.strides)[0], intp(size))
            return [builder.bitcast(builder.gep(arr.data, [builder.mul(intp(r), step)]),
                                    vty.as_pointer()) for r in range(lanes)]

        v = [builder.load(ptr, align=size) for ptr in rows(y, args[0])]
        b = lanes // 2
        while b:
            low = ir.Constant(ir.VectorType(i32, lanes),
                              [lanes + c - b if c & b else c for c in range(lanes)])
            high = ir.Constant(ir.VectorType(i32, lanes),
                               [lanes + c if c & b else c + b for c in range(lanes)])
            for r in range(lanes):
                if not r & b:
                    v[r], v[r + b] = (builder.shuffle_vector(v[r], v[r + b], low),
                                      builder.shuffle_vector(v[r], v[r + b], high))
            b //= 2
        for ptr, row in zip(rows(out, args[1]), v):
            builder.store(row, ptr, align=size)
        return context.get_dummy_value()

    return types.none(y, out), codegen


@njit(nogil=True, cache=False)
def transpose_into(y, out):
    """out = y.T (out of shape y.shape[::-1]; rows of unit stride in both) by tiles of one
    register's lanes square, transposed in registers (`_transpose_tile`), the ragged edges
    by 4 x 4 blocks of elements (reads and writes each touching four cache lines at a time)."""
    n, k = y.shape
    w = VECTOR_BYTES // y.itemsize
    nw, kw = n - n % w, k - k % w
    for i0 in range(0, nw, w):
        for j0 in range(0, kw, w):
            _transpose_tile(y[i0:i0 + w, j0:j0 + w], out[j0:j0 + w, i0:i0 + w])
    n4, k4 = n - n % 4, k - k % 4
    for i0 in range(0, n4, 4):  # the columns past the tiles
        for j0 in range(kw if i0 < nw else 0, k4, 4):
            for j in range(4):
                for i in range(4):
                    out[j0 + j, i0 + i] = y[i0 + i, j0 + j]
        for j in range(k4, k):
            for i in range(i0, i0 + 4):
                out[j, i] = y[i, j]
    for i in range(n4, n):
        for j in range(k):
            out[j, i] = y[i, j]


@njit(nogil=True, cache=False)
def panel_product(x, y, z):
    """z = x @ y: whole panels of rows by whole registers of columns on the panel kernel (x of
    any strides, y's and z's rows of unit stride), the remaining rows and columns by BLAS."""
    m, n = z.shape
    m0 = m - m % PANEL_ROWS
    n0 = n - n % (VECTOR_BYTES // z.itemsize)
    yb = y[:, :n0]
    for p in range(m0 // PANEL_ROWS):
        _panel_set(x[p * PANEL_ROWS:(p + 1) * PANEL_ROWS], yb,
                   z[p * PANEL_ROWS:(p + 1) * PANEL_ROWS, :n0])
    if n0 < n:
        gemm(x, y[:, n0:], z[:, n0:])
    if m0 < m:
        gemm(x[m0:], yb, z[m0:, :n0])


@njit(nogil=True, cache=True)
def panel_part(x, y, z, yt, t, count):
    """Part t of `count` of z = x @ y on the panel kernel, where `panel_pays` and y's rows are
    contiguous or yt (K x n) has room to make them so; returns 0 (nothing done: BLAS's) where
    not. Parts are whole panels of rows, or whole registers of columns when z is wider than
    tall or y is transposed into yt (each part its own columns)."""
    m, n = z.shape
    k = x.shape[1]
    lanes = VECTOR_BYTES // z.itemsize
    if not panel_pays(m, k, n, z.itemsize):
        return 0
    if y.strides[1] != y.itemsize:
        if yt.shape[0] != k or yt.shape[1] != n:
            return 0
        j0, j1 = aligned_part(n, lanes, t, count)
        transpose_into(y[:, j0:j1].T, yt[:, j0:j1])
        panel_product(x, yt[:, j0:j1], z[:, j0:j1])
    elif m >= n:
        i0, i1 = aligned_part(m, PANEL_ROWS, t, count)
        panel_product(x[i0:i1], y, z[i0:i1])
    else:
        j0, j1 = aligned_part(n, lanes, t, count)
        panel_product(x, y[:, j0:j1], z[:, j0:j1])
    return 1


def _any_layout(ty):
    """The type a compiled-once callee takes for an argument of type `ty`: arrays of any
    layout as layout "A" (the same data model: only the label differs), integers as int64."""
    if isinstance(ty, types.Array):
        return ty.copy(layout="A")
    if isinstance(ty, types.Integer):
        return types.int64
    return ty


def compiled_address(dispatcher, argtypes) -> int:
    """The address of `dispatcher`'s code for arguments of `argtypes` (Numba types) as
    `call_compiled` calls it: compiled, or loaded from Numba's cache, once per process."""
    from .diskcache import LoadingCache, install

    sig = tuple(_any_layout(ty) for ty in argtypes)
    if sig not in dispatcher.overloads:
        if not isinstance(dispatcher._cache, LoadingCache):
            install(dispatcher)  # a warm start loads it without Numba's compiler set-up
        dispatcher.compile(sig)
    cres = dispatcher.overloads[sig]
    return cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)


@functools.cache
def panel_address(dtype: np.dtype) -> int:
    """The address of `panel_part` for float arrays of `dtype` (0 for other dtypes: BLAS)."""
    if dtype not in (np.float32, np.float64):
        return 0
    array = types.Array(numpy_support.from_dtype(dtype), 2, "A")
    return compiled_address(panel_part, (array,) * 4 + (types.int64,) * 2)


@intrinsic
def call_compiled(typingctx, address, args):
    """f(*args) -> int64 for the Numba-compiled f at `address` (`compiled_address`), by
    Numba's calling convention: linked by address, not compiled into the caller. An exception
    f raises propagates."""
    if not (isinstance(address, types.Integer) and isinstance(args, types.BaseTuple)):
        return None
    argtys = [_any_layout(ty) for ty in args]

    def codegen(context, builder, signature, llargs):
        call_conv = context.call_conv
        values = [context.cast(builder, builder.extract_value(llargs[1], i), ty, to)
                  for i, (ty, to) in enumerate(zip(args, argtys))]
        fnty = call_conv.get_function_type(types.int64, argtys)
        addr = context.cast(builder, llargs[0], address, types.int64)
        callee = builder.inttoptr(addr, fnty.as_pointer())
        status, result = call_conv.call_function(builder, callee, types.int64, argtys, values)
        with cgutils.if_unlikely(builder, status.is_error):
            call_conv.return_status_propagate(builder, status)
        return result

    return types.int64(address, args), codegen
