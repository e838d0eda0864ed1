"""DLArray: an array with dlarray format labels, concrete (NumPy data) or symbolic (a traced value).

Formats (API.md §1): `S` spatial, `C` channel, `B` batch, `T` time, `U` unspecified. A formatted
array is kept in canonical order `S... C B T U...`. Every operation goes through `apply`, which
either records an IR node in the active trace (symbolic operands) or evaluates the op's NumPy
reference at once (all operands concrete), so eager and traced code share one definition.
The array-free rules (labels, canonical order, reduction dims, reshape sizes, index keys) are in
lgc.shapes.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from .errors import DTypeError, FormatError, ShapeError, TraceError
from .ir import trace as _trace
from .ir.core import Value
from .ir.types import TensorType, dtype_name, is_float, np_dtype
from .ops import get_op
from .ops.base import Elementwise
from .shapes import (  # noqa: F401  (LABELS, builtins_max: importable from here as before)
    LABELS,
    builtins_max,
    canonical_order,
    check_format,
    index_key,
    reduction_axes,
    reshape_size,
)


class DLArray:
    """A deep learning array (MATLAB `dlarray`). Build one with `dlarray(x, fmt)`."""

    __slots__ = ("_data", "_value", "_trace", "_type")
    __array_priority__ = 1000

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def _concrete(cls, data: np.ndarray, fmt: str = "") -> DLArray:
        self = object.__new__(cls)
        name = dtype_name(data.dtype, "dlarray")
        # other integer widths (int16, uint8...) are stored as the IR's i64, so that the data
        # always has the dtype the type advertises
        self._data = data if data.dtype == np_dtype(name) else data.astype(np_dtype(name))
        self._value = None
        self._trace = None
        self._type = TensorType(name, self._data.shape, fmt)
        return self

    @classmethod
    def _wrap(cls, data: np.ndarray, type: TensorType) -> DLArray:
        """A concrete DLArray whose type is known to describe `data` (backend results)."""
        self = object.__new__(cls)
        self._data = data
        self._value = None
        self._trace = None
        self._type = type
        return self

    @classmethod
    def _symbolic(cls, value: Value, trace) -> DLArray:
        self = object.__new__(cls)
        self._data = None
        self._value = value
        self._trace = trace
        self._type = value.type
        return self

    def __init__(self, *args, **kwargs):
        raise TypeError("use lgc.dlarray(x, fmt) to build a DLArray")

    # --- properties ---------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._type.shape

    @property
    def dtype(self) -> np.dtype:
        return np_dtype(self._type.dtype)

    @property
    def ndim(self) -> int:
        return self._type.ndim

    @property
    def size(self) -> int:
        return self._type.size

    @property
    def fmt(self) -> str:
        return self._type.fmt

    @property
    def is_traced(self) -> bool:
        return self._value is not None

    def __len__(self) -> int:
        if not self.shape:
            raise ShapeError("len(): a 0-d dlarray has no length; use X.size")
        return self.shape[0]

    # --- conversion ---------------------------------------------------------------------------

    def _need_data(self, what: str) -> np.ndarray:
        if self._value is not None:
            raise TraceError(
                f"{what} needs the value of a traced dlarray {self._type}, which is not known "
                f"while dlfeval traces the function. Compute with lgc operations (lgc.where, "
                f"lgc.max, ...) instead of Python control flow, or return the array from the "
                f"function and use its value after dlfeval.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        data = self._need_data("converting to a NumPy array")
        return data if dtype is None else data.astype(dtype, copy=False)

    def _scalar(self, what: str) -> np.ndarray:
        data = self._need_data(what)
        if data.size != 1:
            raise ShapeError(f"{what} needs a one-element dlarray, got shape {data.shape}; "
                             f"reduce it first (lgc.sum, lgc.max, ... or X.any-like logic)")
        return data

    def __bool__(self) -> bool:
        return bool(self._scalar("branching on a dlarray (if/while/and/or)").reshape(()))

    def __float__(self) -> float:
        return float(self._scalar("float()").reshape(()))

    def __int__(self) -> int:
        return int(self._scalar("int()").reshape(()))

    def item(self):
        return self._scalar(".item()").item()

    def __repr__(self) -> str:
        if self._value is not None:
            return f"dlarray(<traced {self._type}>)"
        fmt = f", fmt={self.fmt!r}" if self.fmt else ""
        return f"dlarray({np.array2string(self._data, prefix='dlarray(')}{fmt})"

    # --- operators ----------------------------------------------------------------------------

    def __add__(self, o): return apply("add", self, o)
    def __radd__(self, o): return apply("add", o, self)
    def __sub__(self, o): return apply("sub", self, o)
    def __rsub__(self, o): return apply("sub", o, self)
    def __mul__(self, o): return apply("mul", self, o)
    def __rmul__(self, o): return apply("mul", o, self)
    def __truediv__(self, o): return apply("div", self, o)
    def __rtruediv__(self, o): return apply("div", o, self)
    def __pow__(self, o): return apply("pow", self, o)
    def __rpow__(self, o): return apply("pow", o, self)
    def __neg__(self): return apply("neg", self)
    def __pos__(self): return self
    def __abs__(self): return apply("abs", self)
    def __gt__(self, o): return apply("greater", self, o)
    def __ge__(self, o): return apply("greater_equal", self, o)
    def __lt__(self, o): return apply("less", self, o)
    def __le__(self, o): return apply("less_equal", self, o)
    def __eq__(self, o): return apply("equal", self, o)  # type: ignore[override]
    def __ne__(self, o): return apply("not_equal", self, o)  # type: ignore[override]

    __hash__ = None  # type: ignore[assignment]

    def __matmul__(self, o):
        return matmul(self, o)

    def __rmatmul__(self, o):
        return matmul(o, self)

    def __getitem__(self, key):
        return getitem(self, key)

    def __setitem__(self, key, value):
        if self._value is None and not _is_traced(value):
            self._data[key] = np.asarray(value)
            return
        if isinstance(key, DLArray) and key.dtype == np.bool_:
            res = where(key, value, self)
            self._value, self._trace, self._type = res._value, res._trace, res._type
            self._data = res._data
            return
        raise TraceError("assignment into a traced dlarray supports only boolean masks "
                         "(Y[mask] = v); use lgc.where(mask, v, Y) for other updates")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc.__name__ == "matmul" and method == "__call__" and not kwargs:
            return matmul(*inputs)
        op = _UFUNCS.get(ufunc.__name__)
        if method == "__call__" and op is not None and not kwargs:
            return apply(op, *inputs)
        arrays = [np.asarray(x) if isinstance(x, DLArray) else x for x in inputs]
        return getattr(ufunc, method)(*arrays, **kwargs)

    # --- methods mirroring the lgc functions ---------------------------------------------------

    def exp(self): return apply("exp", self)
    def log(self): return apply("log", self)
    def sqrt(self): return apply("sqrt", self)
    def abs(self): return apply("abs", self)
    def tanh(self): return apply("tanh", self)
    def sin(self): return apply("sin", self)
    def cos(self): return apply("cos", self)
    def sum(self, dim=None): return sum(self, dim)
    def mean(self, dim=None): return mean(self, dim)
    def max(self, dim=None): return max(self, dim)
    def min(self, dim=None): return min(self, dim)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int)
                       else shape)

    def astype(self, dtype):
        return apply("cast", self, dtype=dtype_name(dtype, "astype"))


_UFUNCS = {"add": "add", "subtract": "sub", "multiply": "mul", "divide": "div",
           "true_divide": "div", "power": "pow", "negative": "neg", "exp": "exp", "log": "log",
           "sqrt": "sqrt", "absolute": "abs", "tanh": "tanh", "sin": "sin", "cos": "cos",
           "maximum": "maximum", "minimum": "minimum", "greater": "greater",
           "greater_equal": "greater_equal", "less": "less", "less_equal": "less_equal",
           "equal": "equal", "not_equal": "not_equal", "sign": "sign"}


def _is_traced(x) -> bool:
    return isinstance(x, DLArray) and x._value is not None


# --- applying ops -----------------------------------------------------------------------------


def _scalar_dtype(x, hint: str | None) -> str:
    if isinstance(x, bool | np.bool_):
        return "bool"
    if isinstance(x, numbers.Integral):
        return hint if hint and hint != "bool" else "i64"
    return hint if hint and is_float(hint) else "f32"


def _as_array(x, hint: str | None, op: str) -> tuple[np.ndarray, str]:
    """A concrete operand as (array, fmt); Python scalars take the dtype of the other operands."""
    if isinstance(x, DLArray):
        return x._data, x.fmt
    if isinstance(x, numbers.Real | np.bool_ | np.integer | np.floating):
        return np.asarray(x, dtype=np_dtype(_scalar_dtype(x, hint))), ""
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    dtype_name(arr.dtype, f"{op}: operand {type(x).__name__}")  # DTypeError naming the op
    return arr, ""


def _check_same_format(op_name: str, operands) -> None:
    """Two formatted operands of an elementwise op must have the same format, whatever their
    ranks (API.md §1); only unformatted data broadcasts against a formatted array."""
    fmts = {x.fmt for x in operands if isinstance(x, DLArray) and x.fmt}
    if len(fmts) > 1:
        desc = " and ".join(f"{x.fmt or 'unformatted'} {x.shape}" for x in operands
                            if isinstance(x, DLArray | np.ndarray))
        raise FormatError(f"{op_name}: operands have different formats ({desc}); permute or "
                          f"relabel one (dlarray(stripdims(X), fmt)) first")


def apply(op_name: str, *operands, **attrs):
    """Apply a registered op: traced when any operand is symbolic, else evaluated at once."""
    dts = [x._type.dtype if isinstance(x, DLArray) else dtype_name(x.dtype, op_name)
           for x in operands if isinstance(x, DLArray | np.ndarray)]
    hint = next((d for d in dts if is_float(d)), dts[0] if dts else None)
    traced = [x for x in operands if _is_traced(x)]
    op = get_op(op_name)
    if isinstance(op, Elementwise) or op_name == "where":
        _check_same_format(op_name, operands)
    if traced:
        tr = traced[0]._trace
        if not tr.active:
            raise TraceError("a traced dlarray was used after its dlfeval returned; return it "
                             "from the function instead of storing it")
        values = []
        for x in operands:
            if _is_traced(x):
                if x._trace is not tr:
                    raise TraceError("dlarrays from two different traces were combined")
                values.append(x._value)
            else:
                arr, fmt = _as_array(x, hint, op_name)
                values.append(tr.lift(arr, fmt))
        node = tr.builder.emit_node(op_name, *values, **attrs)
        outs = [DLArray._symbolic(v, tr) for v in node.outputs]
    else:
        pairs = [_as_array(x, hint, op_name) for x in operands]
        attrs = op.normalize_attrs(attrs)
        types = [TensorType(dtype_name(a.dtype), a.shape, f) for a, f in pairs]
        out_types = op.infer(types, **attrs)
        res = op.ref(*(a for a, _ in pairs), **attrs)
        res = res if isinstance(res, tuple) else (res,)
        outs = [DLArray._concrete(np.asarray(r), t.fmt) for r, t in zip(res, out_types)]
    return outs[0] if len(outs) == 1 else tuple(outs)


def provenance(name: str):
    """Context manager: label the nodes traced inside with `name` (when none is set yet)."""
    import contextlib

    tr = _trace.current()
    if tr is None or tr.builder.prov:
        return contextlib.nullcontext()
    return tr.builder.provenance(name)


# --- construction and format functions --------------------------------------------------------


def dlarray(x, fmt: str = "") -> DLArray:
    """dlarray(X, fmt) — a deep learning array with format labels.

    Args:
        x: NumPy array, Python scalar or list, or DLArray.
        fmt: labels `S C B T U`, one per dimension (extra labels add trailing size-1 dims).
    Returns:
        A DLArray permuted to the canonical order `S... C B T U...`.

    Example: `dlarray(np.zeros((64, 1, 28, 28)), "BCSS")` has shape (28, 28, 1, 64), fmt "SSCB".
    MATLAB difference: data is row-major; reshape follows NumPy.
    """
    if not isinstance(fmt, str):
        raise FormatError(f"dlarray: fmt must be a string such as 'SSCB', got {fmt!r}")
    if isinstance(x, DLArray):
        if not fmt:
            return x
        base = stripdims(x)
    else:
        arr = np.asarray(x)
        dtype_name(arr.dtype, "dlarray")
        base = DLArray._concrete(arr)
    check_format(fmt, base.shape)
    if not fmt:
        return base
    shape = base.shape + (1,) * (len(fmt) - base.ndim)
    if shape != base.shape:
        base = reshape(base, shape)
    perm = canonical_order(fmt)
    out = apply("transpose", base, perm=perm) if perm != list(range(len(fmt))) else base
    cfmt = "".join(fmt[p] for p in perm)
    shape = out.shape
    while len(cfmt) > 2 and cfmt[-1] == "U" and shape[-1] == 1:
        cfmt, shape = cfmt[:-1], shape[:-1]
    if shape != out.shape:
        out = reshape(out, shape)
    return apply("relabel", out, fmt=cfmt)


def dims(x: DLArray) -> str:
    """dims(X) — the format labels of X (`""` when unformatted)."""
    return x.fmt if isinstance(x, DLArray) else ""


def finddim(x: DLArray, label: str) -> tuple[int, ...]:
    """finddim(X, label) — the 0-based dimensions of X with that label.

    MATLAB difference: 0-based indices.
    """
    if not isinstance(label, str) or len(label) != 1 or label not in LABELS:
        raise FormatError(f"finddim: label must be one of S, C, B, T, U, got {label!r}")
    return tuple(i for i, c in enumerate(dims(x)) if c == label)


def extractdata(x) -> np.ndarray:
    """extractdata(X) — the data of X as a NumPy array in canonical order."""
    if isinstance(x, DLArray):
        return x._need_data("extractdata")
    return np.asarray(x)


def stripdims(x) -> DLArray:
    """stripdims(X) — X without its format labels (same data)."""
    x = x if isinstance(x, DLArray) else dlarray(x)
    return x if not x.fmt else apply("relabel", x, fmt="")


# --- math, reductions, shape ------------------------------------------------------------------


def _unary(name: str, doc: str):
    def fn(x):
        return apply(name, x)
    fn.__name__ = name
    fn.__doc__ = doc
    return fn


exp = _unary("exp", "exp(X) — elementwise e^X.")
log = _unary("log", "log(X) — elementwise natural logarithm.")
sqrt = _unary("sqrt", "sqrt(X) — elementwise square root.")
abs = _unary("abs", "abs(X) — elementwise absolute value.")  # noqa: A001
sin = _unary("sin", "sin(X) — elementwise sine.")
cos = _unary("cos", "cos(X) — elementwise cosine.")


def maximum(a, b):
    """max(A, B) — elementwise maximum (MATLAB's two-argument max)."""
    return apply("maximum", a, b)


def minimum(a, b):
    """min(A, B) — elementwise minimum (MATLAB's two-argument min)."""
    return apply("minimum", a, b)


def where(cond, a, b):
    """Elementwise select: `a` where `cond` is true, else `b` (formats as in arithmetic)."""
    return apply("where", cond, a, b)


def _reduce(fn: str, op: str, x, dim):
    axes, keep = reduction_axes(fn, np.shape(x), dim)
    y = apply(op, x, axes=axes, keepdims=keep)
    return y if keep else stripdims(y)


def sum(x, dim=None):  # noqa: A001
    """sum(X, dim) — sum over `dim` (0-based int, tuple, or "all"; default all elements).

    A reduction over some dims keeps them as size 1 and keeps the format; over all elements it
    gives an unformatted scalar. MATLAB difference: 0-based dims; no dim means all elements.
    """
    return _reduce("sum", "reduce_sum", x, dim)


def mean(x, dim=None):
    """mean(X, dim) — mean over `dim` (same conventions as `sum`)."""
    axes, _ = reduction_axes("mean", np.shape(x), dim)
    n = int(np.prod([np.shape(x)[a] for a in axes], dtype=np.int64))
    if n == 0:
        raise ShapeError(f"mean: no elements to average over dims {axes} of {np.shape(x)}")
    return sum(x, dim) * (1.0 / n)


def max(x, dim=None):  # noqa: A001
    """max(X, [], dim) — maximum over `dim` (same conventions as `sum`)."""
    return _reduce("max", "reduce_max", x, dim)


def min(x, dim=None):  # noqa: A001
    """min(X, [], dim) — minimum over `dim` (same conventions as `sum`)."""
    return _reduce("min", "reduce_min", x, dim)


def reshape(x, shape: Sequence[int]) -> DLArray:
    """reshape(X, shape) — row-major (NumPy order); the result is unformatted.

    One entry may be -1. MATLAB difference: MATLAB reshapes column-major.
    """
    size = x.size if isinstance(x, DLArray) else np.size(x)
    shape = reshape_size(shape, np.shape(x), size)
    if shape == tuple(np.shape(x)):
        return stripdims(x)
    return apply("reshape", x, shape=shape)


def matmul(a, b) -> DLArray:
    """A @ B for unformatted 2-D arrays; use fullyconnect for formatted data."""
    for name, v in (("A", a), ("B", b)):
        if dims(v):
            raise FormatError(f"matmul: {name} is formatted ({dims(v)} {np.shape(v)}); @ works "
                              f"on unformatted 2-D arrays, use fullyconnect for layers")
    return apply("matmul", a, b)


def getitem(x: DLArray, key) -> DLArray:
    """Basic indexing: ints, slices with positive steps, Ellipsis. Keeps the format of the
    dimensions that remain."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(isinstance(k, DLArray | np.ndarray | list) for k in key):
        raise DTypeError(f"index: dlarray indexing supports ints, slices and ..., got an array "
                         f"index into shape {x.shape}; use lgc.where for masks")
    starts, stops, steps, drop = index_key(key, x.shape)
    y = x
    if (starts, stops, steps) != ([0] * x.ndim, list(x.shape), [1] * x.ndim):
        y = apply("slice", x, starts=starts, stops=stops, steps=steps)
    if drop:
        keep = [d for d in range(x.ndim) if d not in drop]
        fmt = "".join(x.fmt[d] for d in keep) if x.fmt else ""
        y = apply("relabel", reshape(y, [y.shape[d] for d in keep]), fmt=fmt)
    return y
