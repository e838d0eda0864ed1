"""IR text round trips: `parse_graph(str(g))` prints the same text and computes the same numbers,
on seeded random graphs, one-op graphs of every op sample, constants (non-finite ones too),
multi-output nodes and a traced MLP loss with its gradient; malformed text raises ParseError."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import lgc
from conftest import emit_inputs, op_samples, registry_params
from lgc.backend.reference import run_graph
from lgc.errors import LgcError
from lgc.ir import verify
from lgc.ir.core import Builder, Graph, Value
from lgc.ir.text import ParseError, parse_graph
from lgc.ir.trace import signature
from lgc.ir.types import TensorType, np_dtype
from lgc.ops import REGISTRY, OpDef, Sample


def assert_round_trip(g: Graph, inputs: list[np.ndarray]) -> Graph:
    text = str(g)
    g2 = parse_graph(text)
    assert str(g2) == text
    verify(g2)
    assert [n.prov for n in g2.nodes] == [n.prov for n in g.nodes]
    for r1, r2 in zip(run_graph(g, inputs), run_graph(g2, inputs), strict=True):
        assert r1.dtype == r2.dtype and r1.shape == r2.shape
        np.testing.assert_array_equal(r1, r2)
    return g2


# --- seeded random graphs ---------------------------------------------------------------------


class RandomGraph:
    """A random chain of elementwise, reduce, shape and matmul ops over one input, with
    random attributes, constants, extra inputs and provenance."""

    UNARY = ["tanh", "sin", "cos", "neg", "sigmoid", "relu", "abs", "exp", "sign"]
    BINARY = ["add", "sub", "mul", "maximum", "minimum"]

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.b = Builder(Graph(f"random{seed}"))
        self.arrays: list[np.ndarray] = []

    def input(self, dtype: str, shape, fmt: str = "") -> Value:
        self.arrays.append(self.rng.normal(size=shape).astype(np_dtype(dtype)))
        return self.b.input(TensorType(dtype, tuple(shape), fmt), f"in{len(self.arrays)}/x")

    def shape(self, rank: int) -> tuple[int, ...]:
        return tuple(int(s) for s in self.rng.integers(1, 5, size=rank))

    def const(self, v: Value) -> Value:
        """A scalar or a small array broadcasting against the trailing dims of v."""
        if self.rng.random() < 0.5 or not v.shape:
            return self.b.const(float(self.rng.normal()), v.dtype)
        tail = v.shape[-1:]
        return self.b.const(self.rng.normal(size=tail).astype(np_dtype(v.dtype)), v.dtype)

    def step(self, v: Value) -> Value:
        b, rng = self.b, self.rng
        kinds = ["unary", "binary", "reduce", "transpose", "reshape", "slice", "leaky",
                 "softmax", "where", "cast", "concat", "broadcast"]
        if v.ndim == 2:
            kinds += ["matmul", "relabel"]
        kind = kinds[rng.integers(len(kinds))]
        nd = v.ndim
        if kind == "unary":
            return b.emit(self.UNARY[rng.integers(len(self.UNARY))], v)
        if kind == "binary":
            other = self.const(v) if rng.random() < 0.5 else self.input(v.dtype, v.shape)
            return b.emit(self.BINARY[rng.integers(len(self.BINARY))], v, other)
        if kind == "leaky":
            return b.emit("leakyrelu", v, scale=float(np.round(rng.uniform(0, 0.5), 3)))
        if kind == "reduce" and nd:
            axes = tuple(int(a) for a in np.flatnonzero(rng.random(nd) < 0.5))
            op = "reduce_sum" if rng.random() < 0.6 else "reduce_max"
            return b.emit(op, v, axes=axes, keepdims=bool(rng.random() < 0.5))
        if kind == "transpose" and nd:
            return b.emit("transpose", v, perm=tuple(int(p) for p in rng.permutation(nd)))
        if kind == "reshape":
            shape = (v.type.size,) if rng.random() < 0.5 else v.shape[::-1]
            return b.emit("reshape", v, shape=shape)
        if kind == "slice" and nd:
            starts = tuple(int(rng.integers(0, s)) for s in v.shape)
            steps = tuple(int(rng.integers(1, 3)) for _ in v.shape)
            return b.emit("slice", v, starts=starts, stops=v.shape, steps=steps)
        if kind == "softmax" and nd:
            return b.emit("softmax", v, axis=int(rng.integers(nd)))
        if kind == "where":
            cond = b.emit("greater", v, b.const(0.0, v.dtype))
            return b.emit("where", cond, v, self.const(v))
        if kind == "cast":
            return b.emit("cast", v, dtype="f64" if v.dtype == "f32" else "f32")
        if kind == "concat" and nd:
            return b.emit("concatenate", v, v, axis=int(rng.integers(nd)))
        if kind == "broadcast":
            return b.emit("broadcast_to", v, shape=(2, *v.shape), fmt="")
        if kind == "matmul":
            w = self.input(v.dtype, (v.shape[1], int(rng.integers(1, 4))))
            return b.emit("matmul", v, w)
        if kind == "relabel":
            return b.emit("relabel", v, fmt="CB" if v.fmt != "CB" else "")
        return b.emit("tanh", v)

    def build(self) -> tuple[Graph, list[np.ndarray]]:
        rank = int(self.rng.integers(0, 4))
        fmt = {2: "CB", 3: "SCB"}.get(rank, "") if self.rng.random() < 0.5 else ""
        v = self.input("f32" if self.rng.random() < 0.5 else "f64", self.shape(rank), fmt)
        outs = []
        for k in range(int(self.rng.integers(3, 12))):
            ctx = self.b.provenance(f"layer{k}") if self.rng.random() < 0.7 else \
                contextlib.nullcontext()
            with ctx:
                v = self.step(v)
            if v.type.size > 256:  # keep the graphs tiny
                v = self.b.emit("reduce_sum", v, axes=(0,))
            if self.rng.random() < 0.2:
                outs.append(v)
        self.b.graph.outputs = [*outs, v]
        return self.b.graph, self.arrays


@pytest.mark.parametrize("seed", range(40))
def test_random_graph_round_trips(seed):
    g, arrays = RandomGraph(seed).build()
    verify(g)
    assert_round_trip(g, arrays)


# --- every op's attributes and outputs --------------------------------------------------------


@pytest.mark.parametrize("op", registry_params(lambda op: op.pure))
def test_one_op_graph_round_trips(op):
    """Every op, with each of its samples' attributes, prints and parses back (this covers
    the multi-output ops, whose results are listed on the left of `=`)."""
    for s in op_samples(op):
        b = Builder(Graph(f"one_{op.name}"))
        xs = emit_inputs(b, s.args)
        with b.provenance(f"{op.name}_1"):
            b.graph.outputs = list(b.emit_node(op.name, *xs, **s.attrs).outputs)
        assert_round_trip(b.graph, [np.asarray(a) for a in s.args])


class _SplitFirst(OpDef):
    """y1, y2 = x[:k], x[k:] along axis 0"""

    name = "test_split_first"
    attrs = {"k": 1}

    def infer(self, in_types, k):
        t = in_types[0]
        return [t.with_(shape=(k, *t.shape[1:])), t.with_(shape=(t.shape[0] - k, *t.shape[1:]))]

    def ref(self, x, k):
        return x[:k].copy(), x[k:].copy()


@pytest.fixture
def split_op():
    """A two-output op, registered only for the test that uses it."""
    REGISTRY[_SplitFirst.name] = _SplitFirst()
    yield _SplitFirst.name
    del REGISTRY[_SplitFirst.name]


def test_multi_output_node_round_trips(split_op):
    b = Builder(Graph("split"))
    x = b.input(TensorType("f64", (5, 3), "CB"), "x")
    with b.provenance("split1"):
        top, rest = b.emit_node(split_op, x, k=2).outputs
    y = b.emit("add", b.emit("reduce_sum", top, axes=(0,), keepdims=True), rest)
    b.graph.outputs = [y, top]
    g2 = assert_round_trip(b.graph, [np.arange(15.0).reshape(5, 3)])
    assert "%0: f64[2,3]{CB}, %1: f64[3,3]{CB} = test_split_first(%x, k=2)  # split1" in str(g2)
    assert len(g2.nodes[0].outputs) == 2


# --- constants --------------------------------------------------------------------------------


def test_constants_round_trip():
    b = Builder(Graph("consts"))
    x = b.input(TensorType("f32", (2, 3)), "x")
    cs = [b.const(0.1, "f32"), b.const(np.float64(1 / 3), "f64"),
          b.const(np.array([[1.5, -2.25, 1e-30]]), "f32"),
          b.const(np.array([np.inf, -np.inf, np.nan]), "f64"),
          b.const(np.array([1, -7, 2**40]), "i64"), b.const(np.array([True, False, True]))]
    y = x
    for c in cs[:3]:
        y = b.emit("mul", y, b.emit("cast", c, dtype="f32"))
    fill = b.emit("fill", value=float("-inf"), dtype="f64", shape=(2, 3), fmt="CB")
    b.graph.outputs = [y, *cs, fill]
    g2 = assert_round_trip(b.graph, [np.ones((2, 3), np.float32)])
    text = str(g2)
    assert "value=[inf, -inf, nan]" in text and "value=-inf" in text
    assert g2.nodes[0].attrs["value"].dtype == np.float32


# --- traced programs --------------------------------------------------------------------------


def _mlp_loss(W1, b1, W2, b2, X, T):
    h = lgc.tanh(lgc.fullyconnect(X, W1, b1))
    y = lgc.softmax(lgc.fullyconnect(h, W2, b2))
    loss = lgc.crossentropy(y, T)
    return loss, lgc.dlgradient(loss, W1, b1, W2, b2)


def test_traced_mlp_loss_and_gradient_round_trips():
    rng = np.random.default_rng(0)
    args = (rng.normal(size=(6, 4)), np.zeros((6, 1)), rng.normal(size=(3, 6)),
            rng.normal(size=(3, 1)), lgc.dlarray(rng.normal(size=(4, 5)), "CB"), np.eye(3, 5))
    program = lgc.trace(_mlp_loss, *args)
    g = program.graph
    assert len(g.outputs) == 5 and any("vjp(" in n.prov for n in g.nodes)
    assert_round_trip(g, [np.asarray(a) for a in signature(args)[1]] + program.captures)


# --- parser errors ----------------------------------------------------------------------------

GOOD = """func @f(%x: f32[2,3]{CB}) -> (f32[2,3]{CB}) {
  %0: f32[2,3]{CB} = tanh(%x)  # act
  return %0
}"""


def test_parse_good_text():
    g = parse_graph(GOOD)
    assert str(g) == GOOD


@pytest.mark.parametrize("bad, message", [
    (GOOD.replace("tanh(%x)", "frobnicate(%x)"), "unknown op 'frobnicate'"),
    (GOOD.replace("tanh(%x)", "tanh(%y)"), "%y is used before it is defined"),
    (GOOD.replace("return %0", "return %7"), "%7 is used before it is defined"),
    (GOOD.replace("tanh(%x)", "tanh(%x, alpha=2)"), "tanh has no attributes ['alpha']"),
    (GOOD.replace("%x)  #", "%x, foo)  #").replace("tanh", "leakyrelu")
        .replace("foo", "scale=open('f')"), "cannot read attribute value"),
    (GOOD.replace("f32[2,3]{CB} = ", "f32[2;3] = "), "bad type"),
    (GOOD.replace("func @f", "fun @f"), "expected 'func @name"),
])
def test_parse_errors_are_clear(bad, message):
    with pytest.raises(ParseError) as info:
        parse_graph(bad)
    assert message in str(info.value)
    assert issubclass(ParseError, LgcError)


def test_parse_then_verify_catches_wrong_recorded_type():
    from lgc.ir import VerifyError

    g = parse_graph(GOOD.replace("%0: f32[2,3]{CB} = tanh", "%0: f64[2,3]{CB} = tanh"))
    with pytest.raises(VerifyError, match="node 0 tanh \\(from act\\)"):
        verify(g)


def test_sample_dataclass_is_what_samples_return():
    # the registry tests rely on this contract for every op family
    for op in REGISTRY.values():
        for s in op_samples(op):
            assert isinstance(s, Sample), f"{op.name}.samples() must return Sample objects"
