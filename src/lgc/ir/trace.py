"""Tracing: run a Python function on symbolic dlarrays and record the op IR it performs.

A `Trace` owns a Builder. While it is active (`with trace:`), every op applied to a symbolic
DLArray appends a node; concrete arrays met along the way become constants (small) or captured
inputs (large, appended after the arguments). `trace_function` returns a `Program`: the graph
plus the structures needed to map Python arguments and results to and from its flat inputs and
outputs.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import numpy as np

from .. import tree
from ..errors import TraceError
from .core import Builder, Graph, Value
from .types import TensorType, dtype_name

CONST_INLINE_MAX = 16  # arrays up to this many elements become constant nodes, larger are inputs

_stack: list[Trace] = []


def current() -> Trace | None:
    return _stack[-1] if _stack else None


class Trace:
    def __init__(self, name: str):
        self.builder = Builder(Graph(name))
        self.captures: list[np.ndarray] = []
        self.capture_values: list[Value] = []
        self.closed_by_gradient = False  # a dlgradient without RetainData=True ran
        self.active = False

    def __enter__(self) -> Trace:
        _stack.append(self)
        self.active = True
        return self

    def __exit__(self, *exc) -> None:
        self.active = False
        _stack.remove(self)

    def lift(self, array: np.ndarray, fmt: str = "") -> Value:
        """A concrete array as a value of this trace."""
        b = self.builder
        if array.size <= CONST_INLINE_MAX:
            v = b.const(array, dtype_name(array.dtype))
        else:
            v = Value(TensorType(dtype_name(array.dtype), array.shape),
                      name=f"const{len(self.captures)}")
            self.captures.append(array)
            self.capture_values.append(v)
        return b.relabel(v, fmt)


def _sanitize(path: str) -> str:
    return re.sub(r"[\s,:()=%]", "_", path) or "arg"


class Program:
    """A traced function: `graph` (forward and gradient ops, before optimization) and the
    structures that map Python arguments and results to its flat inputs and outputs."""

    def __init__(self, graph: Graph, in_struct, out_struct, out_kinds: list[str],
                 captures: list[np.ndarray]):
        self.graph = graph
        self.in_struct = in_struct
        self.out_struct = out_struct
        self.out_kinds = out_kinds  # "dlarray" or "numpy" per output leaf
        self.captures = captures

    def __str__(self) -> str:
        return str(self.graph)

    def __repr__(self) -> str:
        return f"<Program @{self.graph.name}: {len(self.graph.nodes)} ops>"

    def to_networkx(self):
        return self.graph.to_networkx()


def arg_names(fun, n: int) -> list[str]:
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = []
    for i in range(n):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                  params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        elif params and params[-1].kind == params[-1].VAR_POSITIONAL:
            names.append(f"{params[-1].name}{i - len(params) + 1}")
        else:
            names.append(f"arg{i}")
    return names


def trace_function(fun, args: tuple, name: str | None = None) -> Program:
    from ..dlarray import DLArray

    if current() is not None:
        raise TraceError("dlfeval cannot be nested inside a traced function; call the inner "
                         "function directly (its ops are traced into the outer one)")
    names = arg_names(fun, len(args))
    leaves, in_struct = tree.flatten(dict(zip(names, args)))
    tr = Trace(name or getattr(fun, "__name__", "fun").replace("<lambda>", "lambda"))
    sym = []
    for path, x in leaves:
        t = x._type if isinstance(x, DLArray) else TensorType(
            dtype_name(x.dtype, f"dlfeval({tr.builder.graph.name}): argument {path}"), x.shape)
        if isinstance(x, DLArray) and x._value is not None:
            raise TraceError(f"argument {path} is a traced dlarray of another trace")
        sym.append(DLArray._symbolic(tr.builder.input(t, _sanitize(path)), tr))
    sym_args = tree.unflatten(in_struct, sym)
    with tr:
        out = fun(*sym_args.values())
    out_leaves, out_struct = tree.flatten(out)
    outputs, kinds = [], []
    for path, y in out_leaves:
        if isinstance(y, DLArray) and y._value is not None:
            if y._trace is not tr:
                raise TraceError(f"output {path or 0} belongs to another trace")
            outputs.append(y._value)
            kinds.append("dlarray")
        else:
            arr = np.asarray(y)
            with tr:
                outputs.append(tr.lift(arr, getattr(y, "fmt", "")))
            kinds.append("dlarray" if isinstance(y, DLArray) else "numpy")
    g = tr.builder.graph
    g.inputs.extend(tr.capture_values)
    g.outputs = outputs
    return Program(g, in_struct, out_struct, kinds, tr.captures)


def signature(args: tuple) -> tuple[tuple, list[np.ndarray]]:
    """The cache key of an argument tuple (its structure and each array's type), and its
    arrays in order."""
    from ..dlarray import DLArray

    if type(args) is tuple and all(type(x) is DLArray and x._value is None for x in args):
        # the usual call, a tuple of dlarrays: the key tree.flatten would give, built directly
        return ((("tuple", (tree.LEAF,) * len(args)), tuple(x._type for x in args)),
                [x._data for x in args])
    leaves, struct = tree.flatten(args)
    types, arrays = [], []
    for _, x in leaves:
        if type(x) is DLArray:
            if x._value is not None:
                raise TraceError("dlfeval cannot be nested inside a traced function")
            types.append(x._type)
            arrays.append(x._data)
        else:
            types.append(("numpy", x.dtype.str, x.shape))
            arrays.append(x)
    return (struct, tuple(types)), arrays


def unflatten_outputs(program: Program, arrays: list[np.ndarray], struct=None) -> Any:
    """The program's outputs as the traced function returned them; with `struct`, only its
    first outputs (`arrays`), as that structure."""
    from ..dlarray import DLArray

    out = []
    for v, kind, a in zip(program.graph.outputs, program.out_kinds, arrays):
        out.append(DLArray._wrap(a, v.type) if kind == "dlarray" else a)
    return tree.unflatten(program.out_struct if struct is None else struct, out)
