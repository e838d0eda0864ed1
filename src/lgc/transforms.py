"""Function transforms: dlfeval, dlgradient, trace, grad, value_and_grad (API.md §3).

dlfeval traces the function once per input signature (structure, shapes, dtypes, formats and
the values of non-array arguments), compiles the traced program with the selected backend,
caches it, and afterwards runs the compiled program. dlgradient emits the gradient IR into the
same trace by source transformation (`autodiff.backward`).
"""

from __future__ import annotations

import weakref

from . import debug, tree
from .autodiff import backward
from .backend import compile_graph, get_backend
from .dlarray import DLArray
from .errors import TraceError
from .ir import trace as _trace
from .ir.types import is_float

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_STRONG: dict = {}  # for callables that cannot be weakly referenced


def _cache_for(fun) -> dict:
    try:
        return _CACHE.setdefault(fun, {})
    except TypeError:
        return _STRONG.setdefault(fun, {})


def trace(fun, *args) -> _trace.Program:
    """lgc.trace(fun, *args) — the Program dlfeval would compile for these arguments: the
    forward and gradient ops, before optimization. `str(program)` is its IR text."""
    if not callable(fun):
        raise TraceError(f"trace: fun must be a function, got {type(fun).__name__}")
    program = _trace.trace_function(fun, args)
    if debug.level() >= 2:
        debug.dump(f"traced @{program.graph.name}", str(program))
    return program


def dlfeval(fun, *args):
    """dlfeval(fun, X1, ..., Xn) — evaluate a deep learning model function with tracing.

    Args:
        fun: a function of dlarrays; it may call dlgradient.
        *args: DLArrays, NumPy arrays, Python values and nests of dict / list / tuple / Table.
    Returns:
        What `fun` returns, with every dlarray concrete.

    The function is traced once per argument signature and the compiled program is reused,
    so Python side effects in `fun` happen only when it is traced. Example::

        def modelLoss(w, x, t):
            loss = mse(fullyconnect(x, w, 0), t)
            return loss, dlgradient(loss, w)
        loss, g = dlfeval(modelLoss, w, x, t)
    """
    if not callable(fun):
        raise TraceError(f"dlfeval: fun must be a function, got {type(fun).__name__}")
    return run(fun, args, get_backend())


def compiled(fun, args: tuple, backend: str, key=None):
    """The (program, executable) for `fun` at these arguments: traced and compiled on the
    first call with a new signature, from the per-function cache afterwards."""
    if key is None:
        key = _trace.signature(args)[0]
    key = (key, backend)
    try:
        hash(key)
    except TypeError:
        key = None  # an unhashable non-array argument: trace on every call, cache nothing
    cache = _cache_for(fun)
    entry = cache.get(key) if key is not None else None
    if entry is None:
        program = trace(fun, *args)
        entry = (program, compile_graph(program.graph, backend))
        if key is not None:
            cache[key] = entry
    return entry


def run(fun, args: tuple, backend: str):
    key, arrays = _trace.signature(args)
    program, exe = compiled(fun, args, backend, key)
    outs = exe(arrays + program.captures if program.captures else arrays)
    return _trace.unflatten_outputs(program, outs)


def dlgradient(y, *xs, RetainData=False, EnableHigherDerivatives=False):  # noqa: N803
    """dlgradient(y, x1, ..., xk) — gradients of scalar y, inside dlfeval.

    Args:
        y: a one-element real dlarray that depends on the traced inputs.
        xs: DLArrays or nests (dict / list / tuple / Table) of them.
        RetainData: must be True on every dlgradient call but the last one in a dlfeval.
        EnableHigherDerivatives: make the returned gradients differentiable again; as in
            MATLAB, this also retains the trace (RetainData is then ignored).
    Returns:
        One gradient with the structure, shape and format of x per x; a tuple when several.
    """
    tr = _trace.current()
    if tr is None:
        raise TraceError("dlgradient can only be called inside a function evaluated by dlfeval "
                         "(or lgc.compile / lgc.trace)")
    if not xs:
        raise TraceError("dlgradient: give at least one x to differentiate with respect to")
    if not isinstance(y, DLArray) or y._value is None or y._trace is not tr:
        raise TraceError(f"dlgradient: y must be a dlarray computed from the traced inputs of "
                         f"dlfeval; got {type(y).__name__} {getattr(y, 'shape', '')}")
    if y.size != 1 or not is_float(y._type.dtype):
        raise TraceError(f"dlgradient: y must be a real one-element dlarray, got {y._type}")
    if tr.closed_by_gradient:
        raise TraceError("dlgradient: an earlier dlgradient call in this dlfeval had "
                         "RetainData=False; pass RetainData=True to every call but the last")
    if not (RetainData or EnableHigherDerivatives):
        tr.closed_by_gradient = True
    leaves, structs = [], []
    for k, x in enumerate(xs):
        lv, st = tree.flatten(x)
        if not lv and not isinstance(x, dict | list | tuple):
            raise TraceError(f"dlgradient: x{k + 1} is a {type(x).__name__}, not a dlarray or a "
                             f"nest of dlarrays")
        for path, leaf in lv:
            if not isinstance(leaf, DLArray) or leaf._value is None or leaf._trace is not tr:
                where = f"x{k + 1}" + (f" at {path}" if path else "")
                raise TraceError(f"dlgradient: {where} is not a traced dlarray; differentiate "
                                 f"with respect to dlarrays passed to dlfeval or computed from "
                                 f"them")
        leaves.append([leaf for _, leaf in lv])
        structs.append(st)
    b = tr.builder
    flat = [leaf._value for group in leaves for leaf in group]
    with b.provenance("dlgradient"):
        grads = backward(b, y._value, flat)
        if not EnableHigherDerivatives:
            grads = [b.emit("stop_gradient", g) for g in grads]
    it = iter(DLArray._symbolic(g, tr) for g in grads)
    out = tuple(tree.unflatten(st, [next(it) for _ in group]) for st, group in zip(structs, leaves))
    return out[0] if len(out) == 1 else out


def value_and_grad(fun, argnums=0, _name="value_and_grad"):
    """lgc.value_and_grad(fun, argnums=0) — a function returning `(fun(*args), gradient)`,
    the gradient taken with respect to argument `argnums` (an int or a tuple of ints; a tuple
    gives a tuple of gradients). `fun` is traced once per signature, as with dlfeval."""
    if not callable(fun):
        raise TraceError(f"{_name}: fun must be a function, got {type(fun).__name__}")
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    if not nums or not all(isinstance(i, int) for i in nums):
        raise TraceError(f"{_name}: argnums must be an int or a non-empty tuple of ints, "
                         f"got {argnums!r}")

    def evaluate(*args):
        bad = [i for i in nums if not -len(args) <= i < len(args)]
        if bad:
            raise TraceError(f"{_name}: argnums {argnums!r} is out of range for "
                             f"{len(args)} arguments")
        y = fun(*args)
        g = dlgradient(y, *(args[i] for i in nums))
        # a tuple of argnums always gives a tuple of gradients, even of one (as in JAX)
        return y, (g if single or len(nums) > 1 else (g,))

    evaluate.__name__ = f"value_and_grad_{getattr(fun, '__name__', 'fun')}"

    def wrapped(*args):
        return dlfeval(evaluate, *args)

    wrapped.__wrapped__ = fun
    return wrapped


def grad(fun, argnums=0):
    """lgc.grad(fun, argnums=0) — a function returning the gradient of scalar `fun` with
    respect to argument `argnums` (an int or a tuple of ints)."""
    vg = value_and_grad(fun, argnums, _name="grad")

    def wrapped(*args):
        return vg(*args)[1]

    wrapped.__wrapped__ = fun
    return wrapped
