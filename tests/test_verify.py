"""The IR verifier: each rule is triggered by a hand-made malformed graph, the message names
the node, its op and its provenance, and well-formed graphs (one-op graphs of every sample,
traced programs with their gradients) pass."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from conftest import emit_inputs, op_samples, registry_params, vjp_case
from lgc.errors import LgcError
from lgc.ir import VerifyError, verify
from lgc.ir.core import Builder, Graph, Value
from lgc.ir.types import TensorType


def small_graph():
    """x -> tanh (from fc1) -> reduce_sum (from loss); returns the builder and both nodes."""
    b = Builder(Graph("small"))
    x = b.input(TensorType("f64", (3, 4), "CB"), "x")
    with b.provenance("fc1"):
        t = b.emit_node("tanh", x)
    with b.provenance("loss"):
        s = b.emit_node("reduce_sum", t.out, axes=(0, 1))
    b.graph.outputs = [s.out]
    return b, t, s


def raises(g, *fragments):
    with pytest.raises(VerifyError) as info:
        verify(g)
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def test_verify_error_is_an_lgc_error():
    assert issubclass(VerifyError, LgcError)


def test_well_formed_graph_passes():
    b, _, _ = small_graph()
    verify(b.graph)


def test_use_before_definition():
    b, t, s = small_graph()
    b.graph.nodes = [s, t]
    raises(b.graph, "node 0", "reduce_sum", "from loss", "used before its definition at node 1")


def test_value_not_defined_in_graph():
    b, _, s = small_graph()
    stranger = Value(TensorType("f64", (3, 4), "CB"), name="ghost")
    s.inputs = (stranger,)
    raises(b.graph, "node 1", "reduce_sum", "from loss", "%ghost", "not defined in the graph")


def test_value_defined_twice():
    b, t, s = small_graph()
    b.graph.nodes = [t, t, s]
    raises(b.graph, "node 1", "tanh", "from fc1", "defined twice", "output 0 of node 0")


def test_graph_input_listed_twice():
    b, _, _ = small_graph()
    b.graph.inputs.append(b.graph.inputs[0])
    raises(b.graph, "graph input 1", "%x", "defined twice")


def test_graph_inputs_with_the_same_name():
    b, _, _ = small_graph()
    b.input(TensorType("f64", (2,)), "x")
    raises(b.graph, "graph input 1", "%x", "unique")


def test_recorded_type_differs_from_infer():
    b, t, _ = small_graph()
    t.outputs[0].type = TensorType("f32", (3, 4), "CB")
    raises(b.graph, "node 0", "tanh", "from fc1", "f32[3,4]{CB}", "f64[3,4]{CB}")


def test_recorded_shape_differs_from_infer():
    b, _, s = small_graph()
    s.outputs[0].type = TensorType("f64", (1, 1))
    raises(b.graph, "node 1", "reduce_sum", "from loss", "f64[1,1]", "f64[]")


def test_infer_rejects_the_inputs():
    b, _, s = small_graph()
    s.attrs["axes"] = (0, 5)
    raises(b.graph, "node 1", "reduce_sum", "from loss", "rejects its inputs", "axis 5")


def test_missing_attribute():
    b, _, s = small_graph()
    del s.attrs["keepdims"]
    raises(b.graph, "node 1", "reduce_sum", "from loss", "missing ['keepdims']")


def test_unknown_attribute():
    b, t, _ = small_graph()
    t.attrs["alpha"] = 2.0
    raises(b.graph, "node 0", "tanh", "from fc1", "unknown ['alpha']")


def test_attribute_not_in_normal_form():
    b, _, s = small_graph()
    s.attrs["axes"] = [1, 0]
    raises(b.graph, "node 1", "reduce_sum", "from loss", "normal form", "axes")


def test_output_not_defined():
    b, _, _ = small_graph()
    other = Builder(Graph("other"))
    y = other.input(TensorType("f64", (2,)), "y")
    with other.provenance("relu1"):
        z = other.emit("relu", y)
    b.graph.outputs.append(z)
    raises(b.graph, "output 1", "not defined in the graph", "relu", "relu1")


def test_node_without_provenance_says_so():
    b = Builder(Graph("noprov"))
    x = b.input(TensorType("f64", (2,)), "x")
    n = b.emit_node("exp", x)
    n.outputs[0].type = TensorType("f64", (3,))
    b.graph.outputs = [n.out]
    raises(b.graph, "node 0", "exp", "no provenance")


@pytest.mark.parametrize("op", registry_params(lambda op: op.differentiable))
def test_gradient_graphs_of_every_op_verify(op):
    rng = np.random.default_rng(0)
    for s in op_samples(op):
        verify(vjp_case(op, s, rng, second_order=op.second_order).grad)


def test_one_op_graphs_of_every_sample_verify():
    from lgc.ops import REGISTRY

    for op in REGISTRY.values():
        for s in op_samples(op):
            b = Builder(Graph(op.name))
            xs = emit_inputs(b, s.args)
            b.graph.outputs = list(b.emit_node(op.name, *xs, **s.attrs).outputs)
            verify(b.graph)


def _mlp_loss(W1, b1, W2, b2, X, T):
    h = lgc.tanh(lgc.fullyconnect(X, W1, b1))
    y = lgc.softmax(lgc.fullyconnect(h, W2, b2))
    loss = lgc.crossentropy(y, T)
    return loss, lgc.dlgradient(loss, W1, b1, W2, b2)


def mlp_args(rng, dtype=np.float64):
    X = lgc.dlarray(rng.normal(size=(4, 5)).astype(dtype), "CB")
    T = np.eye(3, 5, dtype=dtype)
    return (rng.normal(size=(6, 4)).astype(dtype), np.zeros((6, 1), dtype),
            rng.normal(size=(3, 6)).astype(dtype), rng.normal(size=(3, 1)).astype(dtype), X, T)


def test_traced_program_with_gradient_verifies():
    program = lgc.trace(_mlp_loss, *mlp_args(np.random.default_rng(0)))
    verify(program.graph)
    assert any(n.prov.startswith("vjp(") for n in program.graph.nodes)
