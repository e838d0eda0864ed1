"""batchnorm, groupnorm, layernorm and crosschannelnorm against NumPy versions of their
formulas, MATLAB's conventions pinned by hand-computed cases, gradients (and a gradient penalty
through batchnorm) against finite differences, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc import FormatError, ShapeError, dlarray, dlfeval, dlgradient
from lgc.normalization import batchnorm, crosschannelnorm, groupnorm, layernorm

EPS = 1e-5


def _rng(seed=0):
    return np.random.default_rng(seed)


def _bcast(v, ndim, c):
    shape = [1] * ndim
    shape[c] = -1
    return np.reshape(v, shape)


def np_norm(x, axes, eps=EPS):
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def np_batchnorm(x, c, offset, scale):
    axes = tuple(i for i in range(x.ndim) if i != c)
    return np_norm(x, axes) * _bcast(scale, x.ndim, c) + _bcast(offset, x.ndim, c)


def np_groupnorm(x, c, b, g, offset, scale):
    """Loop over observations and groups: the direct reading of the definition."""
    y = np.empty_like(x)
    nc = x.shape[c]
    size = nc // g
    for n in range(x.shape[b]) if b is not None else [None]:
        for k in range(g):
            idx = [slice(None)] * x.ndim
            idx[c] = slice(k * size, (k + 1) * size)
            if n is not None:
                idx[b] = slice(n, n + 1)
            part = x[tuple(idx)]
            y[tuple(idx)] = (part - part.mean()) / np.sqrt(part.var() + EPS)
    return y * _bcast(scale, x.ndim, c) + _bcast(offset, x.ndim, c)


def np_crosschannelnorm(x, c, w, alpha, beta, k):
    xm = np.moveaxis(x, c, 0)
    nc = xm.shape[0]
    ss = np.zeros_like(xm)
    for ch in range(nc):
        lo, hi = max(0, ch - (w - 1) // 2), min(nc, ch + w // 2 + 1)
        ss[ch] = (xm[lo:hi] ** 2).sum(axis=0)
    return x / np.moveaxis(k + alpha * ss / w, 0, c) ** beta


def fd_check(loss, args, wrt, eps=1e-6, rtol=1e-5, atol=1e-7):
    """dlgradient of loss(*args) inside dlfeval against central differences (float64)."""
    def with_grad(*a):
        y = loss(*a)
        g = dlgradient(y, *(a[i] for i in wrt))
        return y, (g if len(wrt) > 1 else (g,))

    _, grads = dlfeval(with_grad, *args)
    for i, g in zip(wrt, grads):
        base = np.asarray(args[i], dtype=np.float64)
        num = np.zeros(base.size)
        for j in range(base.size):
            for sign in (1, -1):
                p = base.copy().reshape(-1)
                p[j] += sign * eps
                a = list(args)
                a[i] = dlarray(p.reshape(base.shape), lgc.dims(args[i]))
                num[j] += sign * float(loss(*a)) / (2 * eps)
        assert g.shape == base.shape
        np.testing.assert_allclose(np.asarray(g).reshape(-1), num, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of argument {i}")


def _weighted(y, u):
    return lgc.sum(y * u)


# --- batchnorm --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,shape", [("SSCB", (2, 3, 4, 5)), ("CB", (3, 6)),
                                       ("CBT", (2, 3, 4))])
def test_batchnorm_batch_statistics_match_numpy(fmt, shape):
    rng = _rng()
    x = rng.normal(size=shape)
    nc = shape[fmt.index("C")]
    off, sc = rng.normal(size=nc), rng.normal(size=(nc, 1))
    y = batchnorm(dlarray(x, fmt), off, sc)
    assert y.fmt == fmt and y.shape == shape
    np.testing.assert_allclose(np.asarray(y), np_batchnorm(x, fmt.index("C"), off, sc),
                               rtol=1e-10, atol=1e-12)


def test_batchnorm_running_stats_weight_the_new_batch_and_use_unbiased_variance():
    # channel 0 holds 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased var 5/3
    x = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 2.0, 2.0]])
    y, m, v = batchnorm(dlarray(x, "CB"), np.zeros(2), np.ones(2),
                        np.array([[10.0], [-1.0]]), np.array([[2.0], [3.0]]))
    np.testing.assert_allclose(np.asarray(m), [[0.1 * 2.5 + 0.9 * 10], [0.1 * 1 + 0.9 * -1]])
    np.testing.assert_allclose(np.asarray(v), [[0.1 * 5 / 3 + 0.9 * 2], [0.1 * 4 / 3 + 0.9 * 3]])
    assert m.shape == (2, 1) and v.shape == (2, 1)
    # the normalization itself uses the biased variance
    np.testing.assert_allclose(np.asarray(y)[0], (x[0] - 2.5) / np.sqrt(1.25 + EPS))


def test_batchnorm_decay_options_and_stat_shapes_come_back_as_passed():
    x = _rng(1).normal(size=(2, 2, 3, 4))
    mean0, var0 = np.zeros((1, 1, 3)), np.ones(3)
    _, m, v = batchnorm(dlarray(x, "SSCB"), np.zeros(3), np.ones(3), mean0, var0,
                        MeanDecay=0.3, VarianceDecay=1.0)
    assert m.shape == (1, 1, 3) and v.shape == (3,)
    np.testing.assert_allclose(np.asarray(m).ravel(), 0.3 * x.mean(axis=(0, 1, 3)))
    np.testing.assert_allclose(np.asarray(v), x.var(axis=(0, 1, 3), ddof=1))


def test_batchnorm_inference_uses_the_given_statistics():
    rng = _rng(2)
    x = rng.normal(size=(3, 5))
    mu, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    off, sc = rng.normal(size=3), rng.normal(size=3)
    y = batchnorm(dlarray(x, "CB"), off, sc, mu, var, Training=False)
    want = (x - mu[:, None]) / np.sqrt(var[:, None] + EPS) * sc[:, None] + off[:, None]
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-12)


def test_batchnorm_dataformat_keeps_the_callers_layout():
    x = _rng(3).normal(size=(5, 3))  # rows are observations
    y = batchnorm(x, np.zeros(3), np.ones(3), DataFormat="BC")
    assert y.fmt == "" and y.shape == (5, 3)
    np.testing.assert_allclose(np.asarray(y), np_norm(x, (0,)), rtol=1e-10)


def test_batchnorm_gradients_match_finite_differences():
    rng = _rng(4)
    x = dlarray(rng.normal(size=(2, 2, 3, 2)), "SSCB")
    off, sc = rng.normal(size=(3, 1)), rng.normal(size=(3, 1))
    u = rng.normal(size=x.shape)
    fd_check(lambda x, o, s: _weighted(batchnorm(x, o, s), u), [x, off, sc], [0, 1, 2])
    mu, var = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    fd_check(lambda x, s, m, v: _weighted(batchnorm(x, off, s, m, v, Training=False), u),
             [x, sc, mu, var], [0, 1, 2, 3])


def test_batchnorm_gradient_penalty_matches_finite_differences_of_the_gradient():
    rng = _rng(5)
    x = dlarray(rng.normal(size=(3, 4)), "CB")
    off, sc = rng.normal(size=3), rng.normal(size=3)
    u = rng.normal(size=(3, 4))

    def penalty(x, s):
        g = dlgradient(_weighted(batchnorm(x, off, s), u), x, EnableHigherDerivatives=True)
        return lgc.sum(g * g)

    def penalty_and_grad(x, s):
        g = dlgradient(_weighted(batchnorm(x, off, s), u), x, RetainData=True,
                       EnableHigherDerivatives=True)
        p = lgc.sum(g * g)
        return p, dlgradient(p, x, s)

    _, (gx, gs) = dlfeval(penalty_and_grad, x, sc)
    h = 1e-5
    for arg, g in ((0, gx), (1, gs)):
        base = np.asarray([x, sc][arg], dtype=np.float64)
        num = np.zeros(base.size)
        for j in range(base.size):
            for sign in (1, -1):
                p = base.copy().reshape(-1)
                p[j] += sign * h
                a = [x, sc]
                a[arg] = dlarray(p.reshape(base.shape), lgc.dims(a[arg]))
                num[j] += sign * float(dlfeval(penalty, *a)) / (2 * h)
        np.testing.assert_allclose(np.asarray(g).ravel(), num, rtol=1e-5, atol=1e-6)


def test_batchnorm_errors():
    x = dlarray(np.ones((3, 4)), "CB")
    with pytest.raises(ShapeError, match="batchnorm: offset must have one element per channel"):
        batchnorm(x, np.zeros(2), np.ones(3))
    with pytest.raises(ShapeError, match="runningVar"):
        batchnorm(x, np.zeros(3), np.ones(3), np.zeros(3), np.ones(4))
    with pytest.raises(ShapeError, match="Training=False"):
        batchnorm(x, np.zeros(3), np.ones(3), Training=False)
    with pytest.raises(ShapeError, match="MeanDecay"):
        batchnorm(x, np.zeros(3), np.ones(3), np.zeros(3), np.ones(3), MeanDecay=2)
    with pytest.raises(FormatError, match="no channel dimension"):
        batchnorm(dlarray(np.ones((3, 4)), "SB"), np.zeros(3), np.ones(3))
    with pytest.raises(FormatError, match="DataFormat"):
        batchnorm(np.ones((3, 4)), np.zeros(3), np.ones(3))
    with pytest.raises(ShapeError, match="empty"):
        batchnorm(dlarray(np.ones((3, 0)), "CB"), np.zeros(3), np.ones(3))


# --- groupnorm --------------------------------------------------------------------------------


@pytest.mark.parametrize("groups,g", [(2, 2), ("all-channels", 1), ("channel-wise", 4), (4, 4)])
@pytest.mark.parametrize("fmt,shape", [("SSCB", (2, 3, 4, 2)), ("CBT", (4, 2, 3))])
def test_groupnorm_matches_numpy(groups, g, fmt, shape):
    rng = _rng(6)
    x = rng.normal(size=shape)
    off, sc = rng.normal(size=4), rng.normal(size=(1, 1, 4))
    y = groupnorm(dlarray(x, fmt), groups, off, sc)
    assert y.fmt == fmt
    want = np_groupnorm(x, fmt.index("C"), fmt.index("B"), g, off, sc)
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-9, atol=1e-12)


def test_groupnorm_gradients_match_finite_differences():
    rng = _rng(7)
    x = dlarray(rng.normal(size=(3, 4, 2)), "SCB")
    off, sc = rng.normal(size=4), rng.normal(size=4)
    u = rng.normal(size=x.shape)
    fd_check(lambda x, o, s: _weighted(groupnorm(x, 2, o, s), u), [x, off, sc], [0, 1, 2])


def test_groupnorm_errors():
    x = dlarray(np.ones((2, 6, 2)), "SCB")
    with pytest.raises(ShapeError, match="numGroups 4 must be a positive divisor of .* 6"):
        groupnorm(x, 4, np.zeros(6), np.ones(6))
    with pytest.raises(ShapeError, match="numGroups"):
        groupnorm(x, "all", np.zeros(6), np.ones(6))
    with pytest.raises(ShapeError, match="numGroups"):
        groupnorm(x, 0, np.zeros(6), np.ones(6))
    with pytest.raises(ShapeError, match="scaleFactor must have one element per channel"):
        groupnorm(x, 2, np.zeros(6), np.ones(5))


# --- layernorm --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,shape,axes", [
    ("SSCB", (2, 3, 4, 2), (0, 1, 2)),  # over S and C per observation
    ("CBT", (4, 2, 3), (0,)),  # over C per observation and time step
    ("CB", (4, 3), (0,)),
])
def test_layernorm_matches_numpy(fmt, shape, axes):
    rng = _rng(8)
    x = rng.normal(size=shape)
    off, sc = rng.normal(size=4), rng.normal(size=4)
    y = layernorm(dlarray(x, fmt), off, sc)
    c = fmt.index("C")
    want = np_norm(x, axes) * _bcast(sc, x.ndim, c) + _bcast(off, x.ndim, c)
    assert y.fmt == fmt
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-9, atol=1e-12)


def test_layernorm_operation_dimension_options():
    x = _rng(9).normal(size=(2, 4, 2, 3))  # SCBT
    one, zero = np.ones(4), np.zeros(4)
    for mode, axes in [("channel-only", (1,)), ("spatial-channel", (0, 1)),
                       ("batch-excluded", (0, 1, 3))]:
        y = layernorm(dlarray(x, "SCBT"), zero, one, OperationDimension=mode)
        np.testing.assert_allclose(np.asarray(y), np_norm(x, axes), rtol=1e-9, atol=1e-12)
    with pytest.raises(ShapeError, match="OperationDimension"):
        layernorm(dlarray(x, "SCBT"), zero, one, OperationDimension="spatial")


def test_layernorm_gradients_match_finite_differences():
    rng = _rng(10)
    x = dlarray(rng.normal(size=(3, 2, 2)), "CBT")
    off, sc = rng.normal(size=3), rng.normal(size=3)
    u = rng.normal(size=x.shape)
    fd_check(lambda x, o, s: _weighted(layernorm(x, o, s, Epsilon=1e-3), u), [x, off, sc],
             [0, 1, 2])


# --- crosschannelnorm -------------------------------------------------------------------------


def test_crosschannelnorm_even_window_hand_computed():
    # w = 2 looks back floor(1/2) = 0 channels and forward floor(2/2) = 1: ss[c] = x[c]² + x[c+1]²
    x = dlarray(np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1), "CB")
    y = crosschannelnorm(x, 2, Alpha=1.0, Beta=1.0, K=1.0)
    want = [1 / (1 + 5 / 2), 2 / (1 + 13 / 2), 3 / (1 + 25 / 2), 4 / (1 + 16 / 2)]
    np.testing.assert_allclose(np.asarray(y).ravel(), want)
    # w = 4: back 1, forward 2; alpha is divided by the window size
    y = crosschannelnorm(x, 4, Alpha=2.0, Beta=0.5, K=3.0)
    ss = [1 + 4 + 9, 1 + 4 + 9 + 16, 4 + 9 + 16, 9 + 16]
    want = [v / np.sqrt(3 + 2.0 * s / 4) for v, s in zip([1, 2, 3, 4], ss)]
    np.testing.assert_allclose(np.asarray(y).ravel(), want)


@pytest.mark.parametrize("w", [1, 2, 3, 5, 8])
def test_crosschannelnorm_matches_numpy(w):
    x = _rng(11).normal(size=(2, 3, 6, 2))
    y = crosschannelnorm(dlarray(x, "SSCB"), w, Alpha=0.5, Beta=0.75, K=2)
    np.testing.assert_allclose(np.asarray(y), np_crosschannelnorm(x, 2, w, 0.5, 0.75, 2),
                               rtol=1e-12)
    # defaults: Alpha 1e-4, Beta 0.75, K 2
    y = crosschannelnorm(dlarray(x, "SSCB"), w)
    np.testing.assert_allclose(np.asarray(y), np_crosschannelnorm(x, 2, w, 1e-4, 0.75, 2),
                               rtol=1e-12)


def test_crosschannelnorm_gradients_match_finite_differences():
    rng = _rng(12)
    x = dlarray(rng.normal(size=(2, 5, 2)), "SCB")
    u = rng.normal(size=x.shape)
    fd_check(lambda x: _weighted(crosschannelnorm(x, 4, Alpha=0.8, K=1.5), u), [x], [0])


def test_crosschannelnorm_errors():
    x = dlarray(np.ones((3, 2)), "CB")
    for bad in (0, 2.5, -1):
        with pytest.raises(ShapeError, match="crosschannelnorm: windowSize"):
            crosschannelnorm(x, bad)
    with pytest.raises(ShapeError, match="K"):
        crosschannelnorm(x, 3, K=0)
