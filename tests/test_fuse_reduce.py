"""Reduction fusion (passes/fuse_reduce.py): reductions of a fused kernel's output run in its
loop, and the compiled result equals the reference interpreter's."""

from __future__ import annotations

import numpy as np
import pytest

from lgc.backend.numba import NumbaExecutable
from lgc.backend.reference import run_graph
from lgc.ir.core import Builder, Graph
from lgc.ir.text import parse_graph
from lgc.ir.types import TensorType
from lgc.passes import CPU_PIPELINE, optimize
from lgc.passes.fuse_reduce import operand_pattern, reduction_blocks


def _graph(shape, reductions, keep_product=False):
    """x·scale(per channel) + 1, then each (op, attrs) reduction of it; scale broadcasts over
    every axis but the third."""
    b = Builder(Graph("g"))
    x = b.input(TensorType("f32", shape), "x")
    cshape = tuple(n if d == 2 else 1 for d, n in enumerate(shape))
    s = b.input(TensorType("f32", cshape), "s")
    y = b.emit("add", b.emit("mul", x, s), b.const(1.0, "f32"))
    z = b.emit("exp", y)
    b.graph.outputs = [b.emit(op, z, **attrs) for op, attrs in reductions]
    if keep_product:
        b.graph.outputs.append(z)
    return b.graph


def _ops(g):
    return [n.op.name for n in g.nodes]


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (32, 32, 16, 64)])  # serial, parallel
def test_batch_norm_sums_fuse_into_the_producer(shape):
    cshape = (1, 1, shape[2], 1)
    g = _graph(shape, [("sum_to", {"shape": cshape}),
                       ("reduce_max", {"axes": (0, 1, 3), "keepdims": True}),
                       ("reduce_sum", {"axes": (0, 1, 3), "keepdims": False})])
    opt = optimize(g, CPU_PIPELINE)
    assert _ops(opt) == ["constant", "fused"], _ops(opt)  # no reduction kernel is left
    assert len(opt.nodes[-1].outputs) == 3  # the product itself is not written
    assert str(parse_graph(str(opt))) == str(opt)  # the IR text round-trips
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(shape).astype(np.float32) * 0.3,
            rng.standard_normal(cshape).astype(np.float32)]
    got = NumbaExecutable(g)(args)
    for u, v in zip(got, run_graph(g, args)):
        assert u.shape == v.shape
        np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-4)


def test_a_product_read_elsewhere_is_still_written():
    g = _graph((4, 6), [("sum_to", {"shape": (4, 1)})], keep_product=True)
    opt = optimize(g, CPU_PIPELINE)
    (fused,) = [n for n in opt.nodes if n.op.name == "fused"]
    assert [o.shape for o in fused.outputs] == [(4, 6), (4, 1)]
    args = [np.ones((4, 6), np.float32), np.ones((1, 1), np.float32)]
    for u, v in zip(NumbaExecutable(g)(args), run_graph(g, args)):
        np.testing.assert_allclose(u, v, rtol=1e-6)


def test_reductions_that_do_not_fit_the_loop_stay_separate():
    # kept axes on both sides of a reduced one: no (B, C, D) view
    g = _graph((3, 4, 5), [("reduce_sum", {"axes": (1,), "keepdims": True})])
    assert "reduce_sum" in _ops(optimize(g, CPU_PIPELINE))
    # two reductions over different axes: only the first joins the kernel
    g = _graph((3, 4, 5), [("reduce_sum", {"axes": (0, 1), "keepdims": False}),
                           ("reduce_sum", {"axes": (0, 1, 2), "keepdims": False})])
    assert _ops(optimize(g, CPU_PIPELINE)).count("reduce_sum") == 1
    # the per-channel scale would have to be read within the reduced block: not fused
    g = _graph((3, 4, 5), [("reduce_sum", {"axes": (0, 1, 2), "keepdims": False})])
    assert "reduce_sum" in _ops(optimize(g, CPU_PIPELINE))


def test_blocks_and_operand_patterns():
    assert reduction_blocks((32, 32, 16, 64), {0, 1, 3}) == ([0, 1], [2], [3])
    assert reduction_blocks((3, 1, 4, 5), {0, 2, 3}) == ([], [], [0, 1, 2, 3])  # one long loop
    assert reduction_blocks((3, 4, 5), {1}) is None
    blocks = ([0, 1], [2], [3])
    assert operand_pattern((1, 1, 16, 1), blocks, (32, 32, 16, 64)) == "0i0"
    assert operand_pattern((16, 64), blocks, (32, 32, 16, 64)) == "0ii"
    assert operand_pattern((32, 1, 16, 64), blocks, (32, 32, 16, 64)) is None
