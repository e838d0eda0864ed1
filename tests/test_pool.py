"""maxpool, maxunpool and avgpool against direct loop references, MATLAB's conventions pinned
by hand (row-major 0-based indices, padding never wins, padded zeros counted or "mean",
"global"), gradients through dlfeval against finite differences, and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import lgc
from lgc.convolution import avgpool, maxpool, maxunpool
from lgc.errors import DTypeError, FormatError, ShapeError

RNG = np.random.default_rng(11)


def distinct(*shape):
    """Values with no ties, at least 1 apart."""
    return RNG.permutation(math.prod(shape)).reshape(shape) + 0.1 * RNG.random(shape)


def pool_loop(x, pool, stride, pads, kind):
    """Direct pooling over the leading len(pool) axes: (values, linear indices or None).
    kind: "max", "avg" (padding counted as zeros) or "mean" (padding left out)."""
    d = len(pool)
    padded = [n + a + b for n, (a, b) in zip(x.shape[:d], pads)]
    outs = [(p - k) // s + 1 for p, k, s in zip(padded, pool, stride)]
    rest = x.shape[d:]
    y = np.zeros(outs + list(rest))
    idx = np.zeros(y.shape, dtype=np.int64)
    for o in np.ndindex(*outs):
        for r in np.ndindex(*rest):
            best, arg, total, count = -np.inf, -1, 0.0, 0
            for kk in np.ndindex(*pool):
                pos = [o[i] * stride[i] + kk[i] - pads[i][0] for i in range(d)]
                if any(p < 0 or p >= n for p, n in zip(pos, x.shape)):
                    continue
                v = x[tuple(pos) + r]
                total, count = total + v, count + 1
                if v > best:
                    best, arg = v, np.ravel_multi_index(tuple(pos) + r, x.shape)
            if kind == "max":
                y[o + r], idx[o + r] = best, arg
            else:
                y[o + r] = total / (count if kind == "mean" else math.prod(pool))
    return y, idx


CASES = [
    # (x shape, fmt, poolsize, options, expected pads)
    ((7, 2, 2), "SCB", 2, {"Stride": 2}, ((0, 0),)),
    ((7, 2, 2), "SCB", 3, {"Padding": "same", "Stride": 2}, ((1, 1),)),
    ((6, 5, 2, 2), "SSCB", [3, 2], {"Stride": [1, 2], "Padding": 1}, ((1, 1), (1, 1))),
    ((6, 5, 2, 1), "SSCB", 3, {"Stride": 2, "Padding": np.array([[0, 1], [2, 0]])},
     ((0, 2), (1, 0))),
    ((5, 6, 3, 2), "SSCB", 2, {"Stride": 2, "Padding": "same"}, ((0, 1), (0, 0))),
    ((4, 3, 5, 2, 1), "SSSCB", [2, 2, 3], {"Stride": [1, 2, 2], "Padding": "same"},
     ((0, 1), (0, 1), (1, 1))),
    ((4, 5, 2), "SSC", 2, {"Padding": 1}, ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("xs, fmt, pool, opts, pads", CASES)
def test_maxpool_matches_direct_loops(xs, fmt, pool, opts, pads):
    d = fmt.count("S")
    x = distinct(*xs) - 30  # all negative: the zero padding must never win
    y, idx, size = maxpool(lgc.dlarray(x, fmt), pool, ReturnIndices=True, **opts)
    stride = np.broadcast_to(opts.get("Stride", 1), (d,))
    ey, eidx = pool_loop(x, np.broadcast_to(pool, (d,)), stride, pads, "max")
    assert y.fmt == fmt and idx.fmt == fmt and size == xs
    np.testing.assert_array_equal(lgc.extractdata(y), ey)
    np.testing.assert_array_equal(lgc.extractdata(idx), eidx)
    assert lgc.extractdata(idx).dtype == np.int64


@pytest.mark.parametrize("kind", ["avg", "mean"])
@pytest.mark.parametrize("xs, fmt, pool, opts, pads", CASES)
def test_avgpool_matches_direct_loops(xs, fmt, pool, opts, pads, kind):
    d = fmt.count("S")
    x = RNG.normal(size=xs)
    y = avgpool(lgc.dlarray(x, fmt), pool, PaddingValue=0 if kind == "avg" else "mean", **opts)
    stride = np.broadcast_to(opts.get("Stride", 1), (d,))
    ey, _ = pool_loop(x, np.broadcast_to(pool, (d,)), stride, pads, kind)
    assert y.fmt == fmt
    np.testing.assert_allclose(lgc.extractdata(y), ey, rtol=1e-12, atol=1e-14)


# --- MATLAB conventions, by hand ------------------------------------------------------------------


def test_maxpool_indices_are_row_major_zero_based_over_the_canonical_layout():
    # x[h, w, c, n] with H=W=2, C=2, N=1: the max of channel 0 sits at (1, 0), of channel 1
    # at (0, 1); row-major linear index = ((h·W + w)·C + c)·N + n
    x = np.zeros((2, 2, 2, 1))
    x[1, 0, 0, 0] = 5.0
    x[0, 1, 1, 0] = 7.0
    x[..., 0] += np.array([[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [0.7, 0.8]]]) * 0.01
    y, idx, size = maxpool(lgc.dlarray(x, "SSCB"), 2, ReturnIndices=True)
    np.testing.assert_array_equal(lgc.extractdata(idx).ravel(), [4, 3])
    np.testing.assert_allclose(lgc.extractdata(y).ravel(), [5.005, 7.004])
    assert size == (2, 2, 2, 1)
    assert np.asarray(x).ravel()[4] == x[1, 0, 0, 0]


def test_maxpool_padding_never_wins():
    x = -np.arange(1.0, 5.0).reshape(4, 1, 1)  # [-1, -2, -3, -4]
    y, idx, _ = maxpool(lgc.dlarray(x, "SCB"), 2, Stride=2, Padding=1, ReturnIndices=True)
    np.testing.assert_array_equal(lgc.extractdata(y).ravel(), [-1, -2, -4])
    np.testing.assert_array_equal(lgc.extractdata(idx).ravel(), [0, 1, 3])


def test_avgpool_counts_padding_unless_mean():
    X = lgc.dlarray(np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1), "SCB")
    # windows over [0, 1, 2, 3]: {0, 1}, {2, 3}
    np.testing.assert_allclose(lgc.extractdata(avgpool(X, 2, Stride=2, Padding=[1, 0])).ravel(),
                               [0.5, 2.5])
    y = avgpool(X, 2, Stride=2, Padding=[1, 0], PaddingValue="mean")
    np.testing.assert_allclose(lgc.extractdata(y).ravel(), [1.0, 2.5])


def test_global_pooling_reduces_every_spatial_dimension():
    x = RNG.normal(size=(3, 4, 2, 2))
    X = lgc.dlarray(x, "SSCB")
    y = avgpool(X, "global")
    assert y.shape == (1, 1, 2, 2) and y.fmt == "SSCB"
    np.testing.assert_allclose(lgc.extractdata(y), x.mean(axis=(0, 1), keepdims=True))
    m, idx, _ = maxpool(X, "global", ReturnIndices=True)
    np.testing.assert_array_equal(lgc.extractdata(m), x.max(axis=(0, 1), keepdims=True))
    np.testing.assert_array_equal(x.ravel()[lgc.extractdata(idx)], lgc.extractdata(m))


def test_maxunpool_scatters_to_the_argmax_and_zeros_elsewhere():
    x = distinct(4, 4, 2, 1)
    X = lgc.dlarray(x, "SSCB")
    y, idx, size = maxpool(X, 2, Stride=2, ReturnIndices=True)
    u = lgc.extractdata(maxunpool(y, idx, size))
    expected = np.zeros(x.shape)
    flat = lgc.extractdata(idx).ravel()
    expected.ravel()[flat] = x.ravel()[flat]
    np.testing.assert_array_equal(u, expected)
    assert np.count_nonzero(u) == 8


def test_maxunpool_sums_values_that_overlapping_windows_send_to_one_place():
    X = lgc.dlarray(np.array([0.0, 5.0, 1.0]).reshape(3, 1, 1), "SCB")
    y, idx, size = maxpool(X, 2, ReturnIndices=True)  # both windows pick element 1
    np.testing.assert_array_equal(lgc.extractdata(idx).ravel(), [1, 1])
    u = maxunpool(lgc.dlarray(np.array([1.0, 2.0]).reshape(2, 1, 1), "SCB"), idx, size)
    np.testing.assert_array_equal(lgc.extractdata(u).ravel(), [0, 3, 0])


def test_dataformat_round_trip_keeps_the_callers_layout():
    x = distinct(2, 3, 4, 6)  # B C S S
    y, idx, size = maxpool(x, 2, Stride=2, ReturnIndices=True, DataFormat="BCSS")
    ref = maxpool(lgc.dlarray(x, "BCSS"), 2, Stride=2)
    assert y.fmt == "" and y.shape == (2, 3, 2, 3) and size == x.shape
    np.testing.assert_array_equal(lgc.extractdata(y),
                                  lgc.extractdata(ref).transpose(3, 2, 0, 1))
    u = maxunpool(y, idx, size, DataFormat="BCSS")
    r, ridx, rsize = maxpool(lgc.dlarray(x, "BCSS"), 2, Stride=2, ReturnIndices=True)
    assert u.shape == x.shape
    np.testing.assert_array_equal(
        lgc.extractdata(u), lgc.extractdata(maxunpool(r, ridx, rsize)).transpose(3, 2, 0, 1))
    a = avgpool(x, [2, 3], DataFormat="BCSS")
    np.testing.assert_allclose(
        lgc.extractdata(a),
        lgc.extractdata(avgpool(lgc.dlarray(x, "BCSS"), [2, 3])).transpose(3, 2, 0, 1))


# --- gradients ------------------------------------------------------------------------------------


def _fd(f, x, eps=1e-6):
    g = np.zeros(x.shape)
    for j in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[j] += eps
        lo[j] -= eps
        g[j] = (f(hi) - f(lo)) / (2 * eps)
    return g


POOL_GRADS = [
    (lambda X: maxpool(X, 2, Stride=1, Padding=1), (4, 3, 2, 1), "SSCB"),
    (lambda X: maxpool(X, [2, 2, 2], Stride=[1, 2, 1]), (3, 4, 3, 1, 1), "SSSCB"),
    (lambda X: avgpool(X, 3, Stride=2, Padding="same"), (5, 2, 2), "SCB"),
    (lambda X: avgpool(X, [3, 2], Stride=[1, 2], Padding=1, PaddingValue="mean"),
     (4, 5, 2, 1), "SSCB"),
    (lambda X: avgpool(X, "global"), (3, 3, 2, 2), "SSCB"),
    (lambda X: maxunpool(*maxpool(X, 2, Stride=2, ReturnIndices=True)), (4, 4, 1, 2), "SSCB"),
]


@pytest.mark.parametrize("pool, xs, fmt", POOL_GRADS)
def test_gradients_match_finite_differences(pool, xs, fmt):
    x = distinct(*xs) * 0.1
    u = RNG.normal(size=pool(lgc.dlarray(x, fmt)).shape)

    def loss(X):
        y = pool(X)
        return lgc.sum(y * y * u)

    def model(X):
        L = loss(X)
        return L, lgc.dlgradient(L, X)

    _, g = lgc.dlfeval(model, lgc.dlarray(x, fmt))
    assert g.fmt == fmt
    np.testing.assert_allclose(lgc.extractdata(g),
                               _fd(lambda x: float(loss(lgc.dlarray(x, fmt))), x),
                               rtol=1e-6, atol=1e-8)


def test_gradient_penalty_through_pooling_matches_finite_differences():
    """d/d(X, s) |d loss / dX|² through maxpool and avgpool (EnableHigherDerivatives)."""
    x, s = distinct(4, 4, 2, 1) * 0.1, np.array([[0.7]])

    def penalty(X, S):
        y = avgpool(lgc.tanh(maxpool(X, 2) * S), 2, Padding=1, PaddingValue="mean")
        gx = lgc.dlgradient(lgc.sum(lgc.tanh(y) * y), X, EnableHigherDerivatives=True)
        return lgc.sum(gx * gx)

    def model(X, S):
        p = penalty(X, S)
        return p, lgc.dlgradient(p, X, S)

    _, (gx, gs) = lgc.dlfeval(model, lgc.dlarray(x, "SSCB"), lgc.dlarray(s))
    f = lambda x, s: float(lgc.dlfeval(penalty, lgc.dlarray(x, "SSCB"), lgc.dlarray(s)))
    np.testing.assert_allclose(lgc.extractdata(gx), _fd(lambda x: f(x, s), x),
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(lgc.extractdata(gs), _fd(lambda s: f(x, s), s), rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------------


def _X(shape=(4, 4, 2, 1), fmt="SSCB"):
    return lgc.dlarray(RNG.normal(size=shape), fmt)


@pytest.mark.parametrize("call, err, pattern", [
    (lambda: maxpool(_X(), 5), ShapeError,
     r"maxpool: poolsize \(5, 5\) is larger than the padded input \(4, 4\)"),
    (lambda: avgpool(_X(), [3, 7], Padding=1), ShapeError,
     r"avgpool: poolsize \(3, 7\) is larger than the padded input \(6, 6\)"),
    (lambda: maxpool(_X(), 2, Padding=2), ShapeError,
     r"maxpool: Padding .* must be smaller than poolsize \(2, 2\)"),
    (lambda: maxpool(_X(), 2, Stride=0), ShapeError, r"maxpool: Stride must be a positive"),
    (lambda: maxpool(_X(), [2, 2, 2]), ShapeError, r"maxpool: poolsize must be"),
    (lambda: maxpool(_X(), 0), ShapeError, r"maxpool: poolsize must be a positive"),
    (lambda: maxpool(_X(), "all"), ShapeError, r"maxpool: poolsize must be \"global\""),
    (lambda: avgpool(_X(), 2, PaddingValue=1), ShapeError,
     r"avgpool: PaddingValue must be 0 or \"mean\""),
    (lambda: avgpool(_X((4, 2, 3), "CBT"), 2), FormatError,
     r"avgpool: X \(CBT \(4, 2, 3\)\) must have 1 to 3 spatial \(S\)"),
    (lambda: maxpool(_X((4, 2, 1), "SBU"), 2), FormatError, r"maxpool"),
    (lambda: maxpool(np.zeros((4, 4, 2, 1)), 2), FormatError, r"maxpool: X is unformatted"),
    (lambda: maxunpool(_X((2, 2, 2, 1)), np.zeros((2, 2, 2, 1), dtype=np.int64), (4, 4, 3, 1)),
     ShapeError, r"maxunpool: outputSize .* non-spatial"),
    (lambda: maxunpool(_X((2, 2, 2, 1)), np.zeros((2, 2, 1, 1), dtype=np.int64), (4, 4, 2, 1)),
     ShapeError, r"maxunpool: indx \(2, 2, 1, 1\) must have the size of X"),
    (lambda: maxunpool(_X((2, 2, 2, 1)), np.full((2, 2, 2, 1), 32), (4, 4, 2, 1)),
     ShapeError, r"maxunpool: indx values must lie in \[0, 32\)"),
    (lambda: maxunpool(_X((2, 2, 2, 1)), np.zeros((2, 2, 2, 1)), (4, 4, 2, 1)),
     DTypeError, r"maxunpool: indx must hold integers"),
])
def test_errors_name_the_function_argument_and_shapes(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


def test_pool_op_infer_names_the_op():
    from lgc.ir.types import TensorType
    from lgc.ops import get_op

    op = get_op("maxpool")
    attrs = op.normalize_attrs({"pool": (3,), "stride": (1,), "padding": ((0, 0),)})
    with pytest.raises(ShapeError, match=r"maxpool: pool size \(3,\) is larger"):
        op.infer([TensorType("f64", (2, 1, 1))], **attrs)
