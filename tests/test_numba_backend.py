"""The Numba CPU backend against the reference interpreter: every op forward and VJP, fusion,
kernel source, the disk cache, shape-generic kernels and compile errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import lgc
from conftest import (
    TOLERANCE,
    assert_same,
    check_op_and_vjp,
    check_op_forward_float32,
    emit_inputs,
    registry_params,
)
from lgc.backend.numba import NumbaExecutable
from lgc.backend.reference import run_graph
from lgc.errors import CompileError, ShapeError
from lgc.ir.core import Builder, Graph

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("op", registry_params(lambda op: op.differentiable))
def test_op_and_vjp_compiled_match_reference(op):
    check_op_and_vjp(op, NumbaExecutable)


@pytest.mark.parametrize("op", registry_params(lambda op: op.pure and op.name != "fused"))
def test_op_forward_float32_compiled_matches_reference(op):
    check_op_forward_float32(op, NumbaExecutable)


def _mlp():
    rng = np.random.default_rng(0)
    params = {"W1": lgc.dlarray(rng.normal(size=(16, 8)).astype(np.float32) * 0.3),
              "b1": lgc.dlarray(np.zeros((16, 1), np.float32)),
              "W2": lgc.dlarray(rng.normal(size=(4, 16)).astype(np.float32) * 0.3),
              "b2": lgc.dlarray(np.zeros((4, 1), np.float32))}

    def model_loss(params, X, T):
        h = lgc.relu(lgc.fullyconnect(X, params["W1"], params["b1"]))
        Y = lgc.softmax(lgc.fullyconnect(h, params["W2"], params["b2"]))
        loss = lgc.crossentropy(Y, T)
        return loss, lgc.dlgradient(loss, params)

    def batch(n):
        X = lgc.dlarray(rng.normal(size=(8, n)).astype(np.float32), "CB")
        T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 4, n), 0, ClassNames=range(4)), "CB")
        return X, T

    return model_loss, params, batch


def test_compile_matches_reference_and_lower_shows_every_stage():
    model_loss, params, batch = _mlp()
    X, T = batch(32)
    cf = lgc.compile(model_loss, backend="numba")
    loss, grads = cf(params, X, T)
    ref_loss, ref_grads = lgc.compile(model_loss, backend="reference")(params, X, T)
    np.testing.assert_allclose(float(loss), float(ref_loss), **TOLERANCE["f32"])
    for k in params:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(ref_grads[k]),
                                   **TOLERANCE["f32"])
        assert grads[k].shape == params[k].shape
    low = cf.lower(params, X, T)
    assert "func @model_loss" in str(low.program)
    assert low.gradient_program is not None and "vjp(" in str(low.gradient_program)
    assert "fused" in str(low.optimized)
    assert low.kernels and all(k.ops and "def kernel" in k.source for k in low.kernels)
    assert low.source.count("def kernel") == len(low.kernels)
    s = low.stats
    assert s["n_kernels"] == len(low.kernels) < s["n_ops"]
    assert {"n_ops", "n_kernels", "compile_seconds", "cache_hits", "cache_misses"} <= set(s)


def test_new_batch_size_compiles_nothing_new():
    model_loss, params, batch = _mlp()
    cf = lgc.compile(model_loss, backend="numba")
    cf.lower(params, *batch(16))
    second = cf.lower(params, *batch(48))
    assert second.stats["cache_misses"] == 0
    assert second.stats["cache_hits"] == second.stats["n_kernels"] > 0


def test_fused_ir_and_kernel_source_golden():
    """The fused IR and generated source of a small MLP loss+gradient, reviewed like code.
    Regenerate with LGC_UPDATE_GOLDEN=1 after an intended change, and review the diff."""
    model_loss, params, batch = _mlp()
    low = lgc.compile(model_loss, backend="numba").lower(params, *batch(32))
    for name, text in [("mlp_fused.ir", str(low.optimized)), ("mlp_kernels.txt", low.source)]:
        path = GOLDEN / name
        if os.environ.get("LGC_UPDATE_GOLDEN"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text + "\n")
        assert path.read_text() == text + "\n", f"{name} changed; see the test's docstring"


def test_second_process_loads_kernels_from_disk(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, lgc
        x = lgc.dlarray(np.linspace(-1, 1, 12).reshape(3, 4), "CB")
        def f(x):
            y = lgc.sum(lgc.tanh(x) * 2.0 + lgc.exp(-x))
            return y, lgc.dlgradient(y, x)
        s = lgc.compile(f, backend="numba").lower(x).stats
        print(s["cache_hits"], s["cache_misses"], s["n_kernels"])
    """)
    env = {**os.environ, "LGC_CACHE_DIR": str(tmp_path)}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout.split() for _ in range(2)]
    (h1, m1, n1), (h2, m2, n2) = [[int(v) for v in r] for r in runs]
    assert m1 > 0 and h1 + m1 == n1  # a hit here is a kernel shared within the program
    assert h2 == n2 == n1 and m2 == 0
    assert list((tmp_path / "kernels").glob("k_*.py"))


def test_kernel_key_covers_the_generated_files_header(monkeypatch):
    """A kernel file is HEADER + source: a header importing other helpers makes another file
    (a file cached under the old key would name helpers the new header lacks, or the reverse)."""
    from lgc.backend.numba import compile as cmp

    before = cmp.kernel_key("def kernel(x):\n    return x\n", {"cache": True})
    monkeypatch.setattr(cmp, "HEADER", cmp.HEADER + "from math import pi\n")
    assert cmp.kernel_key("def kernel(x):\n    return x\n", {"cache": True}) != before


def test_cache_info_and_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("LGC_CACHE_DIR", str(tmp_path))
    x = lgc.dlarray(np.ones((2, 3)), "CB")
    lgc.compile(lambda x: lgc.sigmoid(x) * 3.0, backend="numba")(x)
    info = lgc.cache_info()
    assert info["dir"] == str(tmp_path) and info["kernels"] >= 1 and info["bytes"] > 0
    lgc.clear_cache()
    assert lgc.cache_info()["kernels"] == 0


def test_kernel_that_fails_to_compile_names_op_and_layer(monkeypatch):
    from lgc.ops.elementwise import Exp

    monkeypatch.setattr(Exp, "expr_cpu", "fast_exp({0}, 'oops')")  # the CPU spelling
    x = lgc.dlarray(np.ones((2, 3)), "CB")

    from lgc.dlarray import provenance

    def f(x):
        with provenance("conv7"):
            return lgc.exp(x) + 0.5

    with pytest.raises(CompileError, match=r"fused.*conv7") as e:
        lgc.compile(f, backend="numba")(x)
    assert "numba" not in str(e.value).lower()


def test_outputs_are_fresh_arrays_across_calls():
    x = lgc.dlarray(np.arange(6.0).reshape(2, 3), "CB")
    cf = lgc.compile(lambda x: lgc.relu(x) * 2.0, backend="numba")
    y1 = np.asarray(cf(x)).copy()
    y1_live = cf(x)
    cf(lgc.dlarray(np.zeros((2, 3)), "CB"))
    np.testing.assert_array_equal(np.asarray(y1_live), y1)


def test_inputs_in_another_dtype_order_or_type_are_converted_and_checked():
    """Arrays already in the program's dtype and C order pass as they are; anything else is
    converted first (float64, a transposed view, a list), and a wrong shape is refused."""
    x = np.arange(12.0, dtype=np.float32).reshape(3, 4) - 5
    b = Builder(Graph("inputs"))
    (v,) = emit_inputs(b, [x])
    b.graph.outputs = [b.emit("mul", b.emit("relu", v), v)]
    exe = NumbaExecutable(b.graph)
    want = run_graph(b.graph, [x])[0]
    for given in (x, x.astype(np.float64), np.ascontiguousarray(x.T).T, x.tolist()):
        np.testing.assert_array_equal(exe([given])[0], want)
    with pytest.raises(ShapeError, match=r"has shape \(4, 3\), expected \(3, 4\)"):
        exe([x.T.copy()])


def test_workspace_buffers_are_reused():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 32))
    b = Builder(Graph("chain"))
    (v,) = emit_inputs(b, [x])
    for _ in range(6):  # reductions break fusion: each step needs a buffer
        v = b.emit("sub", v, b.emit("reduce_max", v, axes=(0,), keepdims=True))
        v = b.emit("tanh", v)
    b.graph.outputs = [v]
    exe = NumbaExecutable(b.graph)
    assert_same(exe([x]), run_graph(b.graph, [x]))
    distinct = {id(buf) for buf in exe._buffers.values()}
    assert len(distinct) < len(exe._buffers)
    # each on a cache line of its own (threads writing neighbouring blocks share no line)
    assert all(buf.ctypes.data % 64 == 0 for buf in exe._buffers.values())
    assert exe([x])[0].ctypes.data % 64 == 0


@pytest.mark.parametrize("shape,dtype", [((3, 5), np.float32), ((7,), np.float64), ((), np.int64),
                                         ((0, 4), np.float32), ((2, 3, 4), np.uint8)])
def test_aligned_buffers_are_ordinary_arrays_starting_on_a_cache_line(shape, dtype):
    from lgc.backend.plan import empty_aligned, zeros_aligned

    for _ in range(8):  # NumPy's own allocations start 16 bytes apart: some land off a line
        a, z = empty_aligned(shape, dtype), zeros_aligned(shape, dtype)
        for buf in (a, z):
            assert buf.shape == shape and buf.dtype == dtype and buf.flags.c_contiguous
            assert buf.flags.writeable and (buf.size == 0 or buf.ctypes.data % 64 == 0)
        assert not z.any()


def test_fusion_sees_values_where_their_group_computes_them():
    """d is emitted after the matmul but joins a's group, which runs before it: e = c * d
    may then join c's group (d exists from a's start), as LSTM gradients need."""
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(4, 3)), rng.normal(size=(4, 4))
    b = Builder(Graph("late_member"))
    xv, wv = emit_inputs(b, [x, w])
    a = b.emit("sigmoid", xv)
    m = b.emit("matmul", wv, xv)
    c = b.emit("mul", m, xv)
    d = b.emit("sub", b.const(1.0, a.dtype), a)
    b.graph.outputs = [b.emit("mul", c, d), a]
    exe = NumbaExecutable(b.graph)
    assert len([n for n in exe.optimized.nodes if n.op.name == "fused"]) == 2
    assert_same(exe([x, w]), run_graph(b.graph, [x, w]))


def test_debug_prints_a_line_per_cache_miss_with_the_reason(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, lgc
        x = lgc.dlarray(np.ones((2, 3)), "CB")
        lgc.compile(lambda x: lgc.exp(x) * 2.0, backend="numba")(x)
    """)
    env = {**os.environ, "LGC_CACHE_DIR": str(tmp_path), "LGC_DEBUG": "1"}
    err = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stderr
    assert "--- cache miss ---" in err and "new kernel source" in err
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stderr
    assert "cache miss" not in again


def test_steps_on_fixed_arrays_are_built_once_and_read_what_the_arrays_hold():
    """With its weights pinned, a program's steps on them and on its own buffers are built
    once (the transpose of the weights is done at build time); every call still reads what
    the arrays hold then, and another array in the pinned place takes the general path."""
    rng = np.random.default_rng(3)
    w, x = rng.normal(size=(5, 4)), rng.normal(size=(4, 3))
    b = Builder(Graph("pinned"))
    wv, xv = emit_inputs(b, [w, x])
    h = b.emit("tanh", b.emit("matmul", wv, xv))
    wt = b.emit("transpose", wv, perm=(1, 0))
    y = b.emit("matmul", wt, h)
    z = b.emit("matmul", b.emit("tanh", wt), h)  # tanh reads a strided view: copied per call
    b.graph.outputs = [b.emit("mul", b.emit("exp", y), z)]
    exe = NumbaExecutable(b.graph)
    exe.pin({0: w})
    assert exe.stats["steps_per_call"] < len(exe._steps)
    for _ in range(2):
        assert_same(exe([w, x]), run_graph(b.graph, [w, x]))
        w *= 0.5  # in place: the steps built once see the new values
        x = rng.normal(size=x.shape)
    other = rng.normal(size=w.shape)
    assert_same(exe([other, x]), run_graph(b.graph, [other, x]))
    assert_same(exe([w, x]), run_graph(b.graph, [w, x]))
    with pytest.raises(ShapeError, match="cannot pin input 0"):
        exe.pin({0: w.T.copy().T})


def test_inputs_passed_again_and_again_are_pinned_by_the_executable_itself(monkeypatch):
    """A custom loop passes the same parameter arrays on every call (adamupdate updates them
    in place): after PIN_AFTER calls the executable pins them and builds their steps once,
    reading what they hold on each call; another array there unpins it; an array not as the
    program wants it (F order) is never pinned; a caller that keeps alternating stops the
    watching after MAX_REPINS changes. Every call gives the reference's result. (Staging
    and copying small outputs out, which would prepare these small values' steps anyway,
    are off.)"""
    from lgc.backend.numba import runtime

    monkeypatch.setattr(runtime, "STAGE_MAX_BYTES", 0)
    monkeypatch.setattr(runtime, "COPY_OUT_MAX_BYTES", 0)
    rng = np.random.default_rng(5)
    w, x = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    b = Builder(Graph("watched"))
    wv, xv = emit_inputs(b, [w, x])
    wt = b.emit("transpose", b.emit("tanh", wv), perm=(1, 0))
    b.graph.outputs = [b.emit("tanh", b.emit("matmul", wt, xv))]
    exe = NumbaExecutable(b.graph)
    prepared = lambda: sum(c is not None for _, c in exe._bound)  # noqa: E731
    assert prepared() == 0

    def call(*args):
        assert_same(exe(list(args)), run_graph(b.graph, list(args)))

    for _ in range(runtime.PIN_AFTER + 1):
        w *= 0.9  # in place, as an optimizer does
        call(w, rng.normal(size=x.shape))  # a new batch each call: never pinned
    assert set(exe._pinned) == {0} and prepared() == 1  # tanh(w); its transpose done once
    call(rng.normal(size=w.shape), x)  # another array: unpinned
    assert not exe._pinned
    wf = np.asfortranarray(w)
    for _ in range(runtime.PIN_AFTER + 2):
        call(wf, x)
    assert set(exe._pinned) == {1}  # x, now passed again and again; not the F-ordered w
    for k in range(2 * runtime.MAX_REPINS + 2):
        w2 = w if k % 2 else w.copy()
        for _ in range(runtime.PIN_AFTER + 1):  # pinned, then unpinned by the next array
            call(w2, x)
    assert not exe._watching


def test_small_unpinned_inputs_are_staged_so_their_steps_are_prepared(monkeypatch):
    """A small input that is not pinned (a batch) is copied into a buffer of the executable
    on every call, so the steps reading it are built once; each call still computes on the
    array passed (new arrays, another dtype, a strided view). Not staged: an input an output
    may share memory with (returned as a view, the next call would overwrite it) and one
    over STAGE_MAX_BYTES."""
    from lgc.backend.numba import runtime

    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(6, 4)), rng.normal(size=(4, 3))
    b = Builder(Graph("staged"))
    xv, yv = emit_inputs(b, [x, y])
    b.graph.outputs = [b.emit("matmul", b.emit("tanh", xv), yv),
                       b.emit("reshape", yv, shape=(12,))]  # a view of y
    exe = NumbaExecutable(b.graph)
    assert [k for k, _ in exe._staged] == [0]
    prepared = {s.node.op.name: c is not None for s, c in exe._bound}
    assert prepared == {"fused": True, "matmul": False, "reshape": False}  # matmul: y too
    outs = []
    for k in range(3):
        x, y = rng.normal(size=x.shape), rng.normal(size=y.shape)
        arg = x if k < 2 else np.asfortranarray(x).astype(np.float32)
        outs.append((exe([arg, y]), run_graph(b.graph, [arg.astype(x.dtype), y])))
    for got, want in outs:  # results of earlier calls are not overwritten by later ones
        assert_same(got, want)
    with pytest.raises(ShapeError, match="input"):
        exe([x[:2], y])
    monkeypatch.setattr(runtime, "STAGE_MAX_BYTES", x.nbytes - 1)
    assert NumbaExecutable(b.graph)._staged == []


def test_a_reshape_that_copies_writes_into_a_buffer_so_its_readers_are_prepared():
    """A reshape of a transposed view copies on every call: it copies into a buffer of the
    executable, so the steps after it are built once too; every call reads the new input."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 3, 5))
    b = Builder(Graph("reordered"))
    (xv,) = emit_inputs(b, [x])
    flat = b.emit("reshape", b.emit("transpose", xv, perm=(0, 2, 1)), shape=(4, 15))
    b.graph.outputs = [b.emit("matmul", b.emit("tanh", flat), b.emit("transpose", flat,
                                                                       perm=(1, 0)))]
    exe = NumbaExecutable(b.graph)
    prepared = {s.node.op.name: c is not None for s, c in exe._bound}
    assert prepared["reshape"] and prepared["fused"]
    outs = []
    for _ in range(3):
        x = rng.normal(size=x.shape)
        outs.append((exe([x]), run_graph(b.graph, [x])))
    for got, want in outs:
        assert_same(got, want)


def test_a_constant_is_written_once_into_a_buffer_no_other_value_takes():
    """A constant is written when the executable is built, not on every call: its buffer is
    its own, so values planned after its last use cannot overwrite it between calls."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4))
    b = Builder(Graph("constant"))
    (v,) = emit_inputs(b, [x])
    c = b.emit("constant", value=rng.normal(size=(3, 4)), dtype=v.dtype)
    v = b.emit("tanh", b.emit("mul", v, c))
    for _ in range(3):  # same-shaped values written after the constant's last use
        v = b.emit("tanh", b.emit("sub", v, b.emit("reduce_max", v, axes=(0,), keepdims=True)))
    b.graph.outputs = [v]
    exe = NumbaExecutable(b.graph)
    assert "constant" not in [s.node.op.name for s, _ in exe._bound]
    for _ in range(3):
        x = rng.normal(size=x.shape)
        assert_same(exe([x]), run_graph(b.graph, [x]))


def test_concatenated_pieces_are_computed_in_place():
    """Pieces of a concatenation that kernels write (through reshapes) are written straight
    into their slices of its result, so the concatenation copies nothing; a piece wanted
    in two concatenations keeps the copy in the second."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    b = Builder(Graph("concat"))
    xv, yv = emit_inputs(b, [x, y])
    p1, p2 = b.emit("tanh", xv), b.emit("matmul", xv, yv)
    flat = [b.emit("reshape", p, shape=(p.type.size,)) for p in (p1, p2)]
    c1 = b.emit("concatenate", *flat, axis=0)
    c2 = b.emit("concatenate", flat[1], b.emit("exp", flat[0]), axis=0)
    b.graph.outputs = [b.emit("mul", c1, c1), b.emit("sin", c2)]
    exe = NumbaExecutable(b.graph)
    per_call = [s.node for s, _ in exe._bound if s.node.op.name == "concatenate"]
    assert [n.inputs[0].shape for n in per_call] == [(6,)]  # c2 only
    for _ in range(3):
        x, y = rng.normal(size=x.shape), rng.normal(size=y.shape)
        assert_same(exe([x, y]), run_graph(b.graph, [x, y]))


def test_importing_lgc_does_not_import_numba():
    """Numba costs ~0.2 s to import: `import lgc` leaves it for the first compile (the
    Numba backend's modules import it in their functions)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-c", "import sys, lgc; print('numba' in sys.modules)"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "False", run.stdout + run.stderr
