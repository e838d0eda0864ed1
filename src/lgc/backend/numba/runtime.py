"""The Numba CPU executable: optimized, fused graph -> kernels called in order by a thin driver.

Steps are fused elementwise kernels, reductions and ops with their own kernel (generated source,
compiled by Numba, cached on disk), and NumPy steps for the rest (matmul through BLAS, views for
shape ops, the op's reference for ops that have no kernel yet). Kernel outputs live in buffers
allocated once per executable and reused across calls (slots shared between values whose
lifetimes do not overlap); values that reach the outputs are allocated per call, so results
handed to the user are never overwritten.

Since those buffers are the same arrays on every call, so are most steps' arguments: a call
made only of them (and of pinned inputs: a train step's parameters) is built once, a view of
them is taken once, and a constant is written once (`_prebind`). Prepared calls that follow
one another run as one compiled call (`Run`: the pool's threads take each call's parts, no
Python between calls), and the rest of the steps as before (MLP train step: 47 steps -> 19
calls, all prepared -> one call from Python). An executable nobody pins pins, by itself, the
inputs a caller keeps passing as the same arrays (`_watch`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ...errors import CompileError, LgcError, ShapeError
from ...ir.core import Graph, Node, Value
from ...ir.types import np_dtype
from ...ops.base import PYTHON_CALL_MIN_ELEMENTS, kernel_threads
from ...passes import CPU_PIPELINE, optimize
from ...passes.fuse_reduce import operand_pattern, reduction_blocks
from ..plan import empty_aligned, plan_buffers, workspace_bytes
from . import blas, codegen, launch, threads
from .compile import STATS, calls_blas, load_kernel, record_compiled, record_first_call, snapshot

FLAGS = {"cache": True, "error_model": "numpy", "nogil": True}
SERIAL_CALLS, MAX_SERIAL_CALLS = 8, 512  # a barrier kernel's calls on one thread (`Barriers`)
PIN_AFTER = 2  # calls with the same array in an input before the executable pins it
MAX_REPINS = 8  # changes of the pinned set before it stays as it is
STAGE_MAX_BYTES = 1 << 20  # unpinned inputs up to this size are copied into buffers (`_stage`)
COPY_OUT_MAX_BYTES = 4096  # kernel-written outputs up to this size are copied out of buffers


_DRY_RUN = threading.local()  # .record: this thread's dry-run recorder (prebuild.py), if any


class FastCall:
    """Calls a kernel's compiled entry point directly after the first call, skipping the
    dispatcher's argument typing (most of a small kernel's cost). Safe because a step always
    passes the same array types: inputs are converted to the graph's dtype and C order, and
    the views a step builds never change kind.

    With `any_layout` (`Lowering.any_layout`) its arrays are typed with layout "A" whatever
    their order: one compiled version serves every layout of the operands (a matmul's
    transposed views), where the dispatcher would compile one per combination."""

    __slots__ = ("fn", "entry", "sig", "any_layout")

    def __init__(self, fn, any_layout: bool = False):
        self.fn = fn
        self.entry = self.sig = None
        self.any_layout = any_layout

    def signature(self, args) -> tuple:
        """The Numba types this kernel is compiled for, for `args`."""
        from .intrinsics import _any_layout

        sig = tuple(self.fn.typeof_pyval(a) for a in args)
        return tuple(_any_layout(t) for t in sig) if self.any_layout else sig

    def __call__(self, *args):
        if self.entry is not None:
            return self.entry(*args)
        record = getattr(_DRY_RUN, "record", None)
        if record is not None:  # a dry run: note the argument types, run nothing
            record(self.fn, self.signature(args))
            return None
        if self.any_layout:  # compiled (or loaded) for the relaxed types, then called
            sig = self.signature(args)
            self.fn.compile(sig)
            self.entry, self.sig = self.fn.overloads[sig].entry_point, sig
            return self.entry(*args)
        result = self.fn(*args)
        import numba

        sig = tuple(numba.typeof(a) for a in args)
        compiled = self.fn.overloads.get(sig)
        if compiled is not None:
            self.entry, self.sig = compiled.entry_point, sig
        return result

    def bind(self, args) -> Callable[[], object]:
        """A call of the kernel on `args` with nothing left to resolve."""
        return partial(self.entry, *args) if self.entry is not None else partial(self, *args)


class Serial:
    """A kernel taking (t, T) last, called on one thread."""

    __slots__ = ("fc", "one")

    def __init__(self, fc: FastCall):
        self.fc = fc
        self.one = Threaded(fc, 1)  # its prepared calls, launched in a `Run` with others

    def __call__(self, *args):
        return self.fc(*args, 0, 1)

    def bind(self, args, batch: list | None = None) -> Callable[[], object]:
        """Prepared like a threaded kernel's call (one part), so that it can join a `Run`;
        a call that joins none gets its direct call back (`NumbaExecutable._make_runs`)."""
        return Launch(self.one, args, batch)


class Threaded:
    """A kernel taking (t, T) last, run in `count` threads by the pool (threads.py): its first
    call through Python (compiling it), later ones launched through its trampoline, on a
    block packed once for a prepared call (`bind`) or for each call otherwise."""

    __slots__ = ("fc", "count", "small", "address", "python_calls", "parts", "barriers")

    def __init__(self, fc: FastCall, count: int, small: bool = False):
        # small: too little work to pay for a call that is not prepared (its arguments
        # packed anew: ~1 us an array); such a call runs as part (0, 1), on one thread
        self.fc, self.count, self.small = fc, count, small
        # its trampoline: made with the executable's others (`_make_trampolines`), or by
        # itself at its second call through Python (a kernel called on its own)
        self.address = 0
        self.python_calls = 0
        self.parts = count  # the threads its next call runs on (`Barriers.adapt`)
        self.barriers: Barriers | None = None  # a kernel whose threads meet at barriers

    def __call__(self, *args):
        if getattr(_DRY_RUN, "record", None) is not None:
            self.fc(*args, 0, self.count)  # a dry run notes the types in this thread only
        elif self.address:  # launched on a block packed for this call (~1 us an array)
            block = launch.pack(self.fc.sig, args)
            self.launch(self.address, block.ctypes.data, args)
        elif self.small:
            self.fc(*args, 0, 1)
        else:
            threads.run(self.fc, self.parts, *args)
            self.python_calls += 1
            sig = getattr(self.fc, "sig", None)
            if self.python_calls > 1 and sig is not None and launch.packable(sig):
                self.address = launch.trampoline(self.fc.fn, sig)

    def launch(self, address: int, block: int, args) -> None:
        """The call on `args`, packed at `block`, through the trampoline at `address`."""
        if threads.launch(address, block, self.parts):
            self.failed(args)

    def failed(self, args) -> None:
        """After a launched call on `args` reported an error: the call again through Python,
        which raises the kernel's own error."""
        threads.run(self.fc, self.parts, *args)
        raise RuntimeError("a kernel failed in a thread of the pool")

    def bind(self, args, batch: list | None = None) -> Callable[[], object]:
        return Launch(self, args, batch)


class Barriers:
    """The threads of a kernel whose threads meet at step barriers (Lowering.sync: their
    counters) under other processes' load. Beside a busy process, a thread of the pool may be
    descheduled while its partners wait for it at every step (an LSTM train step beside one
    busy process took 13.6 ms with its kernels on two threads throughout, 11.7 with this;
    beside two, 16.8 and 13.6; alone, 3.6 both). Two calls in a row on the threads slower
    than one thread would be (as measured on one thread last time; until then, `count` times
    the fastest call on the threads) send the kernel to one thread for `backoff` calls,
    doubled each time the threads' first calls back are slow again; the counters are made
    equal before the threads take it back (a call on one thread advances only the first)."""

    __slots__ = ("threaded", "sync", "fast", "serial", "slow", "serial_left", "backoff",
                 "returned")

    def __init__(self, threaded: Threaded, sync: np.ndarray):
        self.threaded, self.sync = threaded, sync
        self.fast = self.serial = self.slow = self.serial_left = 0
        self.backoff, self.returned = SERIAL_CALLS, False

    def adapt(self, took: int) -> int:
        """After a call that took `took` cycles (0: unknown): the threads for the next."""
        th = self.threaded
        if not took:
            return th.parts
        if th.parts == 1:
            first = self.serial_left == self.backoff
            self.serial = took if first else min(self.serial, took)
            self.serial_left -= 1
            if self.serial_left <= 0:
                from .intrinsics import SYNC_STRIDE

                counters = self.sync[:th.count * SYNC_STRIDE:SYNC_STRIDE]
                counters[:] = counters.max()
                th.parts, self.returned, self.slow = th.count, True, 0
            return th.parts
        self.fast = min(self.fast, took) if self.fast else took
        if took <= (self.serial or th.count * self.fast):
            self.slow, self.returned = 0, False
            return th.parts
        self.slow += 1
        if self.slow >= 2:
            self.backoff = min(2 * self.backoff, MAX_SERIAL_CALLS) if self.returned else \
                SERIAL_CALLS
            th.parts, self.serial_left, self.slow = 1, self.backoff, 0
        return th.parts


class Launch:
    """A prepared call of a threaded kernel: the first call runs through Python (compiling
    the kernel); from then on its arguments are packed once into a block that the workers'
    compiled loop hands to a trampoline (launch.py), never taking the GIL. The first of a
    program's launches to be prepared prepares the others whose kernels are compiled too,
    their trampolines compiled together (`batch`: the program's launches, one list)."""

    __slots__ = ("threaded", "args", "block", "block_address", "address", "batch")

    def __init__(self, threaded: Threaded, args, batch: list | None = None):
        self.threaded, self.args = threaded, tuple(args)
        self.block, self.block_address, self.address = None, 0, 0
        self.batch = batch if batch is not None else []
        self.batch.append(self)

    def __call__(self):
        threaded = self.threaded
        if self.address:
            threaded.launch(self.address, self.block_address, self.args)
            return
        threads.run(threaded.fc, threaded.parts, *self.args)
        if self.block is None:  # once: the batch's compiled kernels (this one's included)
            _prepare([c for c in self.batch if c.block is None and c.threaded.fc.sig])
            if self.block is None:  # no compiled overload found: stays on Python's path
                self.block = np.zeros(0, np.int64)


class Run:
    """Prepared calls that follow one another in a program, run by one compiled call
    (`threads.launch_program`): no Python between them (~1 us a call; the MLP train step's
    19 calls are one run), and each call's cycles recorded (`Barriers`)."""

    __slots__ = ("calls", "program", "count")

    def __init__(self, calls: list[Launch]):
        self.calls = calls
        self.program = np.array([(c.address, c.block_address, c.threaded.parts, 0)
                                 for c in calls], np.int64)
        self.count = max(c.threaded.count for c in calls)

    def __call__(self):
        done = threads.launch_program(self.program, self.count)
        if done < len(self.calls):
            failed = self.calls[done]
            failed.threaded.failed(failed.args)


def _prepare(calls: list[Launch]) -> None:
    """Pack each call's arguments and point it at its kernel's trampoline; a call that cannot
    be launched (an argument not an array or a number) keeps going through Python."""
    ok = [c for c in calls if launch.packable(c.threaded.fc.sig)]
    addresses = launch.trampolines([(c.threaded.fc.fn, c.threaded.fc.sig) for c in ok])
    for c, address in zip(ok, addresses):
        c.block = launch.pack(c.threaded.fc.sig, c.args)
        c.block_address, c.address = c.block.ctypes.data, address  # .ctypes costs ~2 us
    for c in calls:
        if c.block is None:
            c.block = np.zeros(0, np.int64)  # tried: stays on Python's path


def on_threads(fn: FastCall, count: int, work: int = 0) -> Serial | Threaded:
    """`fn`, a kernel taking (t, T) last, called once per thread by the pool (`work`: see
    Lowering.work)."""
    if count <= 1:  # the common case, kept off the pool's path
        return Serial(fn)
    return Threaded(fn, count, 0 < work < PYTHON_CALL_MIN_ELEMENTS)


def _bind(fn, args, launches: list) -> Callable[[], object]:
    if isinstance(fn, (Threaded, Serial)):
        return fn.bind(args, launches)
    bind = getattr(fn, "bind", None)
    return bind(args) if bind is not None else partial(fn, *args)


@dataclass
class Kernel:
    """A generated kernel: the IR it came from, its source and its compiled dispatcher."""

    node: Node
    source: str
    fn: object = field(repr=False)
    ops: list[str] = field(default_factory=list)
    prov: str = ""
    cache_hit: bool | None = None
    compile_seconds: float = 0.0


@dataclass
class Step:
    """One step of the executable. `run(env)` reads its inputs from the value list `env` and
    puts its outputs there. A step that calls a function on arrays also has `args(env)`, the
    arrays (and sizes) it passes to `fn`: with every array fixed, the call is built once
    (`NumbaExecutable._prebind`)."""

    kind: str  # "kernel" (generated Numba kernel), "blas" (NumPy/BLAS lowering), "numpy" (ref)
    node: Node
    ins: list[int]
    outs: list[int]
    run: Callable[[list], None]
    kernel: Kernel | None = None
    fn: Callable | None = None
    args: Callable[[list], list] | None = None


def _call_step(kind, node, ins, outs, fn, args, kernel=None) -> Step:
    """A step that calls `fn(*args(env))`."""
    def run(env):
        fn(*args(env))
    return Step(kind, node, ins, outs, run, kernel, fn, args)


def _constant(step: Step) -> bool:
    """A step whose outputs are the same on every call: a pure op with no inputs."""
    return step.kind != "numpy" and not step.node.inputs and step.node.op.pure


def _arrays(args) -> list[np.ndarray]:
    """The arrays among a step's arguments (lowered steps pass lists of them)."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(a)
        elif isinstance(a, list):
            out.extend(_arrays(a))
    return out


def _views(arrays: list, of: list) -> bool:
    """Whether every array in `arrays` is one of `of` or a view of one (not a copy made on
    this call, which a later call would not see)."""
    return all(any(a is b or (isinstance(b, np.ndarray) and np.may_share_memory(a, b))
                   for b in of) for a in arrays)


def _fixed_args(args, again, of: list) -> bool:
    """Whether a step's arguments `args` are the same arrays on every call: views of the
    step's fixed values `of`, or arrays of its lowering's own (scratch, tables), which a
    second build of the arguments (`again`) returns again as the same objects (a copy made
    per call would be a new one)."""
    own = [a for a in _arrays(args) if not _views([a], of)]
    return not own or all(any(a is b for b in _arrays(again)) for a in own)


def _pkq(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[list[int] | None, int, int, int]:
    """The (P, K, Q) grouping of `shape` around `axes`; a transposition when they are not one
    contiguous block."""
    axes = tuple(sorted(axes))
    if axes and axes == tuple(range(axes[0], axes[-1] + 1)):
        perm = None
        a, b = axes[0], axes[-1] + 1
        s = shape
    else:
        kept = [d for d in range(len(shape)) if d not in axes]
        perm = kept + list(axes)
        s = tuple(shape[d] for d in perm)
        a, b = len(kept), len(s)
    p = int(np.prod(s[:a], dtype=np.int64))
    k = int(np.prod(s[a:b], dtype=np.int64))
    q = int(np.prod(s[b:], dtype=np.int64))
    return perm, p, k, q


def reduce_view(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...] | None:
    """`shape` as (A, B, C, D, E) where B and D are the reduced axes and A, C, E the kept ones
    (adjacent axes of the same kind merged, size-1 axes dropped); None when the reduced axes
    form more than two blocks (or the kept ones more than three)."""
    groups: list[list] = []  # [reduced?, size]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        red = d in axes
        if groups and groups[-1][0] == red:
            groups[-1][1] *= n
        else:
            groups.append([red, n])
    view = [1] * 5
    slot = 4  # filled from the innermost group, so the contiguous loop is the inner one
    for red, n in reversed(groups):
        if slot % 2 != red:  # slots 4, 2, 0 are kept, 3 and 1 reduced: leave this one 1
            slot -= 1
        if slot < 0:
            return None
        view[slot] = n
        slot -= 1
    return tuple(view)


def host_input(g: Graph, k: int, a) -> np.ndarray:
    """Input k of program `g` as a NumPy array in the program's dtype and C order, its shape
    checked (both backends' executables take their inputs through this)."""
    v = g.inputs[k]
    # not ascontiguousarray: it turns a 0-d input into shape (1,)
    a = np.require(a, dtype=np_dtype(v.dtype), requirements="C")
    if a.shape != v.shape:
        raise ShapeError(f"@{g.name}: input %{v.name} has shape {a.shape}, expected {v.shape}")
    return a


class NumbaExecutable:
    backend = "numba"

    def __init__(self, g: Graph):
        t0 = time.perf_counter()
        self.graph = g
        self.optimized = optimize(g, CPU_PIPELINE)
        self.kernels: list[Kernel] = []
        self._index: dict[Value, int] = {v: i for i, v in enumerate(self.optimized.inputs)}
        for n in self.optimized.nodes:
            for o in n.outputs:
                self._index[o] = len(self._index)
        self._fresh = self._values_reaching_outputs()
        # One set of threads at a time: BLAS's spin-wait between calls, so the kernels (on
        # lgc's pool) get the cores, and BLAS runs single-threaded during a call
        self._threaded = False  # some kernel runs on several threads
        self._split = []
        self._steps = [self._step(n) for n in self.optimized.nodes]
        self._plan_buffers()
        n = len(self.optimized.inputs)
        self._last, self._streak = [None] * n, [0] * n  # `_watch`
        self._outputs = [self._index[v] for v in self.optimized.outputs]
        self._input_types = [(np.dtype(np_dtype(v.dtype)), v.shape) for v in self.optimized.inputs]
        if any(calls_blas(k.source) for k in self.kernels):
            blas.bind_scipy()
        self._warm_up()
        self._prebind()
        self.build_seconds = time.perf_counter() - t0

    # --- building -----------------------------------------------------------------------------

    def _values_reaching_outputs(self) -> set[Value]:
        """Values whose memory a graph output may share (views): they are allocated per call.
        Not a small output that a kernel writes (`_copied_out`, a loss): it gets a buffer like
        any value, and each call hands out a copy of it, so that its step is prepared too
        (and joins the run of prepared calls around it)."""
        writer = {o: n for n in self.optimized.nodes for o in n.outputs}
        small = {v for v in self.optimized.outputs if v in writer
                 and self._owns_outputs(writer[v])
                 and v.type.size * np_dtype(v.dtype).itemsize <= COPY_OUT_MAX_BYTES}
        fresh = set(self.optimized.outputs) - small
        for n in reversed(self.optimized.nodes):
            if self._owns_outputs(n):
                continue  # kernels write into their own buffers, never alias inputs
            if any(o in fresh for o in n.outputs):
                fresh.update(n.inputs)
        self._copied_out = small - fresh  # none that another output views
        return fresh

    def _kernel(self, node: Node, source: str, ops: list[str], flags=None) -> Kernel:
        flags = {**FLAGS, **(flags or {})}
        try:
            fn = load_kernel(source, flags)
        except Exception as e:  # a generated-source bug must name its origin
            raise CompileError(f"cannot build the kernel of {node.op.name} "
                               f"(from {node.prov or 'model'}): {e}") from None
        k = Kernel(node, source, fn, ops, node.prov)
        self.kernels.append(k)
        return k

    def _step(self, n: Node) -> Step:
        ins = [self._index[v] for v in n.inputs]
        outs = [self._index[o] for o in n.outputs]
        if n.op.name == "fused":
            return self._fused_step(n, ins, outs)
        if n.op.reduce is not None and len(n.inputs) == 1:
            return self._reduce_step(n, ins, outs)
        if n.op.alias:
            (i_in,), (i_out,) = ins, outs

            def alias(env):
                env[i_out] = env[i_in]
            return Step("numpy", n, ins, outs, alias)
        lowering = n.op.lower_numba(n)
        if lowering is not None:
            return self._lowered_step(n, lowering, ins, outs)
        op, attrs = n.op, n.attrs

        def run(env):
            res = op.ref(*(env[i] for i in ins), **attrs)
            if len(outs) == 1:
                env[outs[0]] = res
            else:
                for i, r in zip(outs, res):
                    env[i] = r
        return Step("numpy", n, ins, outs, run)

    def _fused_step(self, n: Node, ins: list[int], outs: list[int]):
        if n.attrs.get("reductions"):
            return self._fused_reduce_step(n, ins, outs)
        shape = n.attrs["shape"]
        size = int(np.prod(shape, dtype=np.int64))
        nd = max(len(shape), 1)
        kinds, preps = [], []
        for v in n.inputs:
            if v.type.size == 1:
                kinds.append("scalar")
                preps.append(lambda a: a.reshape(1))
                continue
            padded = (1,) * (len(shape) - v.type.ndim) + v.shape
            kinds.append("full" if padded == shape else
                         "".join("0" if p == 1 and s != 1 else "i" for p, s in zip(padded,
                                                                                  shape)))
            preps.append(lambda a, padded=padded: a.reshape(padded))
        flat = all(k in ("scalar", "full") for k in kinds)
        if flat:
            nd, preps = 1, [p if k == "scalar" else (lambda a: a.reshape(-1))
                            for k, p in zip(kinds, preps)]
        count = kernel_threads(size)
        k = self._kernel(n, codegen.emit_fused(n, kinds, nd, count),
                         [b[0] for b in n.attrs["body"]])
        iter_shape = (size,) if flat else shape
        fn = self._on_threads(FastCall(k.fn), count, size)

        def args(env):
            return ([self._out(env, i).reshape(iter_shape) for i in outs]
                    + [p(env[i]) for p, i in zip(preps, ins)])
        return _call_step("kernel", n, ins, outs, fn, args, k)

    def _fused_reduce_step(self, n: Node, ins: list[int], outs: list[int]):
        """A fused node with reductions: every array viewed as (B, C, D) (fuse_reduce.py)."""
        shape = n.attrs["shape"]
        blocks = reduction_blocks(shape, set(n.attrs["reductions"][0][3]))
        view = tuple(int(np.prod([shape[d] for d in blk], dtype=np.int64)) for blk in blocks)
        kinds, views = [], []
        for v in n.inputs:
            pattern = None if v.type.size == 1 else operand_pattern(v.shape, blocks, shape)
            kinds.append("scalar" if pattern is None else pattern)
            views.append((1,) if pattern is None else
                         tuple(s if c == "i" else 1 for s, c in zip(view, pattern)))
        size = int(np.prod(view, dtype=np.int64))
        count = min(kernel_threads(size), view[1])
        k = self._kernel(n, codegen.emit_fused_reduce(n, kinds, count),
                         [b[0] for b in n.attrs["body"]] + [r[0] for r in n.attrs["reductions"]],
                         {"fastmath": {"reassoc"}})
        fn = self._on_threads(FastCall(k.fn), count, size)
        n_full = len(outs) - len(n.attrs["reductions"])
        nb, nd = view[0], view[2]

        def args(env):
            return ([self._out(env, i).reshape(view) for i in outs[:n_full]]
                    + [self._out(env, i).reshape(-1) for i in outs[n_full:]]
                    + [env[i].reshape(s) for i, s in zip(ins, views)] + [nb, nd])
        return _call_step("kernel", n, ins, outs, fn, args, k)

    def _reduce_step(self, n: Node, ins: list[int], outs: list[int]):
        x = n.inputs[0]
        axes = n.op.reduce_axes(n)
        view = reduce_view(x.shape, axes)
        perm = None
        if view is None:  # rare (three blocks of reduced axes): transposed copy, then reduce
            perm, p, kk, q = _pkq(x.shape, axes)
            view = (p, kk, 1, 1, q)
        init, update = n.op.reduce
        work, rows = int(np.prod(view)), view[0] * view[2]
        count = min(kernel_threads(work), rows)
        k = self._kernel(n, codegen.emit_reduce(init, update, count), [n.op.name],
                         {"fastmath": {"reassoc"}})
        fn = self._on_threads(FastCall(k.fn), count, work)
        (i_in,), (i_out,) = ins, outs
        out_view = (view[0], view[2], view[4])

        def args(env):
            a = env[i_in]
            if perm is not None:  # a copy per call: such a step is never bound
                a = np.ascontiguousarray(a.transpose(perm))
            return [self._out(env, i_out).reshape(out_view), np.ascontiguousarray(a).reshape(view)]
        return _call_step("kernel", n, ins, outs, fn, args, k)

    def _on_threads(self, fn, count: int, work: int = 0):
        self._threaded |= count > 1
        f = on_threads(fn, count, work)
        self._split.append(f)
        return f

    _split: list = []  # the kernels taking (t, T) (Serial, Threaded): each one's trampoline

    def _make_trampolines(self) -> None:
        """The trampolines of every kernel that takes (t, T), in one build at the first call
        after the warm-up (LeNet's first step spent 0.19 s on them, made one by one as
        calls needed them; together, 0.04 s)."""
        self._trampolines_made = True
        ready = [f for f in self._split if f.fc.sig is not None and launch.packable(f.fc.sig)]
        addresses = launch.trampolines([(f.fc.fn, f.fc.sig) for f in ready])
        for f, address in zip(ready, addresses):
            if isinstance(f, Threaded):
                f.address = address

    _trampolines_made = False

    def _lowered_step(self, n: Node, lowering, ins: list[int], outs: list[int]):
        k = self._kernel(n, lowering.source, [n.op.name]) if lowering.source else None
        fn = FastCall(k.fn, lowering.any_layout) if k else None
        if k is not None and lowering.threads is not None:
            fn = self._on_threads(fn, lowering.threads, lowering.work)
            if lowering.sync is not None and isinstance(fn, Threaded):
                fn.barriers = Barriers(fn, lowering.sync)

        kind, operands = ("kernel" if k else "blas"), lowering.args
        if k is not None and operands is not None:  # the kernel on views of the arrays
            def args(env):
                return operands([env[i] for i in ins], [self._out(env, i) for i in outs])
            return _call_step(kind, n, ins, outs, fn, args, k)

        def arrays(env):
            return [[env[i] for i in ins], [self._out(env, i) for i in outs]]
        return _call_step(kind, n, ins, outs, partial(lowering.call, fn), arrays, k)

    def _owns_outputs(self, n: Node) -> bool:
        """Steps that write into planned buffers (never aliasing an input)."""
        return (n.op.name == "fused" or (n.op.reduce is not None and len(n.inputs) == 1)
                or n.op.lower_numba(n) is not None)

    def _plan_buffers(self) -> None:
        """Give every kernel output that does not reach the outputs a reusable buffer, and
        each value that never changes (a constant's) a buffer of its own, written once."""
        nodes = self.optimized.nodes
        writes = [s.kind in ("kernel", "blas") for s in self._steps]
        constants = {o for s in self._steps if _constant(s) for o in s.node.outputs
                     if o not in self._fresh}
        allocate = lambda v: empty_aligned(v.shape, np_dtype(v.dtype))  # noqa: E731
        plan = plan_buffers(nodes, writes, [not w for w in writes], allocate,
                            skip=self._fresh | constants, live_to_end=self._copied_out)
        plan.update({v: allocate(v) for v in constants})
        self._elided = self._concatenate_in_place(plan, allocate)
        self._buffers: dict[int, np.ndarray] = {self._index[v]: b for v, b in plan.items()}
        self._constants = {self._index[v] for v in constants}
        self.workspace_bytes = workspace_bytes(plan)
        self._types = {self._index[o]: o.type for n in nodes for o in n.outputs}

    def _concatenate_in_place(self, plan: dict[Value, np.ndarray], allocate) -> set[Node]:
        """Concatenations whose pieces are computed straight into their place: when each
        piece is (a reshape of) a value written into a buffer of the plan, and the pieces
        lie one after the other in the result (a train step's gradients before the update),
        the result gets a buffer of its own and each piece's buffer becomes its slice. The
        concatenation then has nothing left to copy; the nodes returned are those."""
        writer = {o: s for s in self._steps for o in s.node.outputs}
        done, placed = set(), set()
        for n in self.optimized.nodes:
            out = n.outputs[0]
            if n.op.name != "concatenate" or out not in plan:
                continue
            axis = n.attrs["axis"]
            if any(d != 1 for d in out.shape[:axis]):
                continue  # the pieces would interleave
            roots = [self._written_value(v, writer) for v in n.inputs]
            if (None in roots or len(set(roots)) < len(roots) or placed & {out, *roots}
                    or any(r not in plan for r in roots)):
                continue  # a piece with no buffer of its own, or wanted in two places
            placed.update(roots, [out])
            whole = allocate(out).reshape(-1)
            start = 0
            for r in roots:
                plan[r] = whole[start:start + r.type.size].reshape(r.shape)
                start += r.type.size
            plan[out] = whole.reshape(out.shape)
            done.add(n)
        return done

    def _written_value(self, v: Value, writer: dict) -> Value | None:
        """The value a step writes whose buffer `v` is, in C order (through reshapes and
        relabels); None when `v` is not such a view."""
        while True:
            step = writer.get(v)
            if step is None:
                return None  # an input of the program
            if step.kind != "numpy":
                return v
            if not step.node.op.reshapes:
                return None
            v = step.node.inputs[0]

    def donate(self, pairs: dict[int, int]) -> None:
        """Write graph output k into the array passed as input j, for each k -> j (in-place
        updates: the caller keeps one buffer). The output must come from a node that owns its
        output buffer, last in the graph to touch that input."""
        outs = self.optimized.outputs
        self._donated = {self._index[outs[k]]: j for k, j in pairs.items()}
        self._prebind()

    _donated: dict[int, int] = {}
    _copied_out: set = set()  # small outputs written into buffers, copied out (see below)
    _copy_out: list[int] = []  # their positions among the outputs (not those donated)

    def pin(self, arrays: dict[int, np.ndarray]) -> None:
        """Input k will be the array `arrays[k]` on every call (a train step's parameters and
        optimizer state): the steps that read it are then built once, like those on the
        executable's own buffers. A call with another array there still works (the slower,
        general path); the arrays must already be as the program wants them."""
        for k, a in arrays.items():
            if host_input(self.optimized, k, a) is not a:
                raise ShapeError(f"@{self.optimized.name}: cannot pin input {k}: it is not a "
                                 "C-ordered array of the program's dtype")
        self._pinned = dict(arrays)
        self._watching = False  # the caller knows best
        self._prebind()

    _pinned: dict[int, np.ndarray] = {}
    _watching = True  # pins what callers keep passing (`_watch`) until `pin` is called
    _repins = 0

    def _watch(self, inputs: list) -> None:
        """Pin, by itself, an input that arrives as the same array PIN_AFTER calls in a row
        (a custom loop's parameters: adamupdate updates them in place, dlfeval passes the same
        arrays again), and unpin it when another array comes; after MAX_REPINS changes the
        pins stay as they are (a caller alternating between arrays takes the general path).
        Holds on to the last array of each input to compare identities."""
        last, streak, pinned = self._last, self._streak, self._pinned
        changed = False
        for k, a in enumerate(inputs):
            if a is last[k]:
                if streak[k] < PIN_AFTER:
                    streak[k] += 1
                    changed |= streak[k] == PIN_AFTER
            else:
                last[k], streak[k] = a, 0
                changed |= k in pinned
        if not changed:
            return
        g = self.optimized
        pins = {k: a for k, a in enumerate(last) if streak[k] >= PIN_AFTER
                and type(a) is np.ndarray and host_input(g, k, a) is a}
        if pins.keys() != pinned.keys() or any(a is not pinned[k] for k, a in pins.items()):
            self._repins += 1
            self._watching = self._repins < MAX_REPINS
            self._pinned = pins
            self._prebind()

    _template: list = []  # the value list every call starts from (`_prebind`)
    _staged: list = []  # (input, its buffer) of the inputs copied in on every call (`_stage`)

    def _prebind(self) -> None:
        """Build once what every call would build again. A value is fixed when its array is
        the same on every call: a planned buffer, a pinned input, a view of fixed values. A
        step on fixed values only has its call built here, arguments resolved (`_bound`); a
        view step on fixed values (reshape, transpose, relabel) is done here and vanishes from
        the calls; a constant is written here, once. The rest runs as `step.run(env)`, on a
        copy of the value list built here (`_template`)."""
        env: list = [None] * len(self._index)
        fixed: set[int] = set()
        for k, a in self._pinned.items():
            env[k] = a
            fixed.add(k)
        self._staged = self._stage()
        for k, a in self._staged:
            env[k] = a
            fixed.add(k)
        plan: list[tuple[Step, Callable | None]] = []
        launches: list[Launch] = []
        for step in self._steps:
            if step.node in self._elided and all(i in fixed for i in step.ins):
                (i_out,) = step.outs
                env[i_out] = self._buffers[i_out]
                fixed.add(i_out)
                continue  # its pieces are already in place
            ready = all(i in fixed for i in step.ins)
            if step.kind == "numpy":
                if ready and step.node.op.pure and self._done_here(step, env):
                    fixed.update(step.outs)
                elif ready and self._copies_into_buffer(step, env):
                    plan.append((step, self._copy_into_buffer(step, env)))
                    fixed.update(step.outs)
                else:
                    plan.append((step, None))
                continue
            # a step that writes its outputs writes them into the same arrays on every call
            for i in step.outs:
                j = self._donated.get(i)
                if j in fixed:
                    env[i] = env[j]
                elif j is None and i in self._buffers:
                    env[i] = self._buffers[i]
                else:
                    continue
                fixed.add(i)
            args = step.args(env) if ready and all(i in fixed for i in step.outs) else None
            if args is None or not _fixed_args(args, step.args(env),
                                               [env[i] for i in step.ins + step.outs]):
                plan.append((step, None))
                continue
            call = _bind(step.fn, args, launches)
            if step.outs and all(i in self._constants for i in step.outs):
                call()  # a constant: written now, in a buffer of its own
            else:
                plan.append((step, call))
        self._template, self._bound = env, plan
        self._launches, self._calls, self._runs_made = launches, plan, False
        self._adaptive = []
        self._copy_out = [k for k, v in enumerate(self.optimized.outputs)
                          if v in self._copied_out and self._index[v] not in self._donated]
        staged = {k for k, _ in self._staged}
        self._unpinned = [k for k in range(len(self.optimized.inputs))
                          if k not in self._pinned and k not in staged]

    _launches: list = []  # the prepared calls of `_bound` that are `Launch`es
    _calls: list = []  # what a call runs: `_bound` with its runs of launches merged
    _runs_made = True

    def _make_runs(self) -> None:
        """Once every launch is prepared (after the first call): consecutive prepared calls
        become one `Run` each in `_calls`; a one-part call that joins none gets back its
        direct call (cheaper alone than a launch), in `_bound` too, which keeps one call per
        step (tools/bench.py --profile times those)."""
        def alone(call):
            if isinstance(call, Launch) and call.threaded.count == 1:
                return call.threaded.fc.bind((*call.args, 0, 1))
            return call
        calls, run, adaptive = [], [], []

        def close():  # a kernel with barriers runs in a Run, even alone: its time is kept
            if len(run) > 1 or (run and run[0][1].threaded.barriers is not None):
                calls.append((run[0][0], Run([c for _, c in run])))
                program = calls[-1][1].program
                adaptive.extend((program, row, c.threaded.barriers)
                                for row, (_, c) in enumerate(run)
                                if c.threaded.barriers is not None)
            else:
                calls.extend((st, alone(c)) for st, c in run)
            run.clear()
        for step, call in self._bound:
            if isinstance(call, Launch) and call.address:
                run.append((step, call))
                continue
            close()
            calls.append((step, alone(call)))
        close()
        self._bound = [(step, alone(call)) for step, call in self._bound]
        self._calls, self._runs_made, self._adaptive = calls, True, adaptive

    _adaptive: list = []  # (its run's program, row, Barriers): the kernels with barriers

    def _stage(self) -> list[tuple[int, np.ndarray]]:
        """A buffer of its own for each small input that is not pinned (a batch): every call
        copies the input into it, so the steps that read it are built once too. Not for an
        input an output may share memory with (the next call would overwrite that output),
        one written in place (`donate`), or one over STAGE_MAX_BYTES (the copy would cost more
        than the prepared calls save)."""
        donated = set(self._donated.values())
        staged = []
        for k, v in enumerate(self.optimized.inputs):
            dtype, shape = self._input_types[k]
            if (k in self._pinned or k in donated or v in self._fresh
                    or v.type.size * dtype.itemsize > STAGE_MAX_BYTES):
                continue
            staged.append((k, empty_aligned(shape, dtype)))
        return staged

    def _copies_into_buffer(self, step: Step, env: list) -> bool:
        """A reshape (an op whose output is its input's elements in C order, `reshapes`) of
        a fixed, non-contiguous array (a transposed view: an LSTM's input put in step order)
        copies on every call; into a buffer of its own, unless an output may share it, so
        that the steps reading it stay prepared."""
        return (step.node.op.reshapes and step.node.outputs[0] not in self._fresh
                and isinstance(env[step.ins[0]], np.ndarray))

    def _copy_into_buffer(self, step: Step, env: list) -> Callable[[], object]:
        (i_in,), (i_out,) = step.ins, step.outs
        src, t = env[i_in], self._types[i_out]
        buf = env[i_out] = empty_aligned(t.shape, np_dtype(t.dtype))
        return partial(np.copyto, buf.reshape(src.shape), src)  # row-major, as reshape reads

    def _done_here(self, step: Step, env: list) -> bool:
        """Run a view step on fixed values now; False (and nothing kept) when an output is
        not a view of its inputs (it must be computed on every call)."""
        try:
            with np.errstate(all="ignore"):
                step.run(env)
        except Exception:  # garbage in the buffers may upset a reference: leave it to calls
            ok = False
        else:
            ok = all(isinstance(env[i], np.ndarray) for i in step.outs) and _views(
                [env[i] for i in step.outs], [env[i] for i in step.ins])
        if not ok:
            for i in step.outs:
                env[i] = None
        return ok

    def _out(self, env, i: int) -> np.ndarray:
        j = self._donated.get(i)
        if j is not None:
            env[i] = env[j]
            return env[j]
        buf = self._buffers.get(i)
        if buf is None:
            t = self._types[i]
            buf = empty_aligned(t.shape, np_dtype(t.dtype))
        env[i] = buf
        return buf

    def _warm_up(self) -> None:
        """Compile (or load) every kernel now by a run on zeros, timing each kernel's first
        call; the random generator's state is restored afterwards."""
        from ...ops import creation
        from .prebuild import prebuild

        state = creation.generator().bit_generator.state
        self._prebuilt = prebuild(self)  # new kernels compiled at once, several processes
        zeros = [np.zeros(v.shape, np_dtype(v.dtype)) for v in self.optimized.inputs]
        with np.errstate(all="ignore"):
            self.__call__(zeros, _first=True)
        creation.generator().bit_generator.state = state

    def _dry_run_signatures(self, wanted: set[int]) -> list[tuple]:
        """(dispatcher, argument types) of each distinct call of the kernels in `wanted` (ids),
        from a run on zeros where kernels run nothing (their outputs stay garbage: only types
        matter); [] when a non-kernel step fails on that garbage."""
        calls: dict[tuple, tuple] = {}

        def record(fn, sig):
            if id(fn) in wanted:
                calls.setdefault((id(fn), sig), (fn, sig))
        zeros = [np.zeros(v.shape, np_dtype(v.dtype)) for v in self.optimized.inputs]
        _DRY_RUN.record = record
        try:
            with np.errstate(all="ignore"):
                self.__call__(zeros)
        except Exception:
            return []
        finally:
            _DRY_RUN.record = None
        return list(calls.values())

    # --- running ------------------------------------------------------------------------------

    def __call__(self, inputs: list[np.ndarray], _first: bool = False) -> list[np.ndarray]:
        g = self.optimized
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"@{g.name}: expected {len(g.inputs)} inputs, got {len(inputs)}")
        dry = getattr(_DRY_RUN, "record", None) is not None
        if self._watching and not (_first or dry):
            self._watch(inputs)
        general = _first or dry or any(inputs[k] is not a for k, a in self._pinned.items())
        # the values fixed for good (`_prebind`) are in place from the start, pinned inputs
        # included (checked when pinned)
        env: list = [None] * len(self._index) if general else self._template.copy()
        types = self._input_types
        for k in range(len(inputs)) if general else self._unpinned:
            a, (dtype, shape) = inputs[k], types[k]
            # an array as the program wants it passes as is (np.require costs ~2 us an input)
            if not (type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
                    and a.flags.c_contiguous):
                a = host_input(g, k, a)
            env[k] = a
        if not general:
            for k, buf in self._staged:  # already in env (the template)
                a = inputs[k]
                if not (type(a) is np.ndarray and a.shape == buf.shape):
                    a = host_input(g, k, a)
                np.copyto(buf, a)
        limit = self._threaded and blas.set_threads(1)
        try:
            if general:
                for step in self._steps:
                    if _first and step.kind == "kernel":
                        self._first_call(step, env)
                    else:
                        step.run(env)
            else:
                if not self._trampolines_made:
                    self._make_trampolines()
                if not self._runs_made and all(c.block is not None for c in self._launches):
                    self._make_runs()
                for step, call in self._calls:
                    if call is None:
                        step.run(env)
                    else:
                        call()
                for program, row, barriers in self._adaptive:
                    program[row, 2] = barriers.adapt(int(program[row, 3]))
        finally:
            if limit:
                blas.set_threads(limit)
        outs = [env[i] for i in self._outputs]
        for k in self._copy_out:  # in a buffer the next call writes again
            outs[k] = outs[k].copy()
        return outs

    def _first_call(self, step, env) -> None:
        n, run, k = step.node, step.run, step.kernel
        prebuilt = self._prebuilt.pop(id(k.fn), None)
        before = snapshot(k.fn)
        t0 = time.perf_counter()
        try:
            run(env)
        except LgcError:
            raise
        except Exception as e:
            raise CompileError(f"the {n.op.name} kernel from {n.prov or 'the model'} failed to "
                               f"compile: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                               ) from None
        k.compile_seconds = time.perf_counter() - t0
        label = f"{n.op.name} ({n.prov})"
        if prebuilt is not None:  # compiled before this run, here or in a worker
            k.compile_seconds += prebuilt[0]
            k.cache_hit = False
            record_compiled(prebuilt[0], label, prebuilt[1])
            return
        k.cache_hit = record_first_call(k.fn, before, k.compile_seconds, label)

    @property
    def stats(self) -> dict:
        return {
            "n_ops": len(self.graph.nodes),
            "n_optimized_ops": len(self.optimized.nodes),
            "n_kernels": len(self.kernels),
            "compile_seconds": self.build_seconds,
            "cache_hits": sum(1 for k in self.kernels if k.cache_hit),
            "cache_misses": sum(1 for k in self.kernels if k.cache_hit is False),
            "numpy_steps": sorted({s.node.op.name for s in self._steps if s.kind == "numpy"}),
            # steps a call runs (views on fixed buffers and constants are done once)
            "steps_per_call": len(self._bound),
            # compiled calls from Python per call (a `Run` of prepared calls counts one)
            "python_calls": len(self._calls),
            "workspace_bytes": self.workspace_bytes,
            # "kernels": some kernel runs on lgc's pool (BLAS single-threaded during a call);
            # "none": every step on the caller's thread (BLAS keeps its threads)
            "threads": "kernels" if self._threaded else "none",
            "process_totals": dict(STATS),
        }
