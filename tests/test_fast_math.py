"""The CPU kernels' vectorizable exp, log, tanh and sigmoid: accuracy against NumPy, edge values,
vectorization, and that only the CPU backend spells them so."""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest
from numba import njit

import lgc
from lgc.backend.numba import compile as kcompile
from lgc.backend.numba import intrinsics
from lgc.backend.numba.intrinsics import fast_exp, fast_log, fast_sigmoid, fast_tanh


@njit(error_model="numpy")  # as the kernels are compiled (no ZeroDivisionError checks)
def _exp(o, a):
    for i in range(a.shape[0]):
        o[i] = fast_exp(a[i])


@njit(error_model="numpy")
def _log(o, a):
    for i in range(a.shape[0]):
        o[i] = fast_log(a[i])


@njit(error_model="numpy")
def _tanh(o, a):
    for i in range(a.shape[0]):
        o[i] = fast_tanh(a[i])


@njit(error_model="numpy")
def _sigmoid(o, a):
    for i in range(a.shape[0]):
        o[i] = fast_sigmoid(a[i])


def _run(kernel, x):
    out = np.empty_like(x)
    kernel(out, x)
    return out


def _sigmoid_exact(x):
    xl = x.astype(np.longdouble)
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-xl))


def _log_exact(x):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x.astype(np.longdouble))


_EXACT = {_exp: lambda x: np.exp(x.astype(np.longdouble)), _log: _log_exact,
          _tanh: lambda x: np.tanh(x.astype(np.longdouble)), _sigmoid: _sigmoid_exact}


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in units in the last place (representable numbers between), NaN == NaN."""
    it = np.int32 if got.dtype == np.float32 else np.int64
    lo = np.iinfo(it).min

    def ordered(a):
        i = a.view(it).astype(np.int64)
        return np.where(i < 0, lo - i, i)
    both_nan = np.isnan(got) & np.isnan(want)
    return np.where(both_nan, 0, np.abs(ordered(got) - ordered(want)))


def _grid(dtype, limit: float) -> np.ndarray:
    """A dense grid over the whole useful range, a finer one near 0, and edge values."""
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e-7, -1e-7, 0.625, -0.625,
             88.72, 88.73, -87.3, -103.9, -103.98, -104.5, 709.7, 709.8, -745.1, -745.2]
    return np.concatenate([np.linspace(-limit, limit, 200_001), np.linspace(-2, 2, 100_001),
                           np.geomspace(1e-12, 1, 2_001), edges]).astype(dtype)


def _positive_grid(dtype) -> np.ndarray:
    """log's domain: every binade from the smallest subnormal to the largest finite number,
    densely around 1 (where log is smallest), and the edges (negative numbers: NaN)."""
    info = np.finfo(dtype)
    tiny_sub = np.nextafter(dtype(0), dtype(1))
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, -1e-30, 1.0, 2.0, 0.5, info.max,
             info.tiny, tiny_sub, np.sqrt(2), np.sqrt(0.5), np.e]
    with np.errstate(over="ignore"):  # the last point may round past the largest float64
        spread = np.geomspace(tiny_sub, info.max, 400_001, dtype=np.float64)
    return np.concatenate([spread, np.linspace(0.5, 2.0, 200_001), edges]).astype(dtype)


CASES = [(_exp, np.float32, 105.0, 1), (_exp, np.float64, 750.0, 1),
         (_log, np.float32, None, 1), (_log, np.float64, None, 1),
         (_tanh, np.float32, 12.0, 2), (_tanh, np.float64, 25.0, 2),
         (_sigmoid, np.float32, 110.0, 2), (_sigmoid, np.float64, 750.0, 2)]


@pytest.mark.parametrize("kernel, dtype, limit, max_ulps", CASES,
                         ids=[f"{k.__name__[1:]}-{np.dtype(d).name}" for k, d, *_ in CASES])
def test_accuracy_over_a_dense_grid(kernel, dtype, limit, max_ulps):
    x = _positive_grid(dtype) if kernel is _log else _grid(dtype, limit)
    got = _run(kernel, x)
    assert got.dtype == dtype
    with np.errstate(over="ignore", under="ignore"):
        want = _EXACT[kernel](x).astype(dtype)
    err = _ulps(got, want)
    worst = int(err.argmax())
    assert err.max() <= max_ulps, (x[worst], got[worst], want[worst], err.max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_edges_match_numpy(dtype):
    big = 89.0 if dtype == np.float32 else 710.0
    x = np.array([np.inf, -np.inf, np.nan, big, -big, 1e4, -1e4, 0.0, -0.0], dtype)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    got = _run(_exp, x)
    np.testing.assert_array_equal(got, want)  # inf, 0, NaN, 1 exactly
    tiny = np.array([-100.0 if dtype == np.float32 else -740.0], dtype)  # a subnormal result
    assert 0 < _run(_exp, tiny)[0] < np.finfo(dtype).tiny
    assert _ulps(_run(_exp, tiny), np.exp(tiny))[0] <= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_edges(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 1e4, -1e4, 0.0, -0.0, 1e-30], dtype)
    t = _run(_tanh, x)
    np.testing.assert_array_equal(t, np.tanh(x))
    assert np.signbit(t[6]) and t[7] == dtype(1e-30)  # -0 keeps its sign; tanh(x) = x near 0
    s = _run(_sigmoid, x)
    np.testing.assert_array_equal(s, np.array([1, 0, np.nan, 1, 0, 0.5, 0.5, 0.5], dtype))


def test_integer_arguments_compute_in_float64():
    x = np.arange(-3, 4)
    out = np.empty(x.shape, np.float64)
    _exp(out, x)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-15)


def test_log_edges_match_numpy():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0, 1.0, 2.0 ** -149], np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.log(x)
    np.testing.assert_array_equal(_run(_log, x), want)  # -inf, NaN, inf, 0 exactly


def test_python_fallbacks_are_numpy():
    x = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(fast_exp(x), np.exp(x))
    np.testing.assert_array_equal(fast_log(np.abs(x) + 1), np.log(np.abs(x) + 1))
    np.testing.assert_array_equal(fast_tanh(x), np.tanh(x))
    np.testing.assert_allclose(fast_sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 assembly")
@pytest.mark.parametrize("kernel", [_exp, _log, _tanh, _sigmoid])
def test_float32_loops_vectorize(kernel):
    x = np.zeros(64, np.float32)
    kernel(np.empty_like(x), x)
    asm = kernel.inspect_asm(next(s for s in kernel.signatures if str(s[0].dtype) == "float32"))
    # packed single-precision multiplies, and no libm call left in the loop
    assert re.search(r"\bv?mulps\b", asm)
    assert not re.search(r"call\w*\s+\w*(expf|logf|tanhf)", asm)


def test_cpu_kernels_use_them_and_cuda_keeps_math():
    from lgc.backend.cuda.codegen import emit_fused as cuda_fused

    x = lgc.dlarray(np.linspace(-2, 2, 6).reshape(2, 3).astype(np.float32), "CB")
    f = lgc.compile(lambda x: lgc.sigmoid(x) * lgc.tanh(x) + lgc.exp(x) + lgc.log(lgc.exp(x)),
                    backend="numba")
    low = f.lower(x)
    src = "".join(k.source for k in low.kernels)
    assert "fast_sigmoid(" in src and "fast_tanh(" in src and "fast_exp(" in src
    assert "fast_log(" in src
    assert "math." not in src
    node = next(k.node for k in low.kernels if "fast_exp(" in k.source)
    cuda = cuda_fused(node, ["full"] * len(node.inputs), 1)
    assert "math.exp(" in cuda and "math.tanh(" in cuda and "fast_" not in cuda
    xv = np.asarray(x)
    want = 1 / (1 + np.exp(-xv)) * np.tanh(xv) + np.exp(xv) + xv
    np.testing.assert_allclose(np.asarray(f(x)), want, rtol=1e-5)


def test_kernel_cache_key_follows_the_intrinsics(monkeypatch):
    before = kcompile.kernel_key("def kernel(): return 0", {})
    monkeypatch.setattr(kcompile, "_MACHINE", None)
    monkeypatch.setattr(intrinsics, "VERSION", "another")
    assert kcompile.kernel_key("def kernel(): return 0", {}) != before


@pytest.mark.skipif(intrinsics.VECTOR_BYTES != 64, reason="this machine runs the 32-byte path")
def test_the_narrower_registers_exp_is_as_accurate(tmp_path):
    """With AVX-512 exp scales by 2**n in one instruction (`_ldexp`: VSCALEFPS); elsewhere
    LLVM would call libm for it, so the 32-byte kernels build 2**n from two exponent fields.
    The accuracy and edge tests above, run again on that path (LGC_VECTOR_BYTES=32)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "LGC_VECTOR_BYTES": "32", "LGC_CACHE_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          __file__, "-k", "accuracy or exp_edges or tanh_and_sigmoid_edges"],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1]
