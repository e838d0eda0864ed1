"""Every registered op compiled on the CUDA backend against the reference interpreter: forward
(float32) and the one-op VJP graphs from the registry samples (float64), within TOLERANCE.

Runs in its own process: under NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda.py starts it) or on a
real GPU with LGC_CUDA_TESTS=1."""

from __future__ import annotations

import os

import pytest

if not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("LGC_CUDA_TESTS")):
    pytest.skip("CUDA suite: run by tests/test_cuda.py in a simulator subprocess, or with "
                "LGC_CUDA_TESTS=1 on a GPU", allow_module_level=True)

import numpy as np  # noqa: E402

import lgc  # noqa: E402
from conftest import (  # noqa: E402
    TOLERANCE,
    assert_same,
    check_op_and_vjp,
    check_op_forward_float32,
    emit_inputs,
    registry_params,
)
from lgc.backend.cuda import CudaExecutable  # noqa: E402
from lgc.backend.reference import run_graph  # noqa: E402
from lgc.ir.core import Builder, Graph  # noqa: E402


@pytest.mark.parametrize("op", registry_params(lambda op: op.differentiable))
def test_op_and_vjp_on_cuda_match_reference(op):
    check_op_and_vjp(op, CudaExecutable)


@pytest.mark.parametrize("op", registry_params(lambda op: op.pure and op.name != "fused"))
def test_op_forward_float32_on_cuda_matches_reference(op):
    check_op_forward_float32(op, CudaExecutable)


def test_random_uniform_runs_as_counted_host_step():
    b = Builder(Graph("rand"))
    b.graph.outputs = [b.emit("random_uniform", dtype="f32", shape=(2, 3))]
    exe = CudaExecutable(b.graph)
    (y,) = exe([])
    assert y.shape == (2, 3) and y.dtype == np.float32 and np.all((y >= 0) & (y < 1))
    assert exe.stats["host_steps"] == ["random_uniform"]


def test_device_ops_need_no_host_steps():
    """The ops with device kernels never fall back to the host."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2))
    b = Builder(Graph("dev"))
    (v,) = emit_inputs(b, [x])
    y = b.emit("pad", v, pads=((1, 1), (0, 0), (0, 0)), mode="constant", value=0.0)
    y, _ = b.emit_node("maxpool", y, pool=(2,), stride=(2,), padding=((0, 0),)).outputs
    z = b.emit("avgpool", v, pool=(2,), stride=(1,), padding=((0, 0),), count_pad=True)
    w = b.emit("softmax", b.emit("transpose", z, perm=(1, 0, 2)), axis=0)
    b.graph.outputs = [y, w, b.emit("reduce_max", w, axes=(0, 2))]
    exe = CudaExecutable(b.graph)
    assert_same(exe([x]), run_graph(b.graph, [x]))
    assert exe.stats["host_steps"] == []
    assert exe.stats["transfers"] == {"to_device": 1, "to_host": 3}


def test_compiled_function_matches_reference_and_shows_cuda_source():
    rng = np.random.default_rng(1)
    params = {"W": lgc.dlarray(rng.normal(size=(4, 6)).astype(np.float32)),
              "b": lgc.dlarray(np.zeros((4, 1), np.float32))}
    X = lgc.dlarray(rng.normal(size=(6, 5)).astype(np.float32), "CB")
    T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 4, 5), 0, ClassNames=range(4)), "CB")

    def model_loss(params, X, T):
        Y = lgc.softmax(lgc.fullyconnect(X, params["W"], params["b"]))
        loss = lgc.crossentropy(Y, T)
        return loss, lgc.dlgradient(loss, params)

    cf = lgc.compile(model_loss, backend="cuda")
    loss, grads = cf(params, X, T)
    ref_loss, ref_grads = lgc.compile(model_loss, backend="reference")(params, X, T)
    np.testing.assert_allclose(float(loss), float(ref_loss), **TOLERANCE["f32"])
    for k in params:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(ref_grads[k]),
                                   **TOLERANCE["f32"])
    low = cf.lower(params, X, T)
    assert "cuda.grid(1)" in low.source and "cuda.shared.array" in low.source
    assert low.stats["host_steps"] == [] and low.stats["n_kernels"] == len(low.kernels) > 0


def _geom(stride, dilation, padding):
    return {"stride": stride, "dilation": dilation, "padding": padding}


# (x shape, w shape, geometry): 1-D, 2-D with groups, dilation and asymmetric padding, 3-D
CONV = [((7, 2, 3), (3, 2, 2, 1), _geom((2,), (1,), ((1, 2),))),
        ((5, 4, 4, 2), (3, 2, 2, 3, 2), _geom((1, 2), (2, 1), ((1, 1), (0, 2)))),
        ((3, 4, 3, 2, 2), (2, 2, 2, 2, 1, 1), _geom((1, 2, 1), (1, 1, 2), ((0, 1), (1, 0),
                                                                           (1, 1))))]


@pytest.mark.parametrize("case", range(len(CONV)))
def test_conv_family_on_device_with_groups_strides_dilation(case):
    xs, ws, geom = CONV[case]
    rng = np.random.default_rng(case)
    x, w = rng.normal(size=xs), rng.normal(size=ws)
    b = Builder(Graph("conv"))
    xv, wv = emit_inputs(b, [x, w])
    y = b.emit("conv", xv, wv, **geom)
    d = len(ws) - 3
    gy = b.input(lgc.ir.types.TensorType("f64", y.shape), "gy")
    gx = b.emit("conv_backward_input", gy, wv, **geom, in_size=xs[:d])
    gw = b.emit("conv_backward_weights", xv, gy, **geom, kernel=ws[:d], groups=ws[-1])
    b.graph.outputs = [y, gx, gw]
    args = [x, w, rng.normal(size=y.shape)]
    exe = CudaExecutable(b.graph)
    assert_same(exe(args), run_graph(b.graph, args), what=f"conv case {case}")
    assert exe.stats["host_steps"] == []
