"""The optimization passes: each keeps the program's results and does its one job."""

import numpy as np
import pytest

import lgc
from lgc.backend.reference import run_graph
from lgc.ir.core import Builder
from lgc.ir.types import TensorType
from lgc.passes import (
    PIPELINE,
    eliminate_common_subexpressions,
    eliminate_dead_code,
    fold_constants,
    optimize,
    simplify,
)


def _mlp_program():
    rng = np.random.default_rng(0)
    w1 = lgc.dlarray(rng.normal(size=(6, 4)))
    w2 = lgc.dlarray(rng.normal(size=(3, 6)))
    x = lgc.dlarray(rng.normal(size=(4, 5)), "CB")
    t = lgc.dlarray(lgc.onehotencode(np.array([0, 1, 2, 1, 0]), 0), "CB")

    def loss(w1, w2, x, t):
        y = lgc.softmax(lgc.fullyconnect(lgc.tanh(lgc.fullyconnect(x, w1)), w2))
        val = lgc.crossentropy(y, t) + 0.1 * lgc.mse(y, t)
        return val, lgc.dlgradient(val, w1, w2)

    program = lgc.trace(loss, w1, w2, x, t)
    return program, [np.asarray(a) for a in (w1, w2, x, t)]


def _ops(g):
    return [n.op.name for n in g.nodes]


@pytest.mark.parametrize("p", sorted(set(PIPELINE), key=lambda f: f.__name__),
                         ids=lambda f: f.__name__)
def test_pass_keeps_results(p):
    program, args = _mlp_program()
    before = run_graph(program.graph, args)
    after = run_graph(p(program.graph), args)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_pipeline_shrinks_traced_gradient():
    program, args = _mlp_program()
    g = optimize(program.graph)
    assert len(g.nodes) < len(program.graph.nodes)
    for a, b in zip(run_graph(program.graph, args), run_graph(g, args)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def _graph(*types):
    b = Builder()
    return b, [b.input(TensorType(*t), f"x{i}") for i, t in enumerate(types)]


def test_dce_drops_unused_and_keeps_used():
    b, (x,) = _graph(("f64", (3,)))
    used = b.emit("exp", x)
    b.emit("log", x)
    b.graph.outputs = [used]
    assert _ops(eliminate_dead_code(b.graph)) == ["exp"]


def test_cse_merges_equal_nodes_but_not_random_ones():
    b, (x,) = _graph(("f64", (3,)))
    a1, a2 = b.emit("exp", x), b.emit("exp", x)
    r1 = b.emit("random_uniform", dtype="f64", shape=(3,))
    r2 = b.emit("random_uniform", dtype="f64", shape=(3,))
    b.graph.outputs = [b.emit("add", a1, a2), b.emit("sub", r1, r2)]
    g = eliminate_dead_code(eliminate_common_subexpressions(b.graph))
    assert _ops(g).count("exp") == 1
    assert _ops(g).count("random_uniform") == 2


def test_cse_distinguishes_attributes():
    b, (x,) = _graph(("f64", (3, 4)))
    s0 = b.emit("reduce_sum", x, axes=(0,), keepdims=True)
    s1 = b.emit("reduce_sum", x, axes=(1,), keepdims=True)
    b.graph.outputs = [s0, s1]
    assert len(eliminate_common_subexpressions(b.graph).nodes) == 2


def test_fold_evaluates_constant_subgraphs():
    b, (x,) = _graph(("f64", (2,)))
    c = b.emit("exp", b.const(np.array([0.0, 1.0]), "f64"))
    b.graph.outputs = [b.emit("mul", x, c)]
    g = eliminate_dead_code(fold_constants(b.graph))
    assert _ops(g) == ["constant", "mul"]
    np.testing.assert_allclose(run_graph(g, [np.ones(2)])[0], [1.0, np.e])


def test_fold_does_not_materialize_broadcasts():
    b, (x,) = _graph(("f64", (50, 50)))
    big = b.emit("broadcast_to", b.const(2.0, "f64"), shape=(50, 50))
    b.graph.outputs = [b.emit("mul", x, big)]
    assert "broadcast_to" in _ops(fold_constants(b.graph))


@pytest.mark.parametrize("op, const, keep", [("add", 0.0, True), ("sub", 0.0, True),
                                             ("mul", 1.0, True), ("div", 1.0, True),
                                             ("mul", 2.0, False), ("add", 1.0, False)])
def test_simplify_identities(op, const, keep):
    b, (x,) = _graph(("f64", (3,)))
    b.graph.outputs = [b.emit(op, x, b.const(const, "f64"))]
    g = eliminate_dead_code(simplify(b.graph))
    assert (g.outputs[0] is x) == keep


def test_simplify_keeps_broadcasting_identity():
    # x + zeros(3, 3) broadcasts x: the result is not x
    b, (x,) = _graph(("f64", (3,)))
    b.graph.outputs = [b.emit("add", x, b.const(np.zeros((3, 3)), "f64"))]
    assert simplify(b.graph).outputs[0] is not x


def test_simplify_collapses_shape_chains():
    b, (x,) = _graph(("f64", (2, 6)))
    r = b.emit("reshape", b.emit("reshape", x, shape=(3, 4)), shape=(12,))
    t = b.emit("transpose", r, perm=(0,))
    lab = b.emit("relabel", b.emit("relabel", b.emit("neg", b.emit("neg", x)), fmt="CB"), fmt="")
    b.graph.outputs = [t, lab]
    g = eliminate_dead_code(simplify(b.graph))
    assert _ops(g) == ["reshape"]
    assert g.outputs[1] is x


def test_sums_of_products_become_one_gemm_and_recurrences_make_their_weight_gradients():
    b = Builder()
    a = [b.input(TensorType("f64", (4, 3)), f"a{k}") for k in range(3)]
    x = [b.input(TensorType("f64", (3, 5)), f"x{k}") for k in range(3)]
    total = b.emit("add", b.emit("add", b.emit("matmul", a[0], x[0]), b.emit("matmul", a[1], x[1])),
                   b.emit("matmul", a[2], x[2]))
    b.graph.outputs = [total]
    opt = optimize(b.graph)
    assert [n.op.name for n in opt.nodes].count("matmul") == 1
    assert "add" not in [n.op.name for n in opt.nodes]
    rng = np.random.default_rng(0)
    args = [rng.normal(size=(4, 3)) for _ in range(3)] + [rng.normal(size=(3, 5)) for _ in range(3)]
    np.testing.assert_allclose(run_graph(opt, args)[0], run_graph(b.graph, args)[0], rtol=1e-12)

    # an LSTM's weight gradients: computed by the backward recurrence itself over all 6
    # steps (no product per step, none left for the graph to do)
    h, n, t = 4, 3, 6
    xs = lgc.dlarray(rng.normal(size=(2, n, t)), "CBT")
    w, r, bias = rng.normal(size=(4 * h, 2)), rng.normal(size=(4 * h, h)), np.zeros((4 * h, 1))

    def loss(w, r):
        _, hs, _ = lgc.lstm(xs, np.zeros(h), np.zeros(h), w, r, bias)
        return lgc.sum(hs * hs, "all")

    low = lgc.compile(lambda w, r: lgc.dlgradient(loss(w, r), w, r),
                      backend="numba").lower(lgc.dlarray(w), lgc.dlarray(r))
    shapes = [n_.outputs[0].shape for n_ in low.optimized.nodes if n_.op.name == "matmul"]
    assert (4 * h, h) not in shapes and (4 * h, 2) not in shapes
    (back,) = [n_ for n_ in low.optimized.nodes if n_.op.name == "lstm_seq_backward"]
    assert {(4 * h, h), (4 * h, 2)} <= {o.shape for o in back.outputs}  # dR and dW
    grad = lambda w, r: lgc.dlgradient(loss(w, r), w, r)  # noqa: E731
    got = lgc.compile(grad, backend="numba")(lgc.dlarray(w), lgc.dlarray(r))
    want = lgc.compile(grad, backend="reference")(lgc.dlarray(w), lgc.dlarray(r))
    for u, v in zip(got, want):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("input_gradient", [False, True])
def test_dce_lets_a_node_compute_less_when_an_output_is_unread(input_gradient):
    """OpDef.prune: an LSTM's backward kernel writes dZ (4H x T·N) only when something reads it
    (the input's gradient W^T·dZ); without a reader dZ becomes (4H, 0) (and dh0, dc0 (H, 0):
    constant initial states), and the gradients the graph does read are unchanged."""
    rng = np.random.default_rng(3)
    h, n, t = 4, 3, 5
    x = rng.normal(size=(2, n, t))
    w, r, bias = rng.normal(size=(4 * h, 2)), rng.normal(size=(4 * h, h)), np.zeros((4 * h, 1))

    def grad(x, w, r):
        _, hs, _ = lgc.lstm(x, np.zeros(h), np.zeros(h), w, r, bias)
        loss = lgc.sum(hs * hs, "all")
        return lgc.dlgradient(loss, x, w, r) if input_gradient else lgc.dlgradient(loss, w, r)

    args = lgc.dlarray(x, "CBT"), lgc.dlarray(w), lgc.dlarray(r)
    low = lgc.compile(grad, backend="numba").lower(*args)
    (back,) = [m for m in low.optimized.nodes if m.op.name == "lstm_seq_backward"]
    assert back.attrs["has_dz"] == input_gradient
    assert not back.attrs["has_d0"]  # the initial states are constants: no dh0, dc0
    assert back.outputs[0].shape == ((4 * h, n * t) if input_gradient else (4 * h, 0))
    got = lgc.compile(grad, backend="numba")(*args)
    want = lgc.compile(grad, backend="reference")(*args)
    for u, v in zip(got, want):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-9, atol=1e-12)
    again = eliminate_dead_code(low.optimized)  # pruned already: nothing changes
    assert again.nodes == low.optimized.nodes
