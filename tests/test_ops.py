"""Registry-driven op tests: every registered op's VJP against finite differences (first and
second order), `infer` against `ref`, docstrings and samples; plus the hand-pinned kinks and
ties (relu at 0, abs at 0, max ties) that random samples never hit."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from conftest import (
    cast_floats,
    check_gradient,
    emit_inputs,
    fd_directional,
    op_rng,
    op_samples,
    perturbed,
    registry_params,
    vjp_case,
)
from lgc.autodiff import backward
from lgc.backend.reference import run_graph
from lgc.dlarray import apply
from lgc.ir import verify
from lgc.ir.core import Builder, Graph
from lgc.ir.types import TensorType, dtype_name, np_dtype
from lgc.ops import REGISTRY, Sample

DIFFERENTIABLE = registry_params(lambda op: op.differentiable)


# --- the registry is complete -----------------------------------------------------------------


@pytest.mark.parametrize("op", registry_params())
def test_op_has_math_docstring(op):
    doc = type(op).__doc__
    assert doc and doc.strip(), f"op {op.name} ({type(op).__name__}) has no docstring"
    first = doc.strip().splitlines()[0]
    assert len(first) <= 100, f"op {op.name}: the first docstring line should be the math"


@pytest.mark.parametrize("op", DIFFERENTIABLE)
def test_differentiable_op_has_samples(op):
    assert op_samples(op), (f"op {op.name} is differentiable but has no samples(); add inputs "
                            f"in its smooth domain so its VJP is checked")


# --- infer agrees with ref --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("op", registry_params())
def test_ref_matches_infer(op, dtype):
    for k, s in enumerate(op_samples(op)):
        args = cast_floats(s.args, dtype)
        attrs = op.normalize_attrs(dict(s.attrs))
        in_types = [TensorType(dtype_name(a.dtype), a.shape) for a in args]
        types = op.infer(in_types, **attrs)
        res = op.ref(*args, **attrs)
        res = res if isinstance(res, tuple) else (res,)
        assert len(res) == len(types), f"{op.name} sample {k}: ref gives {len(res)} outputs, " \
                                       f"infer {len(types)}"
        for j, (r, t) in enumerate(zip(res, types)):
            r = np.asarray(r)
            assert r.shape == t.shape and r.dtype == np_dtype(t.dtype), (
                f"{op.name} sample {k} output {j} in {dtype}: ref gives {r.dtype}{r.shape}, "
                f"infer {t}")


@pytest.mark.parametrize("op", registry_params(lambda op: op.pure))
def test_ref_matches_eager(op):
    """Eager `apply` on concrete dlarrays and the traced program run by dlfeval agree in value,
    dtype, shape and format, for every sample in float32 and float64."""
    for dtype in ("f32", "f64"):
        for k, s in enumerate(op_samples(op)):
            args = cast_floats(s.args, dtype)
            eager = apply(op.name, *(lgc.dlarray(a) for a in args), **s.attrs)
            eager = eager if isinstance(eager, tuple) else (eager,)
            traced = lgc.dlfeval(lambda *xs, attrs=s.attrs: apply(op.name, *xs, **attrs), *args)
            traced = traced if isinstance(traced, tuple) else (traced,)
            assert len(eager) == len(traced), f"{op.name} sample {k}"
            for j, (e, t) in enumerate(zip(eager, traced)):
                what = f"{op.name} sample {k} output {j} in {dtype}"
                assert (e.dtype, e.shape, e.fmt) == (t.dtype, t.shape, t.fmt), what
                tol = 1e-5 if dtype == "f32" else 1e-12
                np.testing.assert_allclose(np.asarray(t), np.asarray(e), rtol=tol, atol=tol,
                                           err_msg=what)


# --- VJPs against finite differences ----------------------------------------------------------


@pytest.mark.parametrize("op", DIFFERENTIABLE)
def test_vjp_matches_finite_differences(op):
    rng = op_rng(op.name, 1)
    for k, s in enumerate(op_samples(op)):
        case = vjp_case(op, s, rng)
        verify(case.grad)
        _, *grads = case.run()
        for i, g in zip(case.diff, grads):
            assert g.shape == case.args[i].shape, f"{op.name}: gradient {i} has shape {g.shape}"
        check_gradient(case.f, case.args, case.diff, grads, rng, f"{op.name} sample {k}")


@pytest.mark.parametrize("op", DIFFERENTIABLE)
def test_vjp_is_differentiable_again(op):
    """The VJP graph is itself differentiated: the Hessian-vector product of f = <op(x), u>
    matches central differences of the first gradient along v."""
    if not op.second_order:
        pytest.skip(f"{op.name} declares second_order = False (kinked)")
    rng = op_rng(op.name, 2)
    eps = 1e-5
    for k, s in enumerate(op_samples(op)):
        case = vjp_case(op, s, rng, second_order=True)
        verify(case.grad)
        n = len(case.diff)
        hvp = case.run()[1 + n:]
        plus = case.run(perturbed(case.args, case.diff, case.vs, eps))[1:1 + n]
        minus = case.run(perturbed(case.args, case.diff, case.vs, -eps))[1:1 + n]
        for i, h, p, m in zip(case.diff, hvp, plus, minus):
            np.testing.assert_allclose(h, (p - m) / (2 * eps), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{op.name} sample {k}: Hv for input {i}")


def test_vjp_with_cotangent_input_matches_scalar_objective():
    """backward(b, y, xs, ct_y) with a cotangent input is J^T ct, the same as the gradient of
    <y, ct>; checked with the dot-product test on a non-scalar output."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(4, 5))
    b = Builder(Graph("ct"))
    xv, wv = emit_inputs(b, [x, w])
    y = b.emit("tanh", b.emit("matmul", xv, wv))
    ct = b.input(TensorType("f64", y.shape), "ct")
    b.graph.outputs = [y, *backward(b, y, [xv, wv], ct)]
    u = rng.normal(size=y.shape)
    _, gx, gw = run_graph(b.graph, [x, w, u])
    t = [rng.normal(size=x.shape), rng.normal(size=w.shape)]
    f = lambda a: float(np.sum(run_graph(b.graph, [*a, u])[0] * u))  # noqa: E731
    lhs = fd_directional(f, [x, w], [0, 1], t)
    np.testing.assert_allclose(np.sum(t[0] * gx) + np.sum(t[1] * gw), lhs, rtol=1e-6)


# --- kinks and ties, pinned by hand ---------------------------------------------------------


def _grads(op_name: str, *args, **attrs) -> list[np.ndarray]:
    """Gradient of sum(op(args)) with respect to every argument, in float64."""
    args = [np.asarray(a, dtype=np.float64) for a in args]
    b = Builder(Graph(op_name))
    xs = emit_inputs(b, args)
    y = b.emit(op_name, *xs, **attrs)
    s = b.emit("reduce_sum", y, axes=tuple(range(len(y.shape))))
    b.graph.outputs = backward(b, s, xs)
    return run_graph(b.graph, args)


def test_relu_derivative_at_zero_is_zero():
    (g,) = _grads("relu", [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 1.0])


def test_leakyrelu_derivative_at_zero_is_the_scale():
    # the rule is where(x > 0, 1, scale): exactly 0 takes the negative branch
    (g,) = _grads("leakyrelu", [-1.0, 0.0, 2.0], scale=0.2)
    np.testing.assert_allclose(g, [0.2, 0.2, 1.0])


def test_abs_derivative_at_zero_is_zero():
    (g,) = _grads("abs", [-3.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("op_name", ["maximum", "minimum"])
def test_maximum_minimum_ties_split_the_cotangent(op_name):
    gx, gy = _grads(op_name, [1.0, 2.0, 3.0], [1.0, 5.0, 0.0])
    big = op_name == "maximum"
    np.testing.assert_array_equal(gx, [0.5, 0.0 if big else 1.0, 1.0 if big else 0.0])
    np.testing.assert_array_equal(gy, [0.5, 1.0 if big else 0.0, 0.0 if big else 1.0])


@pytest.mark.parametrize("op_name", ["reduce_max", "reduce_min"])
def test_reduce_extrema_ties_share_equally(op_name):
    sign = 1.0 if op_name == "reduce_max" else -1.0
    x = sign * np.array([[3.0, 1.0, 3.0, 3.0], [0.0, 2.0, 1.0, -1.0]])
    (g,) = _grads(op_name, x, axes=(1,))
    np.testing.assert_allclose(g, [[1 / 3, 0, 1 / 3, 1 / 3], [0, 1, 0, 0]])
    (g,) = _grads(op_name, x, axes=(0, 1))
    np.testing.assert_allclose(g, [[1 / 3, 0, 1 / 3, 1 / 3], [0, 0, 0, 0]])


def test_sign_has_no_gradient():
    assert not REGISTRY["sign"].differentiable
    (g,) = _grads("sign", [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.0])


def test_large_inputs_use_the_dot_product_check():
    """Above DENSE_MAX elements the gradient is checked along random directions; the check
    passes on a correct VJP and catches a slightly wrong one."""
    from conftest import DENSE_MAX

    rng = np.random.default_rng(7)
    s = Sample([rng.normal(size=(12, 20)), rng.normal(size=(20, 3))])
    assert sum(a.size for a in s.args) > DENSE_MAX
    case = vjp_case(REGISTRY["matmul"], s, rng)
    _, *grads = case.run()
    check_gradient(case.f, case.args, case.diff, grads, rng, "matmul large")
    wrong = [grads[0] * (1 + 1e-3), grads[1]]
    with pytest.raises(AssertionError, match="directional derivative"):
        check_gradient(case.f, case.args, case.diff, wrong, rng, "matmul large")
