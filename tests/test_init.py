"""lgc.init: the statistics of each initializer, MATLAB's fan conventions, orthogonality, the
unit-forget-gate layout, seeding, callables, and errors."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc import init
from lgc.errors import ShapeError


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("shape, fans", [
    ((10, 784), (784, 10)),            # fully connected (out, in)
    ((3, 5, 4, 8), (60, 120)),         # conv (h, w, C, F): h·w·C, h·w·F
    ((7,), (7, 7)),
    ((2, 2, 2, 3, 4), (24, 32)),       # 3-D conv (h, w, d, C, F)
])
def test_fans_follow_matlab_conventions(shape, fans):
    assert init.fans(shape) == fans


def test_glorot_is_uniform_within_the_bound_with_the_uniform_variance():
    shape = (200, 300)
    w = init.glorot(shape, rng=rng())
    bound = np.sqrt(6 / (300 + 200))
    assert w.dtype == np.float32 and w.shape == shape
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.99 * bound  # it uses the whole interval
    assert abs(w.mean()) < 0.01 * bound
    np.testing.assert_allclose(w.var(), bound ** 2 / 3, rtol=0.03)


def test_glorot_conv_uses_receptive_field_fans_and_explicit_fans_override():
    w = init.glorot((3, 3, 16, 32), rng=rng())
    bound = np.sqrt(6 / (9 * 16 + 9 * 32))
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
    w2 = init.glorot((100, 100), fanIn=1, fanOut=5, rng=rng())
    assert np.abs(w2).max() <= 1.0 and np.abs(w2).max() > 0.99


def test_he_is_normal_with_variance_two_over_fan_in():
    w = init.he((64, 500), rng=rng())
    assert abs(w.mean()) < 0.005
    np.testing.assert_allclose(w.var(), 2 / 500, rtol=0.03)
    wc = init.he((3, 3, 8, 200), rng=rng())
    np.testing.assert_allclose(wc.var(), 2 / 72, rtol=0.03)
    # normal, not uniform: the fourth moment is 3 sigma^4
    np.testing.assert_allclose(np.mean(w.astype(np.float64) ** 4) / w.var() ** 2, 3, rtol=0.05)


def test_narrow_normal_is_n0_001():
    w = init.narrow_normal((300, 300), rng=rng())
    assert abs(w.mean()) < 1e-3
    np.testing.assert_allclose(w.std(), 0.01, rtol=0.02)


@pytest.mark.parametrize("shape", [(40, 10), (10, 40), (16, 16), (3, 3, 4, 8)])
def test_orthogonal_has_orthonormal_columns_or_rows(shape):
    q = init.orthogonal(shape, rng=rng()).astype(np.float64)
    assert q.shape == shape
    m = q.reshape(-1, shape[-1])
    if m.shape[0] >= m.shape[1]:
        np.testing.assert_allclose(m.T @ m, np.eye(m.shape[1]), atol=1e-5)
    else:
        np.testing.assert_allclose(m @ m.T, np.eye(m.shape[0]), atol=1e-5)


def test_orthogonal_is_sign_corrected():
    # without the correction, the QR convention (diag(R) >= 0 in LAPACK's Householder form, or
    # not) biases the diagonal of Q; with it, Q's diagonal has mean ~0 over many draws
    g = rng(1)
    diag = np.array([np.diag(init.orthogonal((4, 4), rng=g)) for _ in range(2000)])
    assert np.all(np.abs(diag.mean(axis=0)) < 0.06)


def test_zeros_ones_and_unit_forget_gate_layout():
    assert np.all(init.zeros((3, 2)) == 0) and init.zeros((3, 2)).dtype == np.float32
    assert np.all(init.ones((1, 1, 4)) == 1)
    b = init.unit_forget_gate((12, 1))
    expected = np.zeros((12, 1), np.float32)
    expected[3:6] = 1  # gates i, f, g, o: the forget rows are H..2H-1
    np.testing.assert_array_equal(b, expected)


def test_seeded_generator_reproduces_and_lgc_rng_seeds_the_default():
    a = init.glorot((5, 5), rng=rng(7))
    b = init.glorot((5, 5), rng=rng(7))
    np.testing.assert_array_equal(a, b)
    lgc.rng(3)
    c = init.he((5, 5))
    lgc.rng(3)
    d = init.he((5, 5))
    np.testing.assert_array_equal(c, d)
    assert not np.array_equal(c, init.he((5, 5)))


def test_initialize_by_name_callable_and_errors():
    w = init.initialize("fc1 (Fully Connected)", "WeightsInitializer", "glorot", (4, 3), rng())
    assert w.shape == (4, 3) and w.dtype == np.float32
    seen = []
    v = init.initialize("fc1", "WeightsInitializer",
                        lambda s: seen.append(s) or np.full(s, 2.0), (4, 3))
    assert seen == [(4, 3)] and v.dtype == np.float32 and np.all(v == 2)
    with pytest.raises(ShapeError, match=r"^fc1 \(Fully Connected\): WeightsInitializer must be "
                                         r"one of .*got 'xavier'"):
        init.initialize("fc1 (Fully Connected)", "WeightsInitializer", "xavier", (4, 3))
    with pytest.raises(ShapeError, match=r"^fc1: BiasInitializer function must return an array "
                                         r"of size \(4, 1\), got \(3,\)"):
        init.initialize("fc1", "BiasInitializer", lambda s: np.zeros(3), (4, 1))
    with pytest.raises(ShapeError, match=r"lstm1: BiasInitializer \"unit-forget-gate\": "
                                         r"unit_forget_gate: shape must be \(4H,\)"):
        init.initialize("lstm1", "BiasInitializer", "unit-forget-gate", (9, 1))


def test_bad_arguments_raise_shape_error():
    with pytest.raises(ShapeError, match="glorot: shape"):
        init.glorot((2, -1))
    with pytest.raises(ShapeError, match="he: fanIn must be a positive integer"):
        init.he((2, 2), fanIn=0)
    with pytest.raises(ShapeError, match="orthogonal: shape must have at least 2"):
        init.orthogonal((5,))
