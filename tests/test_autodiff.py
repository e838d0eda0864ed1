"""Reverse mode end to end, in float64 against finite differences: an MLP's gradient through
dlfeval/dlgradient, second derivatives (gradient penalty, Hessian-vector product) through
EnableHigherDerivatives, `grad_graph`, and the zero / constant-gradient rules."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from conftest import fd_gradient
from lgc.autodiff import backward, grad_graph
from lgc.backend.reference import run_graph
from lgc.ir import verify
from lgc.ir.core import Builder, Graph
from lgc.ir.types import TensorType

EPS = 1e-6


def data(rng):
    return lgc.dlarray(rng.normal(size=(4, 5)), "CB"), np.eye(3, 5)


def params(rng):
    return {"W1": rng.normal(size=(6, 4)) * 0.5, "b1": rng.normal(size=(6, 1)) * 0.1,
            "W2": rng.normal(size=(3, 6)) * 0.5, "b2": rng.normal(size=(3,)) * 0.1}


def mlp(p, X):
    h = lgc.tanh(lgc.fullyconnect(X, p["W1"], p["b1"]))
    return lgc.softmax(lgc.fullyconnect(h, p["W2"], p["b2"]))


def mlp_loss(p, X, T):
    return lgc.crossentropy(mlp(p, X), T)


def mlp_loss_and_grad(p, X, T):
    loss = mlp_loss(p, X, T)
    return loss, lgc.dlgradient(loss, p)


def flat(p: dict) -> list[np.ndarray]:
    return [np.asarray(p[k], dtype=np.float64) for k in sorted(p)]


def unflat(arrays, like: dict) -> dict:
    return dict(zip(sorted(like), arrays))


def as_np(x) -> np.ndarray:
    return np.asarray(lgc.extractdata(x) if isinstance(x, lgc.DLArray) else x)


def test_mlp_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    p, (X, T) = params(rng), data(rng)
    loss, g = lgc.dlfeval(mlp_loss_and_grad, p, X, T)
    assert as_np(loss).dtype == np.float64
    f = lambda arrays: float(as_np(lgc.dlfeval(mlp_loss, unflat(arrays, p), X, T)))  # noqa: E731
    keys = sorted(p)
    fd = fd_gradient(f, flat(p), range(len(keys)))
    for k, expect in zip(keys, fd):
        assert g[k].shape == p[k].shape, k
        np.testing.assert_allclose(as_np(g[k]), expect, rtol=1e-6, atol=1e-8, err_msg=k)


def penalty(W1, W2, x):
    """d/dW1 of ||d loss/dx||^2 (a gradient penalty)."""
    loss = lgc.sum(lgc.sigmoid(lgc.matmul(W2, lgc.tanh(lgc.matmul(W1, x)))))
    gx = lgc.dlgradient(loss, x, EnableHigherDerivatives=True, RetainData=True)
    p = lgc.sum(gx * gx)
    return p, lgc.dlgradient(p, W1)


def test_gradient_penalty_matches_finite_differences():
    rng = np.random.default_rng(1)
    W1, W2, x = rng.normal(size=(4, 3)), rng.normal(size=(2, 4)), rng.normal(size=(3, 2))
    p, gw = lgc.dlfeval(penalty, W1, W2, x)
    f = lambda a: float(as_np(lgc.dlfeval(penalty, a[0], W2, x)[0]))  # noqa: E731
    (fd,) = fd_gradient(f, [W1], [0])
    assert np.abs(fd).max() > 1e-3  # the penalty really depends on W1
    np.testing.assert_allclose(as_np(gw), fd, rtol=1e-6, atol=1e-8)


def hvp(p, X, T, v, higher=True):
    """(grad, H v) of the MLP loss with respect to W1."""
    loss = mlp_loss(p, X, T)
    g = lgc.dlgradient(loss, p["W1"], EnableHigherDerivatives=higher, RetainData=True)
    return g, lgc.dlgradient(lgc.sum(g * v), p["W1"])


def test_hessian_vector_product_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(2)
    p, (X, T) = params(rng), data(rng)
    v = rng.normal(size=p["W1"].shape)
    _, hv = lgc.dlfeval(hvp, p, X, T, v)
    plus, minus = dict(p), dict(p)
    plus["W1"], minus["W1"] = p["W1"] + EPS * v, p["W1"] - EPS * v
    gp = as_np(lgc.dlfeval(hvp, plus, X, T, v)[0])
    gm = as_np(lgc.dlfeval(hvp, minus, X, T, v)[0])
    expect = (gp - gm) / (2 * EPS)
    assert np.abs(expect).max() > 1e-3
    np.testing.assert_allclose(as_np(hv), expect, rtol=1e-5, atol=1e-8)


def test_gradients_without_higher_derivatives_are_constants():
    rng = np.random.default_rng(3)
    p, (X, T) = params(rng), data(rng)
    v = rng.normal(size=p["W1"].shape)
    g, hv = lgc.dlfeval(hvp, p, X, T, v, False)
    np.testing.assert_array_equal(as_np(hv), np.zeros_like(v))
    # the same program with higher derivatives has a nonzero second derivative
    g2, hv2 = lgc.dlfeval(hvp, p, X, T, v, True)
    np.testing.assert_allclose(as_np(g), as_np(g2), rtol=1e-12)
    assert np.abs(as_np(hv2)).max() > 1e-3

    def through_constant(p, X, T):
        g = lgc.dlgradient(mlp_loss(p, X, T), p["W1"], RetainData=True)
        # d/dW1 <g, W1> with g constant is g itself
        return g, lgc.dlgradient(lgc.sum(g * p["W1"]), p["W1"])

    g, d = lgc.dlfeval(through_constant, p, X, T)
    np.testing.assert_allclose(as_np(d), as_np(g), rtol=1e-12)


def test_gradient_wrt_unused_input_is_zeros():
    rng = np.random.default_rng(4)
    p, (X, T) = params(rng), data(rng)
    unused = lgc.dlarray(rng.normal(size=(2, 3)), "CB")

    def fn(p, X, T, unused):
        return lgc.dlgradient(mlp_loss(p, X, T), p["W2"], unused)

    g_w2, g_unused = lgc.dlfeval(fn, p, X, T, unused)
    assert g_unused.fmt == "CB" and g_unused.shape == (2, 3)
    np.testing.assert_array_equal(as_np(g_unused), np.zeros((2, 3)))
    assert np.abs(as_np(g_w2)).max() > 0


def test_backward_wrt_independent_value_emits_zeros():
    b = Builder(Graph("indep"))
    x = b.input(TensorType("f64", (3,)), "x")
    z = b.input(TensorType("f64", (2, 2), "CB"), "z")
    y = b.emit("reduce_sum", b.emit("exp", x), axes=(0,))
    gx, gz = backward(b, y, [x, z])
    b.graph.outputs = [gx, gz]
    verify(b.graph)
    rx, rz = run_graph(b.graph, [np.array([0.0, 1.0, 2.0]), np.ones((2, 2))])
    np.testing.assert_allclose(rx, np.exp([0.0, 1.0, 2.0]))
    assert gz.fmt == "CB"
    np.testing.assert_array_equal(rz, np.zeros((2, 2)))


def test_grad_graph_prints_and_runs():
    b = Builder(Graph("layer"))
    w = b.input(TensorType("f64", (3, 4)), "fc1/Weights")
    x = b.input(TensorType("f64", (4, 2)), "x")
    with b.provenance("fc1"):
        h = b.emit("tanh", b.emit("matmul", w, x))
    with b.provenance("loss"):
        y = b.emit("reduce_sum", b.mul(h, h), axes=(0, 1))
    b.graph.outputs = [y]
    gg = grad_graph(b.graph, wrt=[0, 1])
    verify(gg)
    text = str(gg)
    assert text.startswith("func @grad_layer(%fc1/Weights: f64[3,4], %x: f64[4,2])")
    assert "-> (f64[], f64[3,4], f64[4,2])" in text and "# vjp(fc1)" in text
    rng = np.random.default_rng(5)
    args = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    val, gw, gx = run_graph(gg, args)
    f = lambda a: float(run_graph(b.graph, a)[0])  # noqa: E731
    assert float(val) == pytest.approx(f(args))
    for g, fd in zip([gw, gx], fd_gradient(f, args, [0, 1])):
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # the forward graph is untouched
    assert len(b.graph.outputs) == 1 and str(b.graph).count("vjp") == 0
