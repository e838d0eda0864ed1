"""Shared test helpers: one-op graphs built from an op's samples, and finite differences.

Every VJP check goes through the same scalar objective: for an op with outputs `o_k` and
random cotangents `u_k` (one per float output), `f(x) = sum_k <o_k(x), u_k>`, so `grad f` is
the VJP of the op applied to the `u_k`. Finite differences run the forward graph through the
reference interpreter in float64.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import lgc.ops  # noqa: F401  (registers every op family)
from lgc.autodiff import backward
from lgc.backend.reference import run_graph
from lgc.ir.core import Builder, Graph, Node, Value
from lgc.ir.types import TensorType, dtype_name, is_float
from lgc.ops import REGISTRY, OpDef, Sample

DENSE_MAX = 200  # above this many perturbable elements, use the dot-product test

# The suite runs on the reference interpreter unless asked otherwise; the compiled backends
# are compared with it explicitly (tests/test_numba_backend.py).
os.environ.setdefault("LGC_BACKEND", "reference")

# Compiled-versus-reference tolerances, by dtype: the one table every backend test uses.
TOLERANCE = {"f64": {"rtol": 1e-9, "atol": 1e-12}, "f32": {"rtol": 2e-4, "atol": 2e-5}}


def op_rng(name: str, salt: int = 0) -> np.random.Generator:
    """A generator seeded from the op name, so each op's cases are stable across runs."""
    return np.random.default_rng(zlib.crc32(name.encode()) + salt)


def op_samples(op: OpDef) -> list[Sample]:
    return list(op.samples(op_rng(op.name)))


def cast_floats(args, dtype: str) -> list[np.ndarray]:
    """The sample's arrays with every float array converted to `dtype` (ints/bools kept)."""
    out = []
    for a in args:
        a = np.asarray(a)
        out.append(a.astype(np.float32 if dtype == "f32" else np.float64)
                   if a.dtype.kind == "f" else a)
    return out


def diff_indices(op: OpDef, sample: Sample) -> list[int]:
    """The inputs a VJP check perturbs: float and not declared `nondiff` by the sample."""
    return [i for i, a in enumerate(sample.args)
            if np.asarray(a).dtype.kind == "f" and i not in sample.nondiff]


def emit_inputs(b: Builder, args, prefix: str = "x") -> list[Value]:
    return [b.input(TensorType(dtype_name(np.asarray(a).dtype), np.shape(a)), f"{prefix}{i}")
            for i, a in enumerate(args)]


def full_sum(b: Builder, v: Value) -> Value:
    """sum of all elements of v, as a 0-d value."""
    return b.emit("reduce_sum", v, axes=tuple(range(len(v.shape))))


def inner(b: Builder, a: Value, u: Value) -> Value:
    """<a, u> as a 0-d value."""
    return full_sum(b, b.mul(a, u))


@dataclass
class VjpCase:
    """A one-op graph and its scalar objective, with the concrete inputs to run them on."""

    fwd: Graph  # inputs xs + us -> (f,)
    grad: Graph  # inputs xs + us [+ vs] -> (f, grads... [, hvps...])
    args: list[np.ndarray]
    us: list[np.ndarray]
    vs: list[np.ndarray]
    diff: list[int]
    node: Node

    def f(self, args) -> float:
        return float(run_graph(self.fwd, [*args, *self.us])[0])

    def run(self, args=None) -> list[np.ndarray]:
        args = self.args if args is None else args
        return run_graph(self.grad, [*args, *self.us, *self.vs])


def vjp_case(op: OpDef, sample: Sample, rng: np.random.Generator,
             second_order: bool = False) -> VjpCase:
    """Build f(x) = sum_k <o_k, u_k> for one application of `op`, its gradient with respect
    to the perturbable inputs and, with `second_order`, the Hessian-vector product
    d/dx <grad f, v>, emitted by differentiating the gradient graph again."""
    args = cast_floats(sample.args, "f64")
    b = Builder(Graph(f"vjp_{op.name}"))
    xs = emit_inputs(b, args)
    node = b.emit_node(op.name, *xs, **sample.attrs)
    us, u_vals, y = [], [], None
    for k, o in enumerate(node.outputs):
        if not is_float(o.dtype):
            continue
        u_vals.append(rng.normal(size=o.shape))
        u = b.input(TensorType("f64", o.shape), f"u{k}")
        us.append(u)
        term = inner(b, o, u)
        y = term if y is None else b.add(y, term)
    assert y is not None, f"{op.name}: a differentiable op needs a float output"
    fwd = Graph(f"f_{op.name}", list(b.graph.inputs), list(b.graph.nodes), [y])
    diff = diff_indices(op, sample)
    grads = backward(b, y, [xs[i] for i in diff])
    outs = [y, *grads]
    v_vals = []
    if second_order:
        s = None
        for i, g in zip(diff, grads):
            v_vals.append(rng.normal(size=xs[i].shape))
            v = b.input(TensorType("f64", xs[i].shape), f"v{i}")
            term = inner(b, g, v)
            s = term if s is None else b.add(s, term)
        outs += backward(b, s, [xs[i] for i in diff])
    b.graph.outputs = outs
    return VjpCase(fwd, b.graph, args, u_vals, v_vals, diff, node)


def perturbed(args, diff, deltas, eps: float):
    """Copies of `args` with `eps * deltas[j]` added to input `diff[j]`."""
    out = list(args)
    for i, d in zip(diff, deltas):
        out[i] = args[i] + eps * d
    return out


def fd_gradient(f, args, diff, eps: float = 1e-6) -> list[np.ndarray]:
    """Central-difference gradient of scalar `f(args)` with respect to each input in `diff`."""
    grads = []
    for i in diff:
        g = np.zeros(args[i].shape)
        for j in np.ndindex(args[i].shape):
            e = np.zeros(args[i].shape)
            e[j] = 1.0
            g[j] = (f(perturbed(args, [i], [e], eps)) - f(perturbed(args, [i], [e], -eps))) / (
                2 * eps)
        grads.append(g)
    return grads


def fd_directional(f, args, diff, ts, eps: float = 1e-6) -> float:
    """Central-difference derivative of scalar `f` along the direction `ts` (one per diff)."""
    return (f(perturbed(args, diff, ts, eps)) - f(perturbed(args, diff, ts, -eps))) / (2 * eps)


def check_gradient(f, args, diff, grads, rng, what: str, rtol=1e-5, atol=1e-6) -> None:
    """Compare analytic `grads` of scalar `f` with finite differences: the full gradient on
    small inputs, the dot-product test <J t, u> = <t, J^T u> along random directions on large
    ones."""
    n = sum(args[i].size for i in diff)
    if n <= DENSE_MAX:
        for i, g, fd in zip(diff, grads, fd_gradient(f, args, diff)):
            np.testing.assert_allclose(g, fd, rtol=rtol, atol=atol,
                                       err_msg=f"{what}: gradient of input {i}")
        return
    for _ in range(2):
        ts = [rng.normal(size=args[i].shape) for i in diff]
        lhs = fd_directional(f, args, diff, ts)
        rhs = sum(float(np.sum(t * g)) for t, g in zip(ts, grads))
        np.testing.assert_allclose(rhs, lhs, rtol=rtol, atol=atol * np.sqrt(n),
                                   err_msg=f"{what}: <t, J^T u> vs directional derivative")


def registry_params(pred=lambda op: True):
    """pytest params over the registered ops satisfying `pred`, with the op name as id."""
    return [pytest.param(op, id=name) for name, op in sorted(REGISTRY.items()) if pred(op)]


# --- compiled backends against the reference ---------------------------------------------------


def assert_same(got, want, dtype="f64", what=""):
    """Backend outputs equal the reference's: same shapes and dtypes, values within TOLERANCE."""
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, (what, k, g.shape, w.shape, g.dtype)
        if is_float(dtype_name(w.dtype)):
            np.testing.assert_allclose(g, w, **TOLERANCE[dtype], err_msg=f"{what} output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{what} output {k}")


def check_op_and_vjp(op: OpDef, executable) -> None:
    """Every sample's one-op graph with its VJP, compiled by `executable(graph)`, in float64."""
    for k, sample in enumerate(op_samples(op)):
        case = vjp_case(op, sample, op_rng(op.name, 1))
        args = [*case.args, *case.us]
        assert_same(executable(case.grad)(args), run_graph(case.grad, args),
                    what=f"{op.name} sample {k}")


def check_op_forward_float32(op: OpDef, executable) -> None:
    """Every sample's one-op forward graph in float32, compiled by `executable(graph)`."""
    for k, sample in enumerate(op_samples(op)):
        args = cast_floats(sample.args, "f32")
        b = Builder(Graph(f"f32_{op.name}"))
        xs = emit_inputs(b, args)
        b.graph.outputs = list(b.emit_node(op.name, *xs, **sample.attrs).outputs)
        assert_same(executable(b.graph)(args), run_graph(b.graph, args), "f32",
                    what=f"{op.name} sample {k}")


@pytest.fixture(params=["numba", "reference"])
def backend(request):
    """Each backend in turn as lgc's default (restored afterwards)."""
    old = lgc.get_backend()
    lgc.set_backend(request.param)
    yield request.param
    lgc.set_backend(old)
