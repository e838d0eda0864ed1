"""The Numba lowerings of conv, pooling, padding, embedding, windowed sums and copying shape ops
against the reference interpreter, on option combinations beyond the ops' samples, in float32
and float64; kernels reused across batch sizes; a LeNet loss+gradient with no NumPy fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from conftest import TOLERANCE, emit_inputs
from lgc.backend.numba import NumbaExecutable
from lgc.backend.reference import run_graph
from lgc.errors import ShapeError
from lgc.ir.core import Builder, Graph
from lgc.ir.types import TensorType, dtype_name
from lgc.ops import conv_kernels, get_op

RNG = np.random.default_rng(7)


def _conv_out(x, w, **geom):
    types = [TensorType(dtype_name(a.dtype), a.shape) for a in (x, w)]
    return get_op("conv").infer(types, **get_op("conv").normalize_attrs(geom))[0].shape


def _geom(stride, dilation, padding):
    return {"stride": stride, "dilation": dilation, "padding": padding}


# (x shape, w shape, geometry): 1-D/2-D/3-D, strides, dilation, asymmetric padding, groups;
# the input gradient as a forward convolution (stride 1: cases 3 and 6) and as a gather
CONV = [
    ((9, 2, 3), (3, 2, 4, 1), _geom((2,), (1,), ((1, 2),))),
    ((6, 5, 4, 2), (3, 2, 2, 3, 2), _geom((1, 2), (2, 1), ((1, 1), (0, 2)))),
    ((6, 7, 12, 2), (3, 2, 6, 8, 2), _geom((2, 1), (1, 2), ((1, 0), (2, 1)))),
    ((7, 6, 3, 3), (3, 3, 3, 16, 1), _geom((1, 1), (1, 1), ((1, 1), (1, 1)))),
    ((4, 5, 3, 2, 2), (2, 2, 2, 2, 3, 1), _geom((1, 2, 1), (1, 1, 2), ((0, 1), (1, 0), (1, 1)))),
    ((3, 4, 3, 8, 2), (2, 2, 2, 4, 9, 2), _geom((2, 1, 1), (1, 1, 1), ((0, 0), (1, 1), (0, 1)))),
    # past the parallel threshold, with a last chunk of output positions that is not full
    ((23, 25, 8, 16), (3, 3, 4, 6, 2), _geom((1, 1), (1, 1), ((1, 1), (1, 1)))),
]


def _conv_cases():
    for k, (xs, ws, geom) in enumerate(CONV):
        x, w = RNG.normal(size=xs), RNG.normal(size=ws)
        gy = RNG.normal(size=_conv_out(x, w, **geom))
        d = len(ws) - 3
        yield pytest.param("conv", [x, w], geom, id=f"conv{k}")
        yield pytest.param("conv_backward_input", [gy, w], {**geom, "in_size": xs[:d]},
                           id=f"conv_backward_input{k}")
        yield pytest.param("conv_backward_weights", [x, gy],
                           {**geom, "kernel": ws[:d], "groups": ws[-1]},
                           id=f"conv_backward_weights{k}")


def test_input_gradient_of_a_dense_geometry_runs_as_a_forward_convolution():
    # both kernels give the same numbers: only this catches the dense path left for the other
    dense = []
    for xs, ws, geom in CONV:
        d = len(ws) - 3
        gy = RNG.normal(size=_conv_out(RNG.normal(size=xs), RNG.normal(size=ws), **geom))
        g, _ = _one_op("conv_backward_input", [gy, RNG.normal(size=ws)],
                       {**geom, "in_size": xs[:d]}, "f32")
        (kernel,) = NumbaExecutable(g).kernels
        dense.append("phase" not in kernel.source)
        assert dense[-1] == (kernel.source == conv_kernels._source(conv_kernels._FORWARD))
    assert dense == [False, False, False, True, False, False, True]


def _distinct(*shape):
    """Values 1 apart in random order: max pooling has no ties."""
    return RNG.permutation(int(np.prod(shape))).reshape(shape) + 0.1 * RNG.random(shape)


POOLS = [
    ((6, 3, 2), {"pool": (2,), "stride": (2,), "padding": ((0, 1),)}),
    ((7, 6, 2, 3), {"pool": (3, 2), "stride": (2, 1), "padding": ((1, 1), (0, 1))}),
    ((4, 5, 4, 2, 2), {"pool": (2, 3, 2), "stride": (1, 2, 2), "padding": ((1, 0), (1, 1),
                                                                        (0, 1))}),
]


def _pool_cases():
    for k, (shape, a) in enumerate(POOLS):
        yield pytest.param("maxpool", [_distinct(*shape)], a, id=f"maxpool{k}")
        for count_pad in (True, False):
            b = {**a, "count_pad": count_pad}
            types = [TensorType("f64", shape)]
            out = get_op("avgpool").infer(types, **get_op("avgpool").normalize_attrs(b))[0]
            d = len(a["pool"])
            yield pytest.param("avgpool", [RNG.normal(size=shape)], b, id=f"avgpool{k}{count_pad}")
            yield pytest.param("avgpool_backward", [RNG.normal(size=out.shape)],
                               {**b, "in_size": shape[:d]}, id=f"avgpool_backward{k}{count_pad}")
    idx = np.array([[0, 5, 7, 11], [11, 5, 2, 3]])  # repeats accumulate
    yield pytest.param("maxunpool", [RNG.normal(size=(2, 4)), idx], {"shape": (3, 4)},
                       id="maxunpool")
    yield pytest.param("gather_flat", [RNG.normal(size=(3, 4)), idx - 1], {},
                       id="gather_flat")  # -1: the last element, as in NumPy


def _pad_cases():
    modes = ["constant", "replicate", "symmetric-include-edge", "symmetric-exclude-edge",
             "circular"]
    for mode in modes:
        pads = ((2, 1), (1, 3), (0, 0), (0, 0))
        value = {"value": -1.5} if mode == "constant" else {}
        yield pytest.param("pad", [RNG.normal(size=(4, 5, 2, 3))],
                           {"pads": pads, "mode": mode, **value}, id=f"pad-{mode}")
        yield pytest.param("pad_adjoint", [RNG.normal(size=(7, 9, 2, 3))],
                           {"pads": pads, "mode": mode}, id=f"pad_adjoint-{mode}")
    yield pytest.param("pad", [RNG.normal(size=(3, 4))], {"pads": ((0, 0), (5, 6)),
                                                         "mode": "circular"}, id="pad-last-axis")
    yield pytest.param("pad", [RNG.normal(size=(3, 4))], {"pads": ((0, 0), (0, 0))},
                       id="pad-none")


def _other_cases():
    yield pytest.param("embed", [RNG.integers(0, 5, size=(2, 1, 3)), RNG.normal(size=(4, 5))],
                       {"axis": 1}, id="embed")
    yield pytest.param("embed_backward", [RNG.normal(size=(2, 4, 3)),
                                          np.array([[[0, 2, 2]], [[4, 0, 2]]])],
                       {"num_words": 5, "axis": 1}, id="embed_backward")
    for k, (shape, axis, before, after) in enumerate([((3, 7, 2), 1, 2, 1), ((5, 4), 0, 0, 3),
                                                     ((2, 6), 1, 9, 9)]):
        yield pytest.param("channel_window_sum", [RNG.normal(size=shape)],
                           {"axis": axis, "before": before, "after": after}, id=f"cws{k}")
    yield pytest.param("split", [RNG.normal(size=(3, 7, 2))], {"axis": 1, "sizes": (2, 4, 1)},
                       id="split")
    yield pytest.param("split", [RNG.normal(size=(1, 7, 2))], {"axis": 1, "sizes": (2, 5)},
                       id="split-views")
    yield pytest.param("concatenate", [RNG.normal(size=(2, 3, 2)), RNG.normal(size=(2, 1, 2))],
                       {"axis": 1}, id="concatenate")
    yield pytest.param("broadcast_to", [RNG.normal(size=(3, 1))], {"shape": (2, 3, 4)},
                       id="broadcast_to")
    sl = {"starts": (1, 0, 1), "stops": (5, 3, 4), "steps": (2, 1, 2)}
    yield pytest.param("slice", [RNG.normal(size=(5, 3, 4))], sl, id="slice")
    yield pytest.param("unslice", [RNG.normal(size=(2, 3, 2))], {"shape": (5, 3, 4), **sl},
                       id="unslice")
    yield pytest.param("fill", [], {"value": 2.5, "shape": (3, 2), "dtype": "DT"}, id="fill")
    yield pytest.param("constant", [], {"value": np.arange(6.0).reshape(2, 3), "dtype": "DT"},
                       id="constant")


CASES = [*_conv_cases(), *_pool_cases(), *_pad_cases(), *_other_cases()]
HAS_KERNEL = {"conv", "conv_backward_input", "conv_backward_weights", "pad", "pad_adjoint",
              "maxpool", "maxunpool", "gather_flat", "avgpool", "avgpool_backward", "embed",
              "embed_backward", "channel_window_sum", "broadcast_to"}  # the last as a fused kernel


def _one_op(name, args, attrs, dtype):
    np_dt = np.float32 if dtype == "f32" else np.float64
    args = [a.astype(np_dt) if a.dtype.kind == "f" else a for a in args]
    attrs = {k: dtype if isinstance(v, str) and v == "DT" else v for k, v in attrs.items()}
    b = Builder(Graph(f"{dtype}_{name}"))
    xs = emit_inputs(b, args)
    b.graph.outputs = list(b.emit_node(name, *xs, **attrs).outputs)
    return b.graph, args


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize("name,args,attrs", CASES)
def test_lowered_op_matches_reference(name, args, attrs, dtype):
    g, args = _one_op(name, args, attrs, dtype)
    exe = NumbaExecutable(g)
    # the lowering ran, not the op's `ref` (leading-axis sections are views, not copies)
    assert exe.stats["numpy_steps"] == (["split"] if name == "split" and args[0].shape[0] == 1
                                        else [])
    assert (len(exe.kernels) == 1) == (name in HAS_KERNEL)
    want = run_graph(g, args)
    for _ in range(2):  # a second call reuses the scratch buffers
        got = exe(args)
        for k, (u, v) in enumerate(zip(got, want)):
            assert u.shape == v.shape and u.dtype == v.dtype, (k, u.shape, v.shape)
            if v.dtype.kind == "f":
                np.testing.assert_allclose(u, v, **TOLERANCE[dtype], err_msg=f"output {k}")
            else:
                np.testing.assert_array_equal(u, v, err_msg=f"output {k}")


def test_bad_indices_raise_shape_error():
    g, args = _one_op("gather_flat", [np.ones((2, 2)), np.array([0, 4])], {}, "f64")
    with pytest.raises(ShapeError, match="gather_flat"):
        NumbaExecutable(g)(args)
    g, args = _one_op("embed", [np.array([[0, 3]]), np.ones((2, 3))], {"axis": 0}, "f64")
    with pytest.raises(ShapeError, match="embed"):
        NumbaExecutable(g)(args)
    g, args = _one_op("maxunpool", [np.ones(2), np.array([0, -1])], {"shape": (3,)}, "f64")
    with pytest.raises(ShapeError, match="maxunpool"):
        NumbaExecutable(g)(args)


def test_random_uniform_stays_impure_and_follows_rng():
    for dtype in ("f32", "f64"):
        g, _ = _one_op("random_uniform", [], {"shape": (3, 4), "dtype": dtype}, dtype)
        exe = NumbaExecutable(g)
        lgc.rng(5)
        (a,), (b,) = exe([]), exe([])
        assert a.dtype == np.dtype(np.float32 if dtype == "f32" else np.float64)
        assert not np.array_equal(a, b) and 0 <= a.min() and a.max() < 1
        lgc.rng(5)
        np.testing.assert_array_equal(exe([])[0], a)


def _lenet():
    rng = np.random.default_rng(0)
    f32 = lambda *s: (rng.normal(size=s) * 0.2).astype(np.float32)  # noqa: E731
    params = {"W1": lgc.dlarray(f32(5, 5, 1, 6)), "b1": lgc.dlarray(f32(6, 1)),
              "W2": lgc.dlarray(f32(5, 5, 6, 16)), "b2": lgc.dlarray(f32(16, 1)),
              "W3": lgc.dlarray(f32(10, 2 * 2 * 16)), "b3": lgc.dlarray(f32(10, 1))}

    def model_loss(p, X, T):
        h = lgc.maxpool(lgc.relu(lgc.dlconv(X, p["W1"], p["b1"])), 2, Stride=2)
        h = lgc.maxpool(lgc.relu(lgc.dlconv(h, p["W2"], p["b2"], Padding="same")), 2, Stride=2)
        h = lgc.maxpool(h, 2, Stride=2, Padding=1)
        Y = lgc.softmax(lgc.fullyconnect(h, p["W3"], p["b3"]))
        loss = lgc.crossentropy(Y, T)
        return loss, lgc.dlgradient(loss, p)

    def batch(n):
        X = lgc.dlarray(rng.normal(size=(16, 16, 1, n)).astype(np.float32), "SSCB")
        T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 10, n), 0, ClassNames=range(10)),
                        "CB")
        return X, T

    return model_loss, params, batch


def test_lenet_gradient_runs_without_numpy_fallbacks_and_reuses_kernels_across_batches():
    model_loss, params, batch = _lenet()
    cf = lgc.compile(model_loss, backend="numba")
    # batches 2 and 3: the work stays below PARALLEL_MIN_ELEMENTS, so every kernel keeps its
    # `range` source (crossing it swaps in a `prange` variant, compiled once)
    X, T = batch(2)
    first = cf.lower(params, X, T)
    views = {"reshape", "transpose", "relabel", "stop_gradient"}
    assert set(first.stats["numpy_steps"]) <= views, first.stats["numpy_steps"]
    assert {"conv", "conv_backward_weights", "maxpool", "maxunpool"} <= {
        op for k in first.kernels for op in k.ops}
    loss, grads = cf(params, X, T)
    ref_loss, ref_grads = lgc.compile(model_loss, backend="reference")(params, X, T)
    np.testing.assert_allclose(float(loss), float(ref_loss), **TOLERANCE["f32"])
    for k in params:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(ref_grads[k]),
                                   **TOLERANCE["f32"], err_msg=k)
    second = cf.lower(params, *batch(3))
    assert second.stats["cache_misses"] == 0
    assert second.stats["cache_hits"] == second.stats["n_kernels"] == first.stats["n_kernels"]


@pytest.mark.parametrize("op", ["reduce_sum", "reduce_max", "reduce_min"])
def test_reductions_over_every_axes_subset(op):
    """Interleaved kept and reduced axes (batch norm keeps C of S×S×C×B) reduce in place,
    three reduced blocks through the transposed fallback; parallel and serial kernels."""
    import itertools

    from lgc.backend.numba.runtime import reduce_view

    rng = np.random.default_rng(0)
    fn = {"reduce_sum": np.sum, "reduce_max": np.max, "reduce_min": np.min}[op]
    for shape in [(3, 1, 4, 5, 2), (64, 64, 3, 33)]:  # the second passes the parallel threshold
        x = rng.standard_normal(shape).astype(np.float32)
        subsets = [a for r in range(1, 6) for a in itertools.combinations(range(len(shape)), r)]
        if len(shape) == 4:
            subsets = [(0, 1, 3), (0, 2), (1, 3), (3,), (0,), (0, 1, 2, 3)]
        for axes in subsets:
            b = Builder(Graph(op))
            v = b.input(TensorType("f32", shape), "x")
            b.graph.outputs = [b.emit(op, v, axes=axes, keepdims=True)]
            got = NumbaExecutable(b.graph)([x])[0]
            np.testing.assert_allclose(got, fn(x, axis=axes, keepdims=True), rtol=1e-4,
                                       atol=1e-3, err_msg=f"{op} over {axes} of {shape}")
    assert reduce_view((2, 3, 4, 5, 6), (0, 2, 4)) is None  # the fallback was exercised
    assert reduce_view((32, 32, 16, 64), (0, 1, 3)) == (1, 1024, 16, 64, 1)


def test_conv_kernels_bind_blas_without_importing_scipy_linalg():
    """The in-kernel GEMMs need SciPy's cython_blas only; all of scipy.linalg would add a
    quarter second to every warm start. The result must still be right."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, lgc\n"
        "from lgc.backend.numba import NumbaExecutable\n"
        "from lgc.ir.core import Builder, Graph\n"
        "from lgc.ir.types import TensorType\n"
        "b = Builder(Graph('c'))\n"
        "x = b.input(TensorType('f32', (5, 5, 2, 3)), 'x')\n"
        "w = b.input(TensorType('f32', (3, 3, 2, 4, 1)), 'w')\n"
        "b.graph.outputs = [b.emit('conv', x, w, stride=(1, 1), dilation=(1, 1),\n"
        "                          padding=((0, 0), (0, 0)))]\n"
        "xs, ws = np.ones((5, 5, 2, 3), np.float32), np.ones((3, 3, 2, 4, 1), np.float32)\n"
        "y = NumbaExecutable(b.graph)([xs, ws])[0]\n"
        "assert np.all(y == 18), y\n"
        "assert 'scipy.linalg' not in sys.modules\n"
        "assert 'scipy.linalg.cython_blas' in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]


def test_kernels_get_the_threads_and_small_calls_through_python_run_on_one():
    """Every program gives the cores to its kernels (BLAS single-threaded during a call):
    a matmul-only program splits its big product between them too. A threaded kernel with
    little work (under PYTHON_CALL_MIN_ELEMENTS) runs as part (0, 1) when its call is not
    prepared (a wake-up through Python would cost more than the work); prepared, or with
    more work, it runs in parts."""
    from lgc.backend.numba import runtime
    from lgc.ops.base import PARALLEL_MIN_ELEMENTS, PYTHON_CALL_MIN_ELEMENTS

    b = Builder(Graph("p"))
    x = b.input(TensorType("f32", (512, 512)), "x")
    b.graph.outputs = [b.emit("matmul", x, x)]
    exe = NumbaExecutable(b.graph)
    assert exe.stats["threads"] == "kernels"
    (step,) = exe._steps
    assert isinstance(step.fn, runtime.Threaded) and not step.fn.small

    def program(size):
        b = Builder(Graph("p"))
        v = b.input(TensorType("f32", (size,)), "v")
        b.graph.outputs = [b.emit("exp", v)]
        return NumbaExecutable(b.graph)

    small, big = program(PARALLEL_MIN_ELEMENTS), program(PYTHON_CALL_MIN_ELEMENTS)
    assert small._steps[0].fn.small and not big._steps[0].fn.small
    seen = []
    fc = lambda *args: seen.append(args[-2:])  # noqa: E731
    runtime.Threaded(fc, 2, small=True)("a")
    assert seen == [(0, 1)]
    seen.clear()
    runtime.Threaded(fc, 2)("a")
    assert sorted(seen) == [(0, 2), (1, 2)]
    kernel, _, args, _, _ = _launchable()
    call = runtime.Threaded(runtime.FastCall(kernel), 2, small=True).bind(args)
    out = args[0]
    for _ in range(3):  # prepared, a small kernel runs on its threads all the same
        out[:] = 0
        call()
        assert list(out[:2, 1]) == [2, 2]  # parts 0 and 1 of 2
        assert call.address  # launched from the second call on


def test_thread_pool_runs_every_part_and_raises_a_workers_error():
    from lgc.backend.numba import threads

    seen = []
    threads.run(lambda tag, t, count: seen.append((tag, t, count)), 3, "x")
    assert sorted(seen) == [("x", 0, 3), ("x", 1, 3), ("x", 2, 3)]

    def fail_in_a_worker(t, count):
        if t == 1:
            raise ValueError("part 1 failed")
    with pytest.raises(ValueError, match="part 1"):
        threads.run(fail_in_a_worker, 2)
    threads.run(lambda t, count: seen.append(t), 2)  # the pool still works afterwards
    assert seen[-2:] in ([0, 1], [1, 0])


@pytest.mark.parametrize("linger", [0, None], ids=["workers-sleep", "workers-watch"])
def test_thread_pool_returns_after_every_part_whether_workers_watch_or_sleep(monkeypatch,
                                                                             linger):
    """A worker watches for the next call for a while after one (taken without a wake-up)
    and sleeps on its condition after that; the caller watches for the workers' ends, then
    waits on their events. Either way `run` returns only once every part is done (a slow
    part outlasts the caller's watch here)."""
    import time

    from lgc.backend.numba import threads

    if linger is not None:
        monkeypatch.setattr(threads, "LINGER_CYCLES", linger)
    monkeypatch.setattr(threads, "WAIT_CYCLES", 1000)
    out = np.zeros(3)
    for i in range(40):
        def part(t, count, i=i):
            if t and i % 8 == 0:
                time.sleep(0.002)
            out[t] = i
        threads.run(part, 3)
        assert list(out) == [i, i, i]


@pytest.mark.parametrize("x86", [True, False], ids=["cycle-counter", "turns"])
def test_the_pools_watches_see_a_flag_and_give_up_after_their_bound(x86):
    """Both variants of the pool's compiled side (deadlines on the cycle counter, x86; on a
    count of turns elsewhere): the caller's watch for a worker's end returns 1 once the end
    is flagged and 0 when its bound runs out first; a worker's returns a Python call
    posted, and puts itself to sleep (the state says so) when nothing comes within its bound."""
    import platform

    from lgc.backend.numba import threads as th
    from lgc.backend.numba.compile import load_kernel

    if x86 and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the cycle counter is read on x86 only")
    pool = load_kernel(th._pool_source(x86), {"cache": True, "nogil": True})
    flags = np.zeros((1, 16), np.int64)
    assert pool(flags, th._NO_PROGRAM, 0, th.WAIT, 0, 0, 0, 10_000, 0) == 0
    flags[0, th.DONE] = 1
    assert pool(flags, th._NO_PROGRAM, 0, th.WAIT, 0, 0, 0, 10_000, 0) == 1
    assert pool(flags, th._NO_PROGRAM, 0, th.SERVE, 0, 0, 0, 10_000, 0) == th.ASLEEP
    assert flags[0, th.STATE] == th.ASLEEP
    flags[0, th.STATE] = th.PYTHON
    assert pool(flags, th._NO_PROGRAM, 0, th.SERVE, 0, 0, 0, 10_000, 0) == th.PYTHON


def test_the_caller_takes_back_a_part_no_worker_has_taken():
    """A part posted to a worker that does not come for it (descheduled by another process's
    load, still waking; here: no thread serves these flags at all) is taken back by the
    caller once its own part is done and run there, instead of waiting for the worker; a
    part a worker has taken is waited for."""
    from lgc.backend.numba import threads as th
    from lgc.backend.numba.compile import load_kernel

    pool = load_kernel(th._pool_source(th._X86), {"cache": True, "nogil": True})
    kernel, sig, args, address, block = _launchable()
    out, x, m = args[:3]
    flags = np.zeros((2, 16), np.int64)
    out[:] = 0
    assert pool(flags, th._NO_PROGRAM, 0, th.POST, address, block.ctypes.data, 3, 0, 0) == 0
    assert list(flags[:, th.STATE]) == [th.NATIVE, th.NATIVE]
    flags[1, th.STATE] = th.IDLE  # as if worker 1 had taken part 2 ...
    flags[1, th.DONE] = 1  # ... and finished it (its output left at zero)
    status = pool(flags, th._NO_PROGRAM, 0, th.FINISH, address, block.ctypes.data, 3, 100, 100)
    assert status == 0 and flags[0, th.STATE] == th.IDLE
    want = [(x[::2].sum() + m[t % 2, 1]) * 0.5 + 2.0 for t in range(2)]
    np.testing.assert_allclose(out[:, 0], [*want, 0])  # parts 0 and 1 here, 2 not run again


_PARTS = """def kernel(out, x, m, scale, shift, flag, t, T):
    if flag and t == 1:
        raise ValueError("part 1 refused")
    out[t, 0] = (x[::2].sum() + m[t % m.shape[0], 1]) * scale + shift
    out[t, 1] = T
    return 0
"""


def _launchable(source=_PARTS):
    from lgc.backend.numba import launch
    from lgc.backend.numba.compile import load_kernel

    kernel = load_kernel(source, {"cache": True, "nogil": True, "error_model": "numpy"})
    out, x = np.zeros((3, 2), np.float32), np.arange(10.0)
    m = np.arange(12, dtype=np.float32).reshape(4, 3)[::2]  # a strided 2-D view
    args = (out, x, m, np.float32(0.5), 2.0, False)
    kernel(*args, 0, 1)
    sig = kernel.signatures[0]
    return kernel, sig, args, launch.trampoline(kernel, sig), launch.pack(sig, args)


@pytest.mark.parametrize("linger", [0, None], ids=["workers-sleep", "workers-watch"])
def test_a_launched_call_runs_every_part_from_the_workers_compiled_loop(monkeypatch, linger):
    """A prepared call packed into a block and run through a trampoline: every part sees its
    (t, T) and the arguments as passed (a strided 2-D view, float32 and float64 scalars, a
    bool), whether the workers are still watching or asleep (woken by the poster); Python
    calls and launched ones alternate on the same workers."""
    from lgc.backend.numba import launch, threads

    if linger is not None:
        monkeypatch.setattr(threads, "LINGER_CYCLES", linger)
    kernel, sig, args, address, block = _launchable()
    out, x, m = args[:3]
    assert launch.trampoline(kernel, sig) == address  # made once per overload
    for count in (2, 3, 2):
        out[:] = 0
        assert threads.launch(address, block.ctypes.data, count) == 0
        want = [((x[::2].sum() + m[t % 2, 1]) * 0.5 + 2.0, count) for t in range(count)]
        np.testing.assert_allclose(out[:count], want)
        seen: list = []
        threads.run(lambda t, n, seen=seen: seen.append((t, n)), count)
        assert sorted(seen) == [(t, count) for t in range(count)]


def test_trampolines_machine_code_is_cached_and_calls_each_its_own_kernel(tmp_path,
                                                                           monkeypatch):
    """The trampolines' machine code depends on the kernels' signatures only (each calls the
    address in its slot), so it is cached on disk by them: kernels of the same signature
    built apart load the cached code, no IR built, and each trampoline calls its own kernel
    (two engines with the same code, different slots)."""
    from lgc.backend.numba import launch, threads
    from lgc.backend.numba.compile import load_kernel

    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    sources = [f"def kernel(out, x, t, T):\n    out[t] = x[t] * {c}\n    return 0\n"
               for c in (3.0, -5.0)]
    x = np.arange(1.0, 3.0)
    built, real = [], launch._module
    monkeypatch.setattr(launch, "_module", lambda *a: built.append(1) or real(*a))
    addresses, outs = [], []
    for source in sources:
        kernel = load_kernel(source, {"nogil": True})
        out = np.zeros(2)
        kernel(out, x, 0, 1)
        sig = kernel.signatures[0]
        addresses.append(launch.trampoline(kernel, sig))
        outs.append((out, launch.pack(sig, (out, x))))
    assert built == [1] and len(list((tmp_path / "trampolines").iterdir())) == 1
    for (out, block), address, c in zip(outs, addresses, (3.0, -5.0)):
        out[:] = 0
        assert threads.launch(address, block.ctypes.data, 2) == 0
        np.testing.assert_array_equal(out, x * c)


def test_a_programs_launches_are_prepared_together_and_agree_with_the_reference(monkeypatch):
    """After the first call, a program's threaded steps are launched through trampolines,
    made for all of them at once (one compile), and give the reference's results."""
    from lgc.backend.numba import launch, runtime

    made = []
    real = launch.trampolines
    monkeypatch.setattr(launch, "trampolines", lambda ks: made.append(len(ks)) or real(ks))
    x, y = RNG.normal(size=(256, 128)), RNG.normal(size=(128, 128))
    b = Builder(Graph("two"))
    xv, yv = emit_inputs(b, [x, y])
    h = b.emit("tanh", b.emit("matmul", xv, yv))
    r = b.emit("reduce_sum", b.emit("mul", h, h), axes=(0,))
    b.graph.outputs = [b.emit("sin", r)]  # a step of its own: r's is prepared
    exe = NumbaExecutable(b.graph)
    for _ in range(3):
        x = RNG.normal(size=x.shape)
        np.testing.assert_allclose(exe([x, y])[0], run_graph(b.graph, [x, y])[0],
                                   **TOLERANCE["f64"])
    launched = [c for _, c in exe._bound if isinstance(c, runtime.Launch)]
    assert len(launched) >= 2 and all(c.address for c in launched)
    assert len(launched) in made  # the first prepared asked for all of them at once


def test_a_call_that_is_not_prepared_is_launched_on_arguments_packed_for_it():
    """A threaded step whose arrays change from call to call (an input too big to stage, an
    output handed to the caller) runs its first call through Python, then is launched on a
    block packed for each call: each call computes on its own arrays."""
    from lgc.backend.numba import runtime
    from lgc.ops.base import PYTHON_CALL_MIN_ELEMENTS

    x = RNG.normal(size=(PYTHON_CALL_MIN_ELEMENTS // 256, 256))
    b = Builder(Graph("fresh"))
    (xv,) = emit_inputs(b, [x])
    b.graph.outputs = [b.emit("tanh", xv)]
    exe = NumbaExecutable(b.graph)
    ((step, call),) = exe._bound
    assert call is None and isinstance(step.fn, runtime.Threaded) and not step.fn.small
    outs = []
    for _ in range(3):
        x = RNG.normal(size=x.shape)
        outs.append((exe([x])[0], np.tanh(x)))
    assert step.fn.address
    for got, want in outs:
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_a_launched_part_that_raises_is_reported_and_the_pool_goes_on():
    """The trampoline returns the kernel's error status instead of losing it; the runtime's
    prepared call then raises the kernel's own error (from a run through Python)."""
    from lgc.backend.numba import launch, runtime, threads

    kernel, sig, args, address, _ = _launchable()
    failing = launch.pack(sig, (*args[:5], True))
    assert threads.launch(address, failing.ctypes.data, 2) != 0
    assert threads.launch(address, launch.pack(sig, args).ctypes.data, 2) == 0
    fc = runtime.FastCall(kernel)
    call = runtime.Threaded(fc, 2).bind((*args[:5], True))
    fc(*args, 0, 1)  # the entry point and signature known
    call.block, call.block_address, call.address = failing, failing.ctypes.data, address
    with pytest.raises(ValueError, match="part 1 refused"):
        call()


@pytest.mark.parametrize("linger", [0, None], ids=["workers-sleep", "workers-watch"])
def test_a_program_of_launches_runs_in_order_and_stops_at_a_part_that_raises(monkeypatch,
                                                                             linger):
    """`threads.launch_program` runs its rows one after another from compiled code, each on
    its own number of threads, whether the workers watch or sleep between calls (a sleeping
    one is woken through Python and the program goes on); a row whose part raises stops the
    program there: its index comes back and the rows after it do not run."""
    from lgc.backend.numba import launch, threads

    if linger is not None:
        monkeypatch.setattr(threads, "LINGER_CYCLES", linger)
    kernel, sig, args, address, _ = _launchable()
    outs = [np.zeros((3, 2), np.float32) for _ in range(4)]
    blocks = [launch.pack(sig, (o, *args[1:])) for o in outs]
    counts = [1, 3, 2, 3]
    program = np.array([(address, b.ctypes.data, c, 0) for b, c in zip(blocks, counts)],
                       np.int64)
    x, m = args[1], args[2]
    for _ in range(3):
        for o in outs:
            o[:] = -1
        assert threads.launch_program(program, 3) == 4
        for o, c in zip(outs, counts):
            want = [((x[::2].sum() + m[t % 2, 1]) * 0.5 + 2.0, c) for t in range(c)]
            np.testing.assert_allclose(o[:c], want)
            assert (o[c:] == -1).all()  # no part past the row's count
    failing = launch.pack(sig, (outs[2], *args[1:5], True))
    program[2, 1] = failing.ctypes.data
    for o in outs:
        o[:] = -1
    assert threads.launch_program(program, 3) == 2
    assert (outs[1][:, 1] == 3).all() and (outs[3] == -1).all()


def test_a_programs_prepared_calls_run_as_runs_and_still_raise_their_own_errors():
    """After its first calls, an executable's consecutive prepared calls (one-thread kernels
    and threaded ones) become runs of one compiled call each, with the reference's results;
    a kernel that raises in a run still raises its own error."""
    from lgc.backend.numba import runtime

    x, y = RNG.normal(size=(256, 128)), RNG.normal(size=(128, 128))
    b = Builder(Graph("runs"))
    xv, yv = emit_inputs(b, [x, y])
    h = b.emit("tanh", b.emit("matmul", xv, yv))  # threaded
    r = b.emit("reduce_sum", b.emit("mul", h, h), axes=(0,))
    s = b.emit("sin", b.emit("reduce_sum", r, axes=(0,)))  # small: one thread
    b.graph.outputs = [b.emit("add", h, s)]  # handed out: written per call, after the runs
    exe = NumbaExecutable(b.graph)
    for _ in range(4):  # y pinned after two calls: the runs are made again
        x = RNG.normal(size=x.shape)
        # absolute: sin of a sum of 32,768 squares carries that sum's rounding (~1e-12)
        np.testing.assert_allclose(exe([x, y])[0], run_graph(b.graph, [x, y])[0], atol=1e-9)
    runs = [c for _, c in exe._calls if isinstance(c, runtime.Run)]
    assert runs and exe.stats["python_calls"] < exe.stats["steps_per_call"]
    assert {c.threaded.count for r in runs for c in r.calls} == {1, 2}
    assert not any(isinstance(c, runtime.Launch) and c.threaded.count == 1
                   for _, c in exe._bound)  # alone, a one-thread call is called directly
    kernel, sig, args, address, _ = _launchable()
    fc = runtime.FastCall(kernel)
    fc(*args, 0, 1)
    calls = [runtime.Threaded(fc, n).bind((*args[:5], n == 2)) for n in (1, 2, 1)]
    for c in calls:
        c.block = runtime.launch.pack(sig, c.args)
        c.block_address, c.address = c.block.ctypes.data, address
    with pytest.raises(ValueError, match="part 1 refused"):
        runtime.Run(calls)()


def test_a_small_output_is_computed_in_a_buffer_and_handed_out_as_a_copy(monkeypatch):
    """A loss-sized output written by a kernel gets a buffer like any value (its step is
    prepared and joins the run), and each call hands out a copy of it: a result the caller
    kept is never overwritten. Every kernel's trampoline is made in one build."""
    from lgc.backend.numba import launch, runtime

    made = []
    real = launch.trampolines
    monkeypatch.setattr(launch, "trampolines", lambda ks: made.append(len(ks)) or real(ks))
    x = RNG.normal(size=(64, 32))
    b = Builder(Graph("loss"))
    (xv,) = emit_inputs(b, [x])
    h = b.emit("tanh", xv)
    loss = b.emit("reduce_sum", b.emit("mul", h, h), axes=(0, 1))
    b.graph.outputs = [b.emit("sin", loss), b.emit("exp", xv)]
    exe = NumbaExecutable(b.graph)
    assert len(exe._copy_out) == 1 and exe._copy_out[0] == 0
    kept = []
    for _ in range(4):
        x = RNG.normal(size=x.shape)
        out = exe([x])
        kept.append((out[0], np.sin((np.tanh(x) ** 2).sum())))
    assert all(c is not None for _, c in exe._bound[:2])  # the loss's steps are prepared
    for got, want in kept:
        np.testing.assert_allclose(got, want, rtol=1e-12)
    assert made[0] == len(exe._split) == 3  # the first build makes them all
    assert isinstance(exe._calls[0][1], runtime.Run)


def test_only_arrays_and_numbers_are_packed_for_a_trampoline():
    from numba import types

    from lgc.backend.numba import launch

    _, sig, args, _, block = _launchable()
    assert launch.packable(sig)
    assert block.size == sum(5 + 2 * a.ndim for a in args[:3]) + 3
    assert not launch.packable((types.UniTuple(types.float64, 2), types.int64, types.int64))
    with pytest.raises(TypeError, match="expected"):
        launch.pack(sig, (args[1], *args[1:]))  # a 1-D array where a 2-D one goes


def test_split_loop_parts_for_threads_and_a_plain_range_serial():
    from lgc.ops.base import split_loop

    template = "def kernel(y, x):\n    for j in LOOP(y.shape[0]):\n        y[j] = x[j]\n"
    serial, threaded = split_loop(template, 1), split_loop(template, 2)
    assert serial.startswith("def kernel(y, x, t, T):") and "range(y.shape[0])" in serial
    assert "range(t * y.shape[0] // T, (t + 1) * y.shape[0] // T)" in threaded
    ns: dict = {}
    exec(threaded, ns)
    y, x = np.zeros(7), np.arange(7.0)
    for t in range(3):
        ns["kernel"](y, x, t, 3)
    np.testing.assert_array_equal(y, x)  # the parts cover the range exactly once


def test_a_fused_kernel_with_twenty_arrays_still_vectorizes(tmp_path, monkeypatch):
    """LLVM gives up vectorizing a loop over many arrays unless allowed more overlap checks
    (compile.LLVM_OPTIONS): an LSTM step's gate kernel has ~20 operands and outputs."""
    import re

    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))  # compiled here, so its asm is readable
    monkeypatch.setenv("LGC_COMPILE_WORKERS", "0")
    b = Builder(Graph("chain"))
    xs = [b.input(TensorType("f32", (64, 32)), f"x{k}") for k in range(10)]
    v, outs = xs[0], []
    for k, x in enumerate(xs[1:]):
        v = b.emit("mul" if k % 2 else "add", v, x)
        outs.append(v)
    b.graph.outputs = outs + [b.emit("exp", v)]
    exe = NumbaExecutable(b.graph)
    (k,) = exe.kernels
    assert k.source.count("] = ") == 10 and "a9" in k.source  # 10 outputs, 10 inputs
    asm = "\n".join(k.fn.inspect_asm().values())
    assert re.search(r"\bv(add|mul)ps\s+%[yz]mm", asm), "the fused loop runs scalar"


def test_thread_pool_works_in_a_forked_child():
    """A child forked after the pool started (multiprocessing's default on Linux) must not
    wait on the parent's threads, which do not exist there, through Python calls or
    launched ones (the parent's trampolines are the child's too). In a fresh interpreter:
    forking this test process (which may hold JAX's threads) is what the warning says not
    to do."""
    import subprocess
    import sys

    script = (
        "import os, sys, time\n"
        "import numpy as np\n"
        "from lgc.backend.numba import launch, threads\n"
        "from lgc.backend.numba.compile import load_kernel\n"
        "k = load_kernel('def kernel(y, t, T):\\n    y[t] = T\\n    return 0\\n',\n"
        "                {'cache': True, 'nogil': True})\n"
        "y = np.zeros(2, np.int64)\n"
        "k(y, 0, 1)\n"
        "address = launch.trampoline(k, k.signatures[0])\n"
        "block = launch.pack(k.signatures[0], (y,))\n"
        "threads.run(lambda t, count: None, 2)\n"  # the parent's pool exists
        "threads.launch(address, block.ctypes.data, 2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    seen = []\n"
        "    threads.run(lambda t, count: seen.append(t), 2)\n"
        "    y[:] = 0\n"
        "    threads.launch(address, block.ctypes.data, 2)\n"
        "    os._exit(0 if sorted(seen) == [0, 1] and list(y) == [2, 2] else 1)\n"
        "for _ in range(200):\n"
        "    done, status = os.waitpid(pid, os.WNOHANG)\n"
        "    if done:\n"
        "        sys.exit(os.waitstatus_to_exitcode(status))\n"
        "    time.sleep(0.05)\n"
        "os.kill(pid, 9)\n"
        "sys.exit('the forked child hung on the parent thread pool')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]


def test_blas_thread_limit_covers_scipys_blas_loaded_late():
    """Conv kernels call SciPy's BLAS; if the list of BLAS libraries was made before SciPy's
    was loaded, binding it must renew the list, or SciPy's threads spin against the kernels'."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from lgc.backend.numba import blas

    blas.bind_scipy()
    controllers = [lc for lc in threadpoolctl.ThreadpoolController().lib_controllers
                   if lc.user_api == "blas"]
    # as if made before the last one was loaded
    blas._BLAS[:] = [blas._Threads(lc) for lc in controllers[:-1]] + [None]
    blas._BLAS_SEES_SCIPY[0] = False
    blas.bind_scipy()
    before = blas.set_threads(1)
    try:
        assert all(lc.num_threads == 1 for lc in controllers)
    finally:
        blas.set_threads(before)


def test_blas_threads_are_set_by_openblas_itself_from_the_main_thread():
    """From the main thread OpenBLAS's own functions set its thread count (threadpoolctl's
    API costs 4x as much, twice a call): every BLAS library gets the count and the previous
    one comes back. From another thread threadpoolctl decides (it lets one thread alone
    change OpenBLAS's pool), as before."""
    import threading

    pytest.importorskip("threadpoolctl")
    from lgc.backend.numba import blas

    blas.bind_scipy()
    blas.set_threads(blas.set_threads(1))  # the list made
    libs = [lib for lib in blas._BLAS if lib is not None]
    assert libs and any(lib.raw is not None for lib in libs)  # OpenBLAS on pthreads here
    start = libs[0].lc.num_threads
    before = blas.set_threads(1)
    try:
        assert all(lib.lc.num_threads == 1 for lib in libs)
    finally:
        assert blas.set_threads(before) == 1
    assert before == start == libs[0].lc.num_threads
    raw_calls = []
    for lib in libs:
        if lib.raw is not None:
            get, put = lib.raw
            lib.raw = (lambda get=get: raw_calls.append("get") or get(),
                       lambda n, put=put: raw_calls.append("set") or put(n))
    try:
        worker = threading.Thread(target=lambda: blas.set_threads(blas.set_threads(1)))
        worker.start()
        worker.join()
        assert raw_calls == []
        blas.set_threads(blas.set_threads(1))
        assert raw_calls[:2] == ["get", "set"]
    finally:
        blas._BLAS.clear()  # found again, as they are


def _threaded_cases():
    """Lowerings big enough (2^18 elements of work) to run on several threads."""
    pool = {"pool": (2, 2), "stride": (2, 2), "padding": ((0, 0), (0, 0))}
    big = (32, 32, 8, 64)
    yield pytest.param("maxpool", [_distinct(*big)], pool, id="maxpool")
    yield pytest.param("avgpool", [RNG.normal(size=big)], {**pool, "count_pad": True},
                       id="avgpool")
    yield pytest.param("pad", [RNG.normal(size=big)], {"pads": ((1, 2), (2, 1), (0, 0), (0, 0)),
                                                       "mode": "symmetric-include-edge"},
                       id="pad")
    yield pytest.param("pad_adjoint", [RNG.normal(size=(35, 35, 8, 64))],
                       {"pads": ((1, 2), (2, 1), (0, 0), (0, 0)), "mode": "circular"},
                       id="pad_adjoint")
    yield pytest.param("softmax", [RNG.normal(size=(10, 30000))], {"axis": 0}, id="softmax")


@pytest.mark.parametrize("name,args,attrs", _threaded_cases())
def test_threaded_lowerings_match_reference(name, args, attrs):
    g, args = _one_op(name, args, attrs, "f32")
    exe = NumbaExecutable(g)
    assert exe.stats["threads"] == "kernels"  # the parts-of-the-loop path ran
    for u, v in zip(exe(args), run_graph(g, args)):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def _lstm_case(t, n, h, d=3):
    x, w, r = RNG.normal(size=(d, t * n)), RNG.normal(size=(4 * h, d)), RNG.normal(size=(4 * h, h))
    return (x, w * 0.3, r * 0.1, RNG.normal(size=(4 * h, 1)), RNG.normal(size=(h, n)),
            RNG.normal(size=(h, n)))


# (groups of the step block's columns, parts of the hidden units) for each batch: a group
# takes whole registers of columns, so only the packed batches have more than one
_GRIDS = {6: [(1, 2), (1, 3)], 19: [(1, 3), (2, 1), (3, 1), (2, 2)], 33: [(1, 2), (2, 1)]}


@pytest.mark.parametrize("state,gate", [("tanh", "sigmoid"), ("softsign", "hard-sigmoid")])
@pytest.mark.parametrize("dtype,batch,grid", [
    pytest.param(dtype, batch, grid, id=f"{kind}-{grid[0]}x{grid[1]}")
    for dtype, batch, kind in [("f64", 6, "blas"), ("f64", 19, "panels-f64"),
                               ("f32", 33, "panels-f32")] for grid in _GRIDS[batch]])
def test_lstm_recurrence_split_between_threads_matches_reference(monkeypatch, state, gate,
                                                                  dtype, batch, grid):
    """The recurrence kernels' threads as a grid: groups of the batch's columns that never
    meet, each split into parts of the hidden units that meet at a barrier every step (here
    up to 3 groups or parts: blocks of 21/21/22 units; each stages its rows of the next
    step's input). A block or column range off by one, a missing barrier or a buffer reused
    too early (the step blocks; the backward's chunks of dZ, made small here so that a call
    has several, a step each at the smallest) gives wrong states or gradients. A batch of a
    register's width or more runs the per-step products through `panel_gemm` on step blocks
    padded to whole registers (19 -> 24 columns of float64, 33 -> 48 of float32: groups of
    one, two and three registers, the last one's columns part padding); a smaller one
    through BLAS."""
    from lgc.backend.numba.intrinsics import PANEL_ROWS, VECTOR_BYTES
    from lgc.ops import lstm

    lanes = VECTOR_BYTES // (8 if dtype == "f64" else 4)
    assert (batch >= lanes) == (lstm._padded(batch, dtype.replace("f", "float")) > batch)
    monkeypatch.setattr(lstm, "_grid", lambda hidden, batch, dtype, groups_first: grid)
    monkeypatch.setattr(lstm, "CHUNK_COLUMNS", 48)
    x, w, r, bias, h0, c0 = _lstm_case(5, batch, 64)
    attrs = {"state": state, "gate": gate}
    g, args = _one_op("lstm_seq", [x, w, r, bias, h0, c0], attrs, dtype)
    (node,) = [n for n in g.nodes if n.op.name == "lstm_seq"]
    assert ("panel_gemm(" in node.op.lower_numba(node).source) == (batch >= lanes)
    exe = NumbaExecutable(g)
    for k in range(3):  # calls prepared from the second on: the barriers' counters carry over
        moved = [args[0] * (1 + 0.25 * k), *args[1:]]
        for u, v in zip(exe(moved), run_graph(g, moved)):
            np.testing.assert_allclose(u, v, **TOLERANCE[dtype])
    states = run_graph(g, args)
    s, c, a = states
    cts = [RNG.normal(size=s.shape), RNG.normal(size=c.shape), RNG.normal(size=a.shape)]
    g, args = _one_op("lstm_seq_backward", [a, c, args[2], s, args[0], *cts],
                      {**attrs, "has_dc": True, "has_da": True}, dtype)
    (node,) = [n for n in g.nodes if n.op.name == "lstm_seq_backward"]
    lowering = node.op.lower_numba(node)
    assert ("panel_gemm(" in lowering.source) == (batch >= lanes)
    # the kernel's scratch does not grow with its threads: one accumulator of [dR dW]'s size
    acc = lowering.args([None] * len(node.inputs), [None] * len(node.outputs))[-3]
    assert acc.ndim == 2 and acc.shape[0] == -(-4 * 64 // PANEL_ROWS) * PANEL_ROWS
    exe = NumbaExecutable(g)
    for k in range(3):  # the planned buffers and the lowering's scratch reused
        moved = [*args[:5], *(ct * (1 - 0.25 * k) for ct in args[5:])]
        for u, v in zip(exe(moved), run_graph(g, moved)):
            np.testing.assert_allclose(u, v, **TOLERANCE[dtype])


def test_a_barrier_kernel_slow_on_its_threads_runs_on_one_for_a_while():
    """`Barriers.adapt`, the policy for kernels whose threads meet at step barriers: fast
    calls keep the threads; two calls in a row slower than one thread would be (count times
    the fastest, until one thread's time is measured) move the kernel to one thread for
    SERIAL_CALLS calls, the counters made equal before the threads come back; slow again at
    once -> twice as long on one thread; a fast call in between -> back to the first length."""
    from lgc.backend.numba import runtime
    from lgc.backend.numba.intrinsics import SYNC_STRIDE

    threaded = runtime.Threaded(None, 2)
    th = runtime.Barriers(threaded, np.zeros(2 * SYNC_STRIDE, np.int64))
    assert th.adapt(0) == 2  # no time measured: nothing learnt
    assert [th.adapt(t) for t in (100, 150, 190, 250, 210)] == [2, 2, 2, 2, 1]
    th.sync[0] = 7  # a call on one thread advanced the first counter only
    serial = [th.adapt(t) for t in [180] + [150] * (runtime.SERIAL_CALLS - 1)]
    assert serial == [1] * (runtime.SERIAL_CALLS - 1) + [2] and th.serial == 150
    assert list(th.sync[::SYNC_STRIDE]) == [7, 7]
    assert [th.adapt(t) for t in (160, 170)] == [2, 1]  # slower than one thread (150)
    assert th.backoff == 2 * runtime.SERIAL_CALLS
    for _ in range(th.backoff):
        th.adapt(150)
    assert threaded.parts == 2 and [th.adapt(t) for t in (120, 160, 170)] == [2, 2, 1]
    assert th.backoff == runtime.SERIAL_CALLS  # a fast call came first


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_lstm_kernels_moved_between_one_thread_and_their_threads_agree(monkeypatch, backward):
    """An LSTM kernel's calls on one thread, then on its threads again (the runtime's answer
    to load): every call gives the reference's results (the barriers' counters made equal
    when the threads take it back). The kernels run in the executable's runs, which record
    each call's cycles."""
    import platform

    from lgc.backend.numba import runtime, threads
    from lgc.ops import lstm

    # the backward kernel's grid two groups of columns (8 and 11 of 19, the second's padded
    # to 16: a call on one thread pads the 19 to 24, so the padding lies elsewhere), the
    # forward's two parts of the hidden units
    monkeypatch.setattr(lstm, "_grid",
                        lambda hidden, batch, dtype, groups_first: (2, 1) if groups_first
                        else (1, 2))
    monkeypatch.setattr(runtime, "SERIAL_CALLS", 2)
    # the workers watch for calls for ~40 ms, not ~0.4: a call that finds them asleep
    # (woken through Python) has no time recorded, and a slow machine would see only such
    monkeypatch.setattr(threads, "LINGER_CYCLES", 10 ** 8)
    x, w, r, bias, h0, c0 = _lstm_case(4, 19, 32)
    name, args, attrs = "lstm_seq", [x, w, r, bias, h0, c0], {}
    if backward:
        s, c, a = run_graph(_one_op(name, args, attrs, "f64")[0], args)
        cts = [RNG.normal(size=s.shape), RNG.normal(size=c.shape), RNG.normal(size=a.shape)]
        name, args = "lstm_seq_backward", [a, c, r, s, x, *cts]
        attrs = {"has_dc": True, "has_da": True}
    # each output weighed by random numbers and summed: intermediates, so the call is
    # prepared (and joins a run)
    b = Builder(Graph("weighed"))
    outs = b.emit_node(name, *emit_inputs(b, args), **attrs).outputs
    weights = [RNG.normal(size=o.shape) for o in outs]
    b.graph.outputs = [b.emit("reduce_sum", b.emit("mul", o, u), axes=tuple(range(o.type.ndim)))
                       for o, u in zip(outs, emit_inputs(b, weights, "u"))]
    g, args = b.graph, [*args, *weights]
    exe = NumbaExecutable(g)
    inputs = [[args[0] * (1 + 0.1 * k), *args[1:]] for k in range(16)]
    wanted = [run_graph(g, moved) for moved in inputs]
    seen, got, took = [], [], []
    for k, moved in enumerate(inputs):  # back to back: the workers stay awake
        if k in (6, 11):  # as if two slow calls had just come
            th = exe._adaptive[0][2]
            th.slow, th.fast = 1, 1
        got.append(exe(moved))
        if exe._adaptive:  # from the second call on (prepared calls in runs)
            ((program, row, _),) = exe._adaptive
            seen.append(int(program[row, 2]))
            took.append(int(program[row, 3]))
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert max(took) > 0  # the calls' cycles
    for outs, want in zip(got, wanted):
        for u, v in zip(outs, want):
            np.testing.assert_allclose(u, v, **TOLERANCE["f64"])
    first = seen.index(1)  # one thread, then the threads again after SERIAL_CALLS calls
    assert 2 in seen[first:first + runtime.SERIAL_CALLS + 1], seen


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panel_gemm_matches_numpy(dtype):
    """intrinsics.panel_gemm: rows packed by pack_row (a last panel part zeros), columns in
    blocks of two registers and of one, views with a row stride of their own; operands that
    do not fit the panels are refused."""
    import numba

    from lgc.backend.numba.intrinsics import PANEL_ROWS, VECTOR_BYTES, pack_row, panel_gemm

    @numba.njit
    def run(x, y, z):
        ap = np.zeros((-(-x.shape[0] // PANEL_ROWS), x.shape[1] * PANEL_ROWS), x.dtype)
        for i in range(x.shape[0]):
            pack_row(ap, i, 0, x[i, :3])
            pack_row(ap, i, 3, x[i, 3:])
        panel_gemm(ap, y, z)

    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    for m, k, n in [(1, 4, lanes), (PANEL_ROWS + 3, 7, 3 * lanes), (2 * PANEL_ROWS, 40, 2 * lanes)]:
        x, y = RNG.normal(size=(m, k)).astype(dtype), RNG.normal(size=(k, n + 5)).astype(dtype)
        z = np.full((-(-m // PANEL_ROWS) * PANEL_ROWS, n + 2), np.nan, dtype)
        run(x, y[:, 5:], z[:, :n])
        np.testing.assert_allclose(z[:m, :n], x @ y[:, 5:], **tol)
        assert np.isnan(z[:, n:]).all()  # nothing written past the columns asked for
    with pytest.raises(ValueError, match="do not fit"):  # columns not whole registers
        run(x, y[:, :n - 1], np.zeros((z.shape[0], n - 1), dtype))


def test_panel_kernels_with_the_narrower_registers(tmp_path):
    """The panel kernels as a machine without AVX-512 runs them (32-byte registers, panels of
    4 rows), in a subprocess that asks for them: the panel tests and the recurrence kernels
    on packed batches pass there too; kernels built so are cached under their own keys."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "LGC_VECTOR_BYTES": "32", "LGC_CACHE_DIR": str(tmp_path)}
    probe = ("from lgc.backend.numba import intrinsics as i; from lgc.backend.numba import "
             "compile as c; print(i.VECTOR_BYTES, i.PANEL_ROWS, c._machine()['vector_bytes'])")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["32", "4", "32"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/test_numba_kernels.py", "-k",
                        "panel_gemm or (recurrence_split and tanh and not blas and 2)"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panel_gemm_add_accumulates_from_rows_where_they_are(dtype):
    """intrinsics.panel_gemm_add: c[:M] += a @ b with a read in place (a row block of a wider
    array, rows strided), its last rows short of a panel completed with zeros; c's rows past
    M are scratch and its columns past the block untouched."""
    from lgc.backend.numba.intrinsics import PANEL_ROWS, VECTOR_BYTES, panel_gemm_add

    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    for m, k, n in [(PANEL_ROWS, 9, lanes), (2 * PANEL_ROWS + 3, 33, 3 * lanes), (1, 1, lanes)]:
        wide = RNG.normal(size=(m + 2, k + 4)).astype(dtype)
        x, y = wide[1:m + 1, 2:k + 2], RNG.normal(size=(k, n)).astype(dtype)
        z = RNG.normal(size=(-(-m // PANEL_ROWS) * PANEL_ROWS, n + 1)).astype(dtype)
        want = z[:m, :n] + x @ y
        edge = z[:, n].copy()
        panel_gemm_add(x, y, z[:, :n])
        np.testing.assert_allclose(z[:m, :n], want, **tol)
        np.testing.assert_array_equal(z[:, n], edge)
    x = RNG.normal(size=(PANEL_ROWS + 1, 3)).astype(dtype)
    with pytest.raises(ValueError, match="do not fit"):  # c lacks the last panel's rows
        panel_gemm_add(x, RNG.normal(size=(3, lanes)).astype(dtype),
                       np.zeros((PANEL_ROWS + 1, lanes), dtype))


def test_lstm_kernels_split_big_recurrences_between_threads():
    """A train-step-sized LSTM (H = 128, N = 32) runs on every kernel thread: the backward
    kernel's as groups of the batch's columns first (no barrier between them; two registers'
    worth of float32 columns make two groups), the forward's as parts of the hidden units;
    a tiny one on one thread (the pool's wake-up would cost more than it saves)."""
    import numba

    from lgc.backend.numba.intrinsics import VECTOR_BYTES
    from lgc.ops.lstm import _grid

    threads, regs = numba.get_num_threads(), 32 * 4 // VECTOR_BYTES
    groups = min(threads, regs)
    assert _grid(128, 32, np.float32, groups_first=True) == (groups, threads // groups)
    assert _grid(128, 32, np.float32, groups_first=False) == (1, threads)
    assert _grid(3, 2, np.float32, groups_first=True) == (1, 1)
    assert _grid(3, 2, np.float32, groups_first=False) == (1, 1)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("shape", [(101, 600, 160), (40, 800, 301)], ids=["rows", "columns"])
def test_matmul_split_between_kernel_threads_matches_reference(transposed, shape):
    """A big matmul runs as one single-threaded
    GEMM per block of rows of the output (101 rows: blocks of 50 and 51), or of columns when
    it is wider than tall (301 columns); x and y may be transposed views (no copies)."""
    m, k, n = shape
    x, y = RNG.normal(size=(m, k)), RNG.normal(size=(k, n))
    b = Builder(Graph("rows"))
    xv, yv = emit_inputs(b, [x.T.copy(), y.T.copy()] if transposed else [x, y])
    if transposed:
        xv, yv = (b.emit("transpose", v, perm=(1, 0)) for v in (xv, yv))
    b.graph.outputs = [b.emit("matmul", xv, yv)]
    exe = NumbaExecutable(b.graph)
    assert exe.stats["threads"] == "kernels"
    args = [x.T.copy(), y.T.copy()] if transposed else [x, y]
    np.testing.assert_allclose(exe(args)[0], x @ y, **TOLERANCE["f64"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["plain", "x_transposed", "y_transposed"])
@pytest.mark.parametrize("shape", [(256, 64, 128), (100, 200, 120), (37, 50, 45), (10, 128, 256)],
                         ids=["panels", "threaded_ragged", "ragged", "few_rows"])
def test_matmul_on_the_panel_kernel_matches_reference(shape, layout, dtype):
    """Products of a fully connected layer's sizes run on the panel kernel (`panel_pays`):
    whole panels of rows by whole registers of columns, the ragged rest by BLAS, split
    between the threads in whole panels (or registers); a transposed y (a weight gradient's
    dY·Xᵀ) is made contiguous in the node's scratch first, each thread its own columns."""
    from lgc.backend.numba.intrinsics import panel_pays

    m, k, n = shape
    assert panel_pays.py_func(m, k, n, np.dtype(dtype).itemsize)
    x, y = RNG.normal(size=(m, k)).astype(dtype), RNG.normal(size=(k, n)).astype(dtype)
    stored = [x.T.copy() if layout == "x_transposed" else x,
              y.T.copy() if layout == "y_transposed" else y]
    b = Builder(Graph("panel"))
    xv, yv = emit_inputs(b, stored)
    if layout == "x_transposed":
        xv = b.emit("transpose", xv, perm=(1, 0))
    if layout == "y_transposed":
        yv = b.emit("transpose", yv, perm=(1, 0))
    b.graph.outputs = [b.emit("matmul", xv, yv)]
    exe = NumbaExecutable(b.graph)
    tol = TOLERANCE["f32" if dtype == np.float32 else "f64"]
    for _ in range(2):  # the second call prepared, on the node's own scratch
        np.testing.assert_allclose(exe(stored)[0], x.astype(np.float64) @ y, **tol)


def test_matmul_kernel_compiles_once_for_every_layout():
    """A layer's three products (x·y, xᵀ·y, x·yᵀ: forward, input and weight gradients) share
    one compiled matmul kernel: its arrays are typed with layout "A" (`Lowering.any_layout`),
    not once per layout combination (~0.25 s of a cold start each)."""
    x, y, dz = (RNG.normal(size=s).astype(np.float32) for s in [(96, 64), (64, 80), (96, 80)])
    b = Builder(Graph("three"))
    xv, yv, dv = emit_inputs(b, [x, y, dz])
    t = lambda v: b.emit("transpose", v, perm=(1, 0))  # noqa: E731
    b.graph.outputs = [b.emit("matmul", xv, yv), b.emit("matmul", t(xv), dv),
                       b.emit("matmul", dv, t(yv))]
    exe = NumbaExecutable(b.graph)
    for _ in range(2):  # the second call prepared
        for got, want in zip(exe([x, y, dz]), [x @ y, x.T @ dz, dz @ y.T]):
            np.testing.assert_allclose(got, want, **TOLERANCE["f32"])
    (fn,) = {id(k.fn): k.fn for k in exe.kernels if k.ops == ["matmul"]}.values()
    # (other tests' float64 products may share the dispatcher: same source)
    f32 = [sig for sig in fn.signatures if str(sig[0].dtype) == "float32"]
    assert [{a.layout for a in sig if hasattr(a, "layout")} for sig in f32] == [{"A"}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_transpose_into_matches_numpy(dtype):
    """intrinsics.transpose_into: register-square tiles transposed by shuffles, the ragged
    edges by blocks and elements, on views whose rows have unit stride; nothing outside the
    destination view written."""
    import numba

    from lgc.backend.numba.intrinsics import transpose_into

    run = numba.njit(lambda y, out: transpose_into(y, out))
    for n, k in [(256, 128), (37, 50), (16, 16), (3, 5), (128, 19), (20, 128), (0, 4)]:
        big = RNG.normal(size=(n, k + 7)).astype(dtype)
        out = np.full((k, n + 3), -1, dtype)
        run(big[:, 2:k + 2], out[:, 1:n + 1])
        np.testing.assert_array_equal(out[:, 1:n + 1], big[:, 2:k + 2].T)
        assert (out[:, 0] == -1).all() and (out[:, n + 1:] == -1).all()


def test_call_compiled_calls_at_the_address_and_propagates_errors():
    """intrinsics.call_compiled: a function compiled once, called from another at its address
    with arrays of any layout (taken as layout "A") and integers as int64; its result comes
    back and an exception it raises reaches the caller's caller."""
    import numba

    from lgc.backend.numba.intrinsics import call_compiled, compiled_address

    @numba.njit
    def callee(a, i):
        if i < 0:
            raise ValueError("callee: negative")
        return np.int64(a[i, 0] * 10 + a.shape[1])

    a = np.arange(12.0).reshape(4, 3)
    address = compiled_address(callee, (numba.typeof(a), numba.int32))

    @numba.njit
    def caller(address, a, i):
        return call_compiled(address, (a, i)) + 1

    assert caller(address, a, 2) == 6 * 10 + 3 + 1
    assert caller(address, a[:, ::2], 3) == 9 * 10 + 2 + 1  # a strided view: the same code
    with pytest.raises(ValueError, match="negative"):
        caller(address, a, -1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_on_strided_views_matches_numpy(dtype):
    """intrinsics.gemm: z = x @ y + beta z straight on views with a unit stride along either
    axis (C and F order, row blocks, column blocks, transposed blocks, vectors); an operand
    with neither is refused."""
    import numba

    from lgc.backend.numba.intrinsics import gemm

    a = numba.from_dtype(dtype)[:, :]  # one compile: every view as layout "A"

    @numba.njit(numba.void(a, a, a, numba.float64))
    def run(x, y, z, beta):
        gemm(x, y, z, beta)

    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12}
    for m, k, n in [(5, 3, 4), (1, 4, 6), (6, 4, 1), (7, 1, 5), (33, 17, 9)]:
        xs, ys = RNG.normal(size=(m, k)).astype(dtype), RNG.normal(size=(k, n)).astype(dtype)
        wide = np.concatenate([ys, ys], axis=1)
        for x in (xs, np.asfortranarray(xs), np.concatenate([xs, xs])[m:], xs[:, ::-1][:, ::-1]):
            for y in (ys, np.asfortranarray(ys), wide[:, :n], wide.T.copy().T[:, n:]):
                for beta in (0.0, 1.0):
                    z = RNG.normal(size=(m, n)).astype(dtype)
                    want = x @ y + beta * z
                    run(x, y, z, beta)
                    np.testing.assert_allclose(z, want, **tol)
        z = np.zeros((m, 2 * n), dtype)  # a column block of the output
        run(xs, ys, z[:, n:], 0.0)
        np.testing.assert_allclose(z[:, n:], xs @ ys, **tol)
        assert not z[:, :n].any()
    if min(m, k) > 1:
        with pytest.raises(ValueError, match="unit stride"):  # no unit stride: refused
            run(xs.repeat(2, axis=1)[:, ::2], ys, np.zeros((m, n), dtype), 0.0)


def test_step_barrier_raises_when_a_partner_never_arrives():
    """The recurrence kernels' per-step barrier: a thread whose partner failed (here: was never
    started) gets an error after its patience runs out, not a hang."""
    import numba

    from lgc.backend.numba.intrinsics import SYNC_STRIDE, step_barrier

    @numba.njit(nogil=True)
    def alone(sync):
        step_barrier(sync, 0, 2, 1, patience=1000)
        return 0

    @numba.njit(nogil=True)
    def in_group(sync, t, first, count):  # the threads first, ..., first + count - 1 only
        step_barrier(sync, t, count, 1, first, 1000)
        return 0

    with pytest.raises(RuntimeError, match="never arrived"):
        alone(np.zeros(2 * SYNC_STRIDE, np.int64))
    sync = np.zeros(2 * SYNC_STRIDE, np.int64)
    sync[SYNC_STRIDE] = 1  # the partner has finished step 1 already
    assert alone(sync) == 0
    sync = np.zeros(3 * SYNC_STRIDE, np.int64)
    assert in_group(sync, 1, 1, 1) == 0  # a group of one: thread 0 never waited for
    assert sync[SYNC_STRIDE] == 1 and sync[0] == 0
    with pytest.raises(RuntimeError, match="never arrived"):
        in_group(sync, 1, 1, 2)  # thread 2, its partner, never came
    sync[2 * SYNC_STRIDE] = 1
    assert in_group(sync, 1, 1, 2) == 0


def test_a_long_wait_at_the_step_barrier_leaves_the_core():
    """Past its spins, a thread waiting for its partner naps: a yield would hand a busy
    process sharing the cores the rest of its time slice (an LSTM train step beside two:
    240 ms). The wait uses a small share of the CPU time it lasts."""
    import time

    import numba

    from lgc.backend.numba.intrinsics import NAP_US, SYNC_STRIDE, step_barrier

    @numba.njit(nogil=True)
    def alone(sync, patience):
        step_barrier(sync, 0, 2, 1, patience=patience)
        return 0

    sync = np.zeros(2 * SYNC_STRIDE, np.int64)
    with pytest.raises(RuntimeError):
        alone(sync, 1)  # compiled (and failing at once) before it is timed
    wall, cpu = time.perf_counter(), time.thread_time()  # this thread's (not the pool's)
    with pytest.raises(RuntimeError, match="never arrived"):
        alone(sync, 100 * NAP_US)  # about 100 naps
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    assert wall > 100 * NAP_US * 1e-6 and cpu < 0.5 * wall, (wall, cpu)
