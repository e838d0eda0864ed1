"""dlfeval, dlgradient, trace, grad and value_and_grad (API.md §3)."""

import numpy as np
import pytest

import lgc
from lgc import Table, dlarray, dlfeval, dlgradient, extractdata


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def sq(X):
    return lgc.sum(X * X)


# --- dlfeval ----------------------------------------------------------------------------------


def test_dlfeval_returns_concrete_untraced_dlarrays():
    x = rand(3, 2)
    out = dlfeval(lambda X: (X * 2, {"s": lgc.sum(X)}, [lgc.exp(X)]), dlarray(x, "CB"))
    Y, d, (E,) = out
    for v in (Y, d["s"], E):
        assert isinstance(v, lgc.DLArray) and not v.is_traced
    assert Y.fmt == "CB" and d["s"].shape == ()
    np.testing.assert_allclose(extractdata(Y), 2 * x)
    np.testing.assert_allclose(float(d["s"]), x.sum(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(E), np.exp(x), rtol=1e-6)


def test_dlfeval_args_numpy_numbers_and_nests():
    x, a = rand(3, 2), rand(3, 2, seed=1)
    T = Table(["fc"], ["b"], [dlarray(rand(3, 1, seed=2))])

    def f(X, n, s, nest, T):
        return X * n + s + nest["a"] + nest["l"][0] + nest["t"][1] + T["fc", "b"]

    out = dlfeval(f, dlarray(x, "CB"), 3, 0.5, {"a": a, "l": [a], "t": (1.0, dlarray(a))}, T)
    want = x * 3 + 0.5 + 3 * a + 1 * extractdata(T["fc", "b"])
    assert out.fmt == "CB"
    np.testing.assert_allclose(extractdata(out), want, rtol=1e-5)


def test_dlfeval_passes_non_array_outputs_through():
    out = dlfeval(lambda X: (X, 2.0, "label", np.ones(2)), dlarray(rand(2)))
    assert out[1:3] == (2.0, "label") and isinstance(out[3], np.ndarray)


# --- dlgradient -------------------------------------------------------------------------------


def test_one_x_returns_the_gradient_itself():
    x = rand(3, 4)

    def f(X):
        return dlgradient(sq(X), X)

    g = dlfeval(f, dlarray(x, "CB"))
    assert isinstance(g, lgc.DLArray) and g.fmt == "CB" and g.shape == (3, 4)
    np.testing.assert_allclose(extractdata(g), 2 * x, rtol=1e-6)


def test_several_xs_return_a_tuple():
    a, b = rand(3, 2), rand(3, 2, seed=1)

    def f(A, B):
        y = lgc.sum(A * B + lgc.sin(A))
        return y, dlgradient(y, A, B)

    y, grads = dlfeval(f, dlarray(a, "CB"), dlarray(b, "CB"))
    assert isinstance(grads, tuple) and len(grads) == 2
    np.testing.assert_allclose(extractdata(grads[0]), b + np.cos(a), rtol=1e-5)
    np.testing.assert_allclose(extractdata(grads[1]), a, rtol=1e-6)
    np.testing.assert_allclose(float(y), np.sum(a * b + np.sin(a)), rtol=1e-5)


def test_gradient_has_structure_shape_and_format_of_x():
    w, b = rand(2, 6), rand(2, 1, seed=1)
    x = rand(2, 3, 2, seed=2)  # (S, C, B): 6 features per observation
    params = {"fc": {"W": dlarray(w), "b": dlarray(b)}, "scale": [dlarray(np.float32(2.0))]}

    def f(p, X):
        Y = lgc.fullyconnect(X, p["fc"]["W"], p["fc"]["b"]) * p["scale"][0]
        return dlgradient(sq(Y), p)

    g = dlfeval(f, params, dlarray(x.transpose(2, 0, 1), "BSC"))
    assert set(g) == {"fc", "scale"} and set(g["fc"]) == {"W", "b"} and len(g["scale"]) == 1
    for k in ("W", "b"):
        assert g["fc"][k].shape == params["fc"][k].shape and g["fc"][k].fmt == ""
    # check against the analytic gradient of sum((s (W xf + b))^2)
    xf = x.reshape(6, 2, order="F")
    Y = w @ xf + b
    np.testing.assert_allclose(extractdata(g["fc"]["W"]), 2 * 4 * Y @ xf.T, rtol=1e-4)
    np.testing.assert_allclose(extractdata(g["fc"]["b"]), 2 * 4 * Y.sum(1, keepdims=True),
                               rtol=1e-4)
    np.testing.assert_allclose(float(g["scale"][0]), 2 * 2 * np.sum(Y * Y), rtol=1e-4)


def test_gradient_wrt_table_is_a_table():
    T = Table(["fc", "fc"], ["Weights", "Bias"],
              [dlarray(rand(2, 3)), dlarray(rand(2, 1, seed=1))])
    X = dlarray(rand(3, 4, seed=2), "CB")

    def f(T, X):
        loss = sq(lgc.fullyconnect(X, T["fc", "Weights"], T["fc", "Bias"]))
        return loss, dlgradient(loss, T)

    loss, g = dlfeval(f, T, X)
    assert isinstance(g, Table) and g.Layer == T.Layer and g.Parameter == T.Parameter
    for gv, v in zip(g.Value, T.Value, strict=True):
        assert isinstance(gv, lgc.DLArray) and gv.shape == v.shape and gv.fmt == v.fmt
    Y = extractdata(T.Value[0]) @ extractdata(X) + extractdata(T.Value[1])
    np.testing.assert_allclose(extractdata(g["fc", "Bias"]), 2 * Y.sum(1, keepdims=True),
                               rtol=1e-4)


def test_gradient_of_formatted_x_keeps_format():
    x = rand(2, 3, 4, 5)

    def f(X):
        return dlgradient(lgc.sum(lgc.softmax(X) * X), X)

    g = dlfeval(f, dlarray(x, "BCSS"))
    assert g.fmt == "SSCB" and g.shape == (4, 5, 3, 2)


def test_gradient_wrt_unused_input_is_zeros():
    def f(X, Z):
        return dlgradient(sq(X), Z)

    g = dlfeval(f, dlarray(rand(3), "C"), dlarray(rand(2, 5, seed=1), "CB"))
    assert g.shape == (2, 5) and g.fmt == "CB"
    np.testing.assert_array_equal(extractdata(g), 0)


def test_second_dlgradient_needs_retain_data():
    def bad(X):
        y = sq(X)
        return dlgradient(y, X), dlgradient(y, X)

    with pytest.raises(lgc.TraceError, match="RetainData=True"):
        dlfeval(bad, dlarray(rand(3)))

    def good(X):
        y = sq(X)
        return dlgradient(y, X, RetainData=True), dlgradient(y * 3, X)

    x = rand(3)
    g1, g2 = dlfeval(good, dlarray(x))
    np.testing.assert_allclose(extractdata(g1), 2 * x, rtol=1e-6)
    np.testing.assert_allclose(extractdata(g2), 6 * x, rtol=1e-6)


def test_higher_derivatives():
    x = np.array([1.0, 2.0, -3.0])

    def f(X):
        g = dlgradient(lgc.sum(X ** 3), X, EnableHigherDerivatives=True)
        return g, dlgradient(lgc.sum(g), X)

    g, h = dlfeval(f, dlarray(x))
    np.testing.assert_allclose(extractdata(g), 3 * x ** 2)
    np.testing.assert_allclose(extractdata(h), 6 * x)

    def no_higher(X):
        g = dlgradient(lgc.sum(X ** 3), X, RetainData=True)
        return dlgradient(lgc.sum(g * X), X)  # g is a constant here: d(g·x)/dx = g

    np.testing.assert_allclose(extractdata(dlfeval(no_higher, dlarray(x))), 3 * x ** 2)


def test_dlgradient_outside_dlfeval_is_trace_error():
    X = dlarray(rand(3))
    with pytest.raises(lgc.TraceError, match="inside a function evaluated by dlfeval"):
        dlgradient(sq(X), X)


@pytest.mark.parametrize("body,match", [
    (lambda X, c: dlgradient(X, X), "one-element"),
    (lambda X, c: dlgradient(lgc.sum(c), X), "traced inputs"),
    (lambda X, c: dlgradient(3.0, X), "traced inputs"),
    (lambda X, c: dlgradient(sq(X), c), "not a traced dlarray"),
    (lambda X, c: dlgradient(sq(X)), "at least one x"),
], ids=["non-scalar", "constant-y", "python-y", "untraced-x", "no-x"])
def test_dlgradient_bad_y_or_x_is_trace_error(body, match):
    c = dlarray(rand(3, seed=1))  # a concrete array captured from outside, not an argument
    with pytest.raises(lgc.TraceError, match=match):
        dlfeval(lambda X: body(X, c), dlarray(rand(3)))


def test_dlgradient_integer_y_is_trace_error():
    with pytest.raises(lgc.TraceError, match="real"):
        dlfeval(lambda X, I: dlgradient(I, X), dlarray(rand(2)), dlarray(np.arange(1)))


# --- values of traced arrays ------------------------------------------------------------------


def _branch(X):
    if X.sum() > 0:
        return X
    return -X


@pytest.mark.parametrize("fun,what", [
    (_branch, "branching"), (lambda X: float(X.sum()), "float"),
    (lambda X: np.asarray(X), "NumPy"), (lambda X: extractdata(X), "extractdata"),
    (lambda X: X.sum().item(), "item"), (lambda X: int(X[0]), "int"),
], ids=["if", "float", "asarray", "extractdata", "item", "int"])
def test_needing_a_traced_value_is_trace_error_saying_what_to_do(fun, what):
    with pytest.raises(lgc.TraceError, match=what) as info:
        dlfeval(fun, dlarray(rand(3)))
    assert "lgc.where" in str(info.value) and "dlfeval" in str(info.value)


def test_traced_array_used_after_dlfeval_is_trace_error():
    leaked = []
    dlfeval(lambda X: leaked.append(X * 2) or X, dlarray(rand(2)))
    with pytest.raises(lgc.TraceError, match="after its dlfeval returned"):
        leaked[0] + 1


def test_nested_dlfeval_is_trace_error():
    with pytest.raises(lgc.TraceError, match="nested"):
        dlfeval(lambda X: dlfeval(sq, X), dlarray(rand(2)))


# --- caching ----------------------------------------------------------------------------------


def test_a_tuple_of_dlarrays_keys_the_cache_as_the_general_flattening_does():
    """signature() builds the key of the usual call (a tuple of dlarrays) directly; it must
    be the key the general path gives, or the same call would trace twice."""
    from lgc import tree
    from lgc.ir import trace

    args = (dlarray(rand(3, 2), "CB"), dlarray(rand(4).astype(np.float64)))
    key, arrays = trace.signature(args)
    leaves, struct = tree.flatten(args)
    assert key == (struct, tuple(x._type for _, x in leaves))
    assert all(a is x._data for a, (_, x) in zip(arrays, leaves))
    assert trace.signature((*args, np.zeros(2)))[0][0] == tree.flatten((*args, np.zeros(2)))[1]


def test_dlfeval_traces_once_per_signature():
    calls = []

    def f(X, n):
        calls.append(1)  # a side effect: happens only when f is traced
        y = lgc.sum(X * X) * n
        return y, dlgradient(y, X)

    x = rand(3, 2)
    X = dlarray(x, "CB")
    for k in range(3):
        y, g = dlfeval(f, dlarray(x * (k + 1), "CB"), 2)
        np.testing.assert_allclose(extractdata(g), 4 * x * (k + 1), rtol=1e-6)
    assert len(calls) == 1
    dlfeval(f, X, 2)
    assert len(calls) == 1
    retrace = [dlarray(rand(4, 2), "CB"), dlarray(x.astype(np.float64), "CB"),
               dlarray(x, "SB"), dlarray(x)]
    for k, other in enumerate(retrace):  # shape, dtype, format, no format
        dlfeval(f, other, 2)
        assert len(calls) == 2 + k
    dlfeval(f, X, 3)  # a different static value
    assert len(calls) == 6
    dlfeval(f, X, 3.0)  # same value, other type: may behave differently in Python code
    assert len(calls) == 7
    for other in [X] + retrace:  # all cached now
        dlfeval(f, other, 2)
    assert len(calls) == 7


def test_dlfeval_cache_sees_numpy_and_nest_structure():
    calls = []

    def f(p):
        calls.append(1)
        return lgc.sum(lgc.stripdims(p["a"]) * 2)

    dlfeval(f, {"a": rand(2)})
    dlfeval(f, {"a": rand(2, seed=1)})
    assert len(calls) == 1
    dlfeval(f, {"a": rand(2), "b": rand(1)})  # different structure
    dlfeval(f, {"a": dlarray(rand(2))})  # DLArray instead of ndarray
    assert len(calls) == 3


def test_dlfeval_with_unhashable_static_argument_still_works():
    def f(X, opts):
        return X * opts["k"][0]

    out = dlfeval(f, dlarray(np.ones(2)), {"k": [2.0], "tags": {"a", "b"}})
    np.testing.assert_array_equal(extractdata(out), [2.0, 2.0])


# --- trace ------------------------------------------------------------------------------------


def test_trace_returns_program():
    def modelLoss(W, X):
        loss = sq(lgc.fullyconnect(X, W, None))
        return loss, dlgradient(loss, W)

    prog = lgc.trace(modelLoss, dlarray(rand(2, 3)), dlarray(rand(3, 4, seed=1), "CB"))
    assert isinstance(prog, lgc.Program)
    text = str(prog)
    assert "func @modelLoss" in text and "matmul" in text and "dlgradient" in text
    g = prog.to_networkx()
    assert g.number_of_nodes() >= len(prog.graph.nodes)


# --- grad and value_and_grad ------------------------------------------------------------------


def loss3(W, X, T):
    return lgc.mse(lgc.sigmoid(lgc.fullyconnect(X, W, None)), T)


def test_grad_and_value_and_grad_agree_with_dlfeval():
    W, X = dlarray(rand(2, 3)), dlarray(rand(3, 4, seed=1), "CB")
    T = dlarray(rand(2, 4, seed=2), "CB")

    def ref(W, X, T):
        y = loss3(W, X, T)
        return y, dlgradient(y, W, X)

    y, (gW, gX) = dlfeval(ref, W, X, T)
    g = lgc.grad(loss3)(W, X, T)
    np.testing.assert_allclose(extractdata(g), extractdata(gW), rtol=1e-6)
    v, g = lgc.value_and_grad(loss3)(W, X, T)
    assert float(v) == pytest.approx(float(y), rel=1e-6)
    np.testing.assert_allclose(extractdata(g), extractdata(gW), rtol=1e-6)
    g2 = lgc.grad(loss3, argnums=(0, 1))(W, X, T)
    assert isinstance(g2, tuple) and len(g2) == 2 and g2[1].fmt == "CB"
    np.testing.assert_allclose(extractdata(g2[1]), extractdata(gX), rtol=1e-6)
    v, g2 = lgc.value_and_grad(loss3, argnums=(1,))(W, X, T)
    assert isinstance(g2, tuple) and len(g2) == 1
    np.testing.assert_allclose(extractdata(g2[0]), extractdata(gX), rtol=1e-6)
    g = lgc.grad(loss3, argnums=1)(W, X, T)
    assert isinstance(g, lgc.DLArray)


def test_grad_does_not_retrace():
    calls = []

    def f(W, X):
        calls.append(1)
        return sq(W * X)

    gf, vgf = lgc.grad(f), lgc.value_and_grad(f, argnums=(0, 1))
    for k in range(3):
        w, x = rand(3, seed=k), rand(3, seed=10 + k)
        np.testing.assert_allclose(extractdata(gf(dlarray(w), dlarray(x))), 2 * w * x * x,
                                   rtol=1e-5)
        v, (gw, gx) = vgf(dlarray(w), dlarray(x))
        np.testing.assert_allclose(extractdata(gx), 2 * w * w * x, rtol=1e-5)
    assert len(calls) == 2  # once for grad, once for value_and_grad


def test_grad_of_nest_argument():
    p = {"a": dlarray(rand(2)), "b": [dlarray(rand(2, seed=1))]}
    g = lgc.grad(lambda p: lgc.sum(p["a"] * p["b"][0]))(p)
    np.testing.assert_allclose(extractdata(g["a"]), extractdata(p["b"][0]))
    np.testing.assert_allclose(extractdata(g["b"][0]), extractdata(p["a"]))


def test_grad_bad_argnums_is_error():
    with pytest.raises(lgc.LgcError, match="argnums"):
        lgc.grad(sq, argnums=2)(dlarray(rand(2)))


def test_numpy_operands_on_either_side_inside_dlfeval():
    x, b = rand(3, 2), rand(3, 1, seed=1)

    def f(X):
        return b + X, b * X - X, np.exp(X), np.maximum(X, b)

    outs = dlfeval(f, dlarray(x, "CB"))
    wants = (b + x, b * x - x, np.exp(x), np.maximum(x, b))
    for got, want in zip(outs, wants, strict=True):
        assert isinstance(got, lgc.DLArray) and got.fmt == "CB"
        np.testing.assert_allclose(extractdata(got), want, rtol=1e-6)
