"""The op registry: one `OpDef` subclass per primitive, everything about the op in one place.

An op holds its IR name, a one-line math docstring, its attributes with defaults, `infer`
(output types; raises ShapeError/FormatError naming the op), `ref` (the NumPy definition),
`vjp` (emits the input cotangents as IR through a Builder; never computes numbers) and, for the
tests, `samples` (inputs in the domain where the op is smooth). Autodiff, passes and backends
never name a specific op: they ask the op.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import DTypeError, FormatError, ShapeError
from ..ir.types import TensorType, is_float, np_dtype, result_dtype

if TYPE_CHECKING:
    from ..ir.core import Builder, Node, Value

REGISTRY: dict[str, OpDef] = {}


def register(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator: instantiate the op and add it to the registry under `cls.name`."""
    assert cls.name and cls.name not in REGISTRY, f"duplicate or missing op name {cls.name!r}"
    REGISTRY[cls.name] = cls()
    return cls


def get_op(name: str) -> OpDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown op {name!r}") from None


@dataclass
class Sample:
    """One test case for an op: float64 inputs and attributes, in the op's smooth domain."""

    args: list[np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    # inputs that must not be perturbed in finite-difference checks (indices, masks)
    nondiff: tuple[int, ...] = ()


@dataclass
class Lowering:
    """A whole-array lowering of one node for the Numba backend.

    `call(kernel, inputs, outputs)` computes the node, writing into `outputs` (preallocated,
    C-contiguous arrays of the node's output types). `source` defines a Numba function named
    `kernel` (compiled, cached on disk and passed to `call`); with no source, `kernel` is None
    and `call` uses NumPy/BLAS directly (e.g. a concatenation with `out=`). Sizes never appear
    in the source: one kernel serves every shape of the same rank and dtype.

    A lowering whose call only passes views of its arrays to the kernel gives `args(inputs,
    outputs)`, the kernel's arguments, instead of `call`: a backend then builds the call once
    when the arrays are the same on every call (buffers of its own).
    """

    call: Callable[[Any, list[np.ndarray], list[np.ndarray]], None] | None = None
    source: str = ""
    # None: `kernel` is called as is; n: its source takes (t, T) last (see `split_loop`) and
    # the `kernel` handed to `call` runs it on n threads at once
    threads: int | None = None
    args: Callable[[list[np.ndarray], list[np.ndarray]], list] | None = None
    # the elements of work behind `threads` when the kernel may also run as its part (0, 1)
    # (a loop split by `split_loop`): a call that is not prepared then runs on one thread
    # below PYTHON_CALL_MIN_ELEMENTS; 0: always on `threads`
    work: int = 0
    # a kernel whose threads meet at step barriers (`step_barrier`): their counters. The
    # runtime runs it on one thread for a while when its calls on `threads` take longer than
    # one thread would (a partner descheduled by other processes' load), and makes the
    # counters equal again before the threads take it back
    sync: Any = None
    # the kernel's arrays typed with layout "A" whatever their order (the same data model):
    # one compiled version for every layout of its operands, for a kernel that only passes
    # its arrays on (a matmul's to the panel kernel and BLAS), not one loop over them
    any_layout: bool = False

    def __post_init__(self):
        if self.call is None:
            if self.args is None or not self.source:
                raise TypeError("Lowering needs `call`, or `args` with a kernel `source`")
            args = self.args
            self.call = lambda kernel, ins, outs: kernel(*args(ins, outs))

    @classmethod
    def looped(cls, template: str, size: int, call=None, args=None) -> Lowering:
        """A lowering whose template loops `for ... in LOOP(n):` over `size` elements of
        work, on as many threads as that pays for."""
        threads = kernel_threads(size)
        return cls(call, split_loop(template, threads), threads, args, size)


# Below this, a kernel runs on one thread: a prepared call on two threads costs ~3 us more
# than on one (backend/numba/launch.py), a kernel's 32k elements take ~10 us
PARALLEL_MIN_ELEMENTS = 1 << 15
# A call that is not prepared (its arrays new on each call) packs its arguments anew (~1 us an
# array), and its first goes through Python (a wake-up of the workers: 20-60 us): such a call
# of a kernel with less work than this runs on one thread (Lowering.work)
PYTHON_CALL_MIN_ELEMENTS = 1 << 18


def kernel_threads(size: int) -> int:
    """How many threads a kernel over `size` elements runs on: one below
    PARALLEL_MIN_ELEMENTS, else Numba's thread count."""
    if size < PARALLEL_MIN_ELEMENTS:
        return 1
    import numba

    return numba.get_num_threads()


def split_loop(source: str, threads: int, unsigned: bool = False) -> str:
    """A kernel template whose outer loop is `for ... in LOOP(n):`, as a kernel that takes
    (t, T) last and, when `threads` > 1, runs the t-th of T equal parts of that loop (backend/
    numba/threads.py calls it once per thread). A serial kernel keeps `range(n)`: a loop from 0
    lets LLVM drop the negative-index checks of every access (2x on LSTM gates, measured).
    `unsigned` gives a threaded loop unsigned bounds for the same effect; only for a loop
    variable used purely as an index (unsigned with signed arithmetic makes floats)."""
    if threads <= 1:
        part = r"range(\1)"
    elif unsigned:
        part = r"range(np.uint64(t * \1 // T), np.uint64((t + 1) * \1 // T))"
    else:
        part = r"range(t * \1 // T, (t + 1) * \1 // T)"
    source = re.sub(r"LOOP\(([^()]*)\)", part, source)
    return re.sub(r"^def kernel\((.*)\):", r"def kernel(\1, t, T):", source, count=1)


def pkq(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int]:
    """(P, K, Q) sizes of `shape` grouped around one contiguous block of `axes` (K)."""
    axes = tuple(sorted(axes))
    assert axes == tuple(range(axes[0], axes[-1] + 1)), axes
    prod = lambda xs: int(np.prod(xs, dtype=np.int64))  # noqa: E731
    return prod(shape[:axes[0]]), prod(shape[axes[0]:axes[-1] + 1]), prod(shape[axes[-1] + 1:])


class OpDef:
    name: ClassVar[str] = ""
    attrs: ClassVar[dict[str, Any]] = {}
    differentiable: ClassVar[bool] = True
    pure: ClassVar[bool] = True  # False: every call differs (random); passes must not merge it
    # False only where the op is kinked (relu, max...): the tests then skip the numerical
    # check of its second derivative (its VJP rule is still differentiated like any graph)
    second_order: ClassVar[bool] = True
    # Lowering, declared here so backends never name an op. `expr` is the scalar template of a
    # fusible elementwise op ({0}, {1} operands, {attr} attributes). Reductions give `reduce`:
    # the accumulator's start value and update expression in `acc` and `v`.
    # Other ops may give a whole-array lowering in `lower_numba` (see `Lowering`).
    expr: ClassVar[str] = ""
    # the CPU kernels' spelling of `expr` where it differs: vectorizable functions from
    # backend/numba/intrinsics.py instead of libm calls (CUDA keeps `expr`: its math is fast)
    expr_cpu: ClassVar[str] = ""
    fusible: ClassVar[bool] = False
    reduce: ClassVar[tuple[str, str] | None] = None
    # an identity on the data (relabel, stop_gradient): fused only into an existing group,
    # otherwise run as a free view
    alias: ClassVar[bool] = False

    @property
    def reshapes(self) -> bool:
        """Whether the output is the first input's elements in the same C order (an alias, a
        reshape): a backend may give it the input's memory."""
        return self.alias

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(attrs) - set(self.attrs)
        assert not unknown, f"{self.name}: unknown attributes {sorted(unknown)}"
        return {**self.attrs, **attrs}

    def infer(self, in_types: list[TensorType], **attrs) -> list[TensorType]:
        raise NotImplementedError

    def ref(self, *args: np.ndarray, **attrs):
        raise NotImplementedError

    def vjp(self, b: Builder, node: Node, cts: list[Value | None]) -> list[Value | None]:
        raise NotImplementedError(f"{self.name} has no VJP rule")

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        return []

    def lower_numba(self, node: Node) -> Lowering | None:
        """How the Numba backend runs this op when it is not fused: None runs `ref`."""
        return None

    def blas_flops(self, node: Node) -> int:
        """The flops of the product this op computes through BLAS (a matmul)."""
        return 0

    def simplify(self, node: Node, b: Builder) -> list[Value] | None:
        """An algebraic rewrite of `node` (replacement values), or None to keep it."""
        return None

    def prune(self, node: Node, used: tuple[bool, ...]) -> dict[str, Any] | None:
        """Attributes under which `node` computes less, given which of its outputs anything
        reads (`used`; some are not): the unread ones may then be computed no longer (their
        types may change: nothing reads them). None: as it is. Called by dead-code
        elimination."""
        return None

    def __repr__(self) -> str:
        return f"<op {self.name}>"


def constant_value(v: Value) -> np.ndarray | None:
    """The array a value always holds, when its producer is a constant or a fill."""
    n = v.producer
    if n is None or n.inputs or not n.op.pure or n.op.differentiable:
        return None
    res = n.op.ref(**n.attrs)
    return np.asarray(res[v.index] if isinstance(res, tuple) else res)


def is_constant(v: Value, c: float) -> bool:
    """True when `v` always holds `c` in every element."""
    a = constant_value(v)
    return a is not None and bool(np.all(a == c))


def same_type_input(node: Node, *candidates: int) -> list[Value] | None:
    """[input k] for the first candidate k whose type equals the node's output type."""
    for k in candidates:
        if node.inputs[k].type == node.outputs[0].type:
            return [node.inputs[k]]
    return None


# --- shared helpers for infer -----------------------------------------------------------------


def broadcast_shapes(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ShapeError(
            f"{op}: operand shapes {' and '.join(str(tuple(s)) for s in shapes)} do not broadcast"
        ) from None


def merge_formats(op: str, types: list[TensorType], ndim: int) -> str:
    """The format of an elementwise result: that of the formatted full-rank operands."""
    fmts = {t.fmt for t in types if t.fmt and t.ndim == ndim}
    if len(fmts) > 1:
        desc = ", ".join(f"{t.fmt or 'unformatted'} {t.shape}" for t in types)
        raise FormatError(f"{op}: operands have different formats ({desc}); permute one first")
    return fmts.pop() if fmts else ""


def require_float(op: str, t: TensorType, arg: str = "input") -> None:
    if not is_float(t.dtype):
        raise DTypeError(f"{op}: {arg} must be float32 or float64, got {t.dtype} {t.shape}")


class Elementwise(OpDef):
    """An elementwise op with NumPy broadcasting among its inputs.

    Subclasses give `np_fn` (the reference), `expr` (the scalar template codegen inlines;
    `{0}`, `{1}` are the operands, `{attr}` an attribute) and `partials`, which returns the
    cotangent of each input at the broadcast output shape; the base class sums them back to
    each input's shape and dtype.
    """

    arity: ClassVar[int] = 1
    fusible = True
    out_dtype: ClassVar[str | None] = None  # fixed result dtype (comparisons give bool)
    float_only: ClassVar[bool] = True
    domain: ClassVar[tuple[float, float]] = (-2.0, 2.0)

    def np_fn(self, *args, **attrs):
        raise NotImplementedError

    def infer(self, in_types, **attrs):
        assert len(in_types) == self.arity, (self.name, len(in_types))
        if self.float_only:
            for i, t in enumerate(in_types):
                require_float(self.name, t, f"operand {i}")
        shape = broadcast_shapes(self.name, *(t.shape for t in in_types))
        fmt = merge_formats(self.name, in_types, len(shape))
        dtype = self.out_dtype or result_dtype(*(t.dtype for t in in_types))
        return [TensorType(dtype, shape, fmt)]

    def ref(self, *args, **attrs):
        dtype = np_dtype(result_dtype(*(_ir_dtype(a) for a in args)))
        out = self.np_fn(*args, **attrs)
        return np.asarray(out, dtype=np_dtype(self.out_dtype) if self.out_dtype else dtype)

    def partials(self, b: Builder, node: Node, ct: Value) -> list[Value | None]:
        raise NotImplementedError(f"{self.name} has no VJP rule")

    def vjp(self, b, node, cts):
        (ct,) = cts
        if ct is None:
            return [None] * len(node.inputs)
        out = []
        for x, g in zip(node.inputs, self.partials(b, node, ct)):
            if g is None or not is_float(x.dtype):
                out.append(None)
                continue
            g = b.sum_to(g, x.shape)
            if g.dtype != x.dtype:
                g = b.emit("cast", g, dtype=x.dtype)
            out.append(g)
        return out

    def samples(self, rng):
        lo, hi = self.domain
        u = lambda *s: rng.uniform(lo, hi, size=s)  # noqa: E731
        if self.arity == 1:
            return [Sample([u(3, 4)]), Sample([u(5)])]
        if self.arity == 2:
            return [Sample([u(3, 4), u(3, 4)]), Sample([u(3, 4), u(4)]),
                    Sample([u(3, 1), u(1, 4)])]
        return [Sample([u(*(3, 4)) for _ in range(self.arity)])]


def _ir_dtype(a) -> str:
    from ..ir.types import dtype_name

    return dtype_name(np.asarray(a).dtype)
