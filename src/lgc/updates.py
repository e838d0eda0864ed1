"""adamupdate, rmspropupdate, sgdmupdate, dlupdate (API.md §6).

Parameters, gradients and optimizer state live in flat buffers, one per (dtype, learn-rate
factor) group, and the returned parameters and state are dlarray views into them. The update is
one compiled loop over each flat buffer, in place; hyperparameters and the iteration are kernel
arguments. On the first call (or when given arrays that are not such views) the values are
copied into new flat buffers; later calls with the returned objects update in place.
"""

from __future__ import annotations

import numpy as np

from . import tree
from .backend import get_backend
from .dlarray import DLArray
from .errors import ShapeError
from .ir.core import Builder
from .ir.types import TensorType, dtype_name, is_float
from .ops import get_op


class _Group:
    """Leaves of one dtype and learn-rate factor, packed into flat buffers."""

    def __init__(self, dtype: np.dtype, factor: float, members: list[int], shapes, n_state):
        self.dtype, self.factor, self.members = dtype, factor, members
        sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.shapes = shapes
        n = int(self.offsets[-1])
        self.theta = np.empty(n, dtype)
        self.grad = np.empty(n, dtype)
        self.state = [np.zeros(n, dtype) for _ in range(n_state)]

    def views(self, flat: np.ndarray) -> list[np.ndarray]:
        return [flat[a:b].reshape(s) for a, b, s in zip(self.offsets[:-1], self.offsets[1:],
                                                         self.shapes)]


class _Packed:
    """The flat buffers behind one parameter structure, and the views handed to the user."""

    def __init__(self, leaves: list[np.ndarray], factors: list[float], n_state: int):
        keys: dict[tuple, list[int]] = {}
        for i, (a, f) in enumerate(zip(leaves, factors)):
            keys.setdefault((a.dtype.str, f), []).append(i)
        self.groups = [_Group(np.dtype(dt), f, idx, [leaves[i].shape for i in idx], n_state)
                       for (dt, f), idx in keys.items()]
        self.param_views = [None] * len(leaves)
        self.state_views = [[None] * len(leaves) for _ in range(n_state)]
        for g in self.groups:
            for i, v in zip(g.members, g.views(g.theta)):
                self.param_views[i] = v
            for k in range(n_state):
                for i, v in zip(g.members, g.views(g.state[k])):
                    self.state_views[k][i] = v
        for i, a in enumerate(leaves):
            self.param_views[i][...] = a
        self._wrapped: dict[tuple, list] = {}

    def wrapped(self, fmts: tuple[str, ...]) -> list[list[DLArray]]:
        """The parameter and state views as dlarrays with formats `fmts`, made once: they
        are views of buffers updated in place, so the same objects serve every call."""
        out = self._wrapped.get(fmts)
        if out is None:
            out = self._wrapped[fmts] = [[DLArray._concrete(v, f) for v, f in zip(views, fmts)]
                                         for views in (self.param_views, *self.state_views)]
        return out

    def owns(self, arrays: list[np.ndarray], views: list[np.ndarray]) -> bool:
        return len(arrays) == len(views) and all(a is v for a, v in zip(arrays, views))


_PACKED: dict[int, _Packed] = {}  # id of the first parameter view -> its packing
_MAX_PACKED = 16


def _data(x) -> np.ndarray:
    return x._data if isinstance(x, DLArray) else np.asarray(x)


def _learn_rate_factors(params, n: int) -> list[float]:
    factors = getattr(params, "learn_rate_factors", None)
    return list(factors()) if callable(factors) else [1.0] * n


def network_parts(params):
    """(learnables nest, rebuild(learnables, state) -> params, state Table or None, learn-rate
    factors or None). A dlnetwork's learnables are its Learnables table; its layers' learn-rate
    factors multiply the global rate."""
    from .dlnetwork import DLNetwork

    if isinstance(params, DLNetwork):
        arch, learn = params._arch, params.Learnables
        factors = [arch.layers[la].learn_rate_factor(pa) for la, pa in zip(learn.Layer,
                                                                          learn.Parameter)]

        def rebuild(learnables, state):
            return DLNetwork(arch, learnables, state, params.Initialized)
        return learn, rebuild, params.State, factors
    return params, (lambda learnables, state: learnables), None, None


def _kernel_runner(op_name: str, n_arrays: int):
    """Run an update op over flat buffers, in place: the compiled kernel on the Numba backend,
    the op's NumPy reference on the reference backend."""
    op = get_op(op_name)
    if get_backend() != "numba":
        def run(outs, ins):
            for o, r in zip(outs, op.ref(*ins)):
                o[...] = r
        return run

    from .backend.numba.compile import load_kernel
    from .backend.numba.runtime import FLAGS, FastCall, on_threads

    cache: dict = {}

    def run(outs, ins):
        key = (outs[0].dtype.str, outs[0].size)
        if key not in cache:
            b = Builder()
            xs = [b.input(TensorType(dtype_name(a.dtype), a.shape), f"x{k}")
                  for k, a in enumerate(ins[:n_arrays])]
            hs = [b.input(TensorType("f64", ()), f"h{k}") for k in range(len(ins) - n_arrays)]
            lowering = op.lower_numba(b.emit_node(op_name, *xs, *hs))
            kernel = FastCall(load_kernel(lowering.source, FLAGS))
            # its arrays change from call to call: launched on a block packed for each
            cache[key] = (lowering.call, on_threads(kernel, lowering.threads or 1,
                                                    lowering.work))
        call, kernel = cache[key]
        call(kernel, ins, outs)
    return run


_RUNNERS: dict[tuple, object] = {}


def _update(fn_name: str, op_name: str, params, grad, states: list, hyper: list[float],
            lr_index: int):
    """The shared body of the solvers: pack, run the op per group in place, unpack."""
    learn, rebuild_params, net_state, factors = network_parts(params)
    leaves, struct = tree.flatten(learn)
    if not leaves:
        raise ShapeError(f"{fn_name}: params has no arrays")
    arrays = [_data(x) for _, x in leaves]
    for (path, _), a in zip(leaves, arrays):
        if not is_float(dtype_name(a.dtype, fn_name)):
            raise ShapeError(f"{fn_name}: parameter {path or 0} must be float, got {a.dtype}")
    grads = _matching(fn_name, "grad", grad, leaves)
    n_state = len(states)
    packed = _PACKED.get(id(arrays[0]))
    if packed is None or not packed.owns(arrays, packed.param_views):
        packed = _Packed(arrays, factors or _learn_rate_factors(params, len(arrays)), n_state)
        if len(_PACKED) >= _MAX_PACKED:  # models alternate (GANs); stale ones just repack
            _PACKED.pop(next(iter(_PACKED)))
        _PACKED[id(packed.param_views[0])] = packed
    for k, st in enumerate(states):
        if st is None:
            continue
        given = [_data(v) for v in _matching(fn_name, f"state {k + 1}", st, leaves)]
        if not packed.owns(given, packed.state_views[k]):
            for view, a in zip(packed.state_views[k], given):
                view[...] = a
    key = (op_name, get_backend())
    if key not in _RUNNERS:
        _RUNNERS[key] = _kernel_runner(op_name, 2 + n_state)
    run = _RUNNERS[key]
    for g in packed.groups:
        if len(g.members) == 1:  # read in place: copied only if strided or of another dtype
            gflat = np.ascontiguousarray(grads[g.members[0]], g.dtype).reshape(-1)
        else:
            gflat = g.grad
            np.concatenate([grads[i].reshape(-1) for i in g.members], out=gflat)
        h = list(hyper)
        h[lr_index] *= g.factor
        outs = [g.theta, *g.state]
        run(outs, [g.theta, gflat, *g.state, *h])
    params_out, *states_out = packed.wrapped(
        tuple(x.fmt if isinstance(x, DLArray) else "" for _, x in leaves))
    return (rebuild_params(tree.unflatten(struct, params_out), net_state),
            *(tree.unflatten(struct, s) for s in states_out))


def _matching(fn_name: str, what: str, nest, leaves) -> list[np.ndarray]:
    """The arrays of `nest`, which must have the structure and shapes of the parameters."""
    got, _ = tree.flatten(nest)
    if len(got) != len(leaves):
        raise ShapeError(f"{fn_name}: {what} has {len(got)} arrays but params has "
                         f"{len(leaves)}")
    out = []
    for (path, p), (_, g) in zip(leaves, got):
        a = _data(g)
        if a.shape != p.shape:
            raise ShapeError(f"{fn_name}: {what} at {path or 0} has shape {a.shape}, expected "
                             f"{p.shape}")
        out.append(a)
    return out


def _positive(fn_name: str, **values) -> None:
    for k, v in values.items():
        if not np.isscalar(v) or not np.isfinite(v) or v < 0:
            raise ShapeError(f"{fn_name}: {k} must be a finite non-negative scalar, got {v!r}")


def adamupdate(params, grad, averageGrad, averageSqGrad, iteration, learnRate=0.001,  # noqa: N803
               gradDecay=0.9, sqGradDecay=0.999, epsilon=1e-8):
    """[params, averageGrad, averageSqGrad] = adamupdate(params, grad, averageGrad,
    averageSqGrad, iteration, learnRate, gradDecay, sqGradDecay, epsilon)

    m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²; θ −= lr·sqrt(1−β2^t)/(1−β1^t)·m/(sqrt(v)+ε).
    State starts as None (zeros); iteration starts at 1. Returns the updated objects (views
    into flat buffers, updated in place on the next call).
    """
    _positive("adamupdate", learnRate=learnRate, epsilon=epsilon)
    if not (isinstance(iteration, int | np.integer) and iteration >= 1):
        raise ShapeError(f"adamupdate: iteration must be an integer >= 1, got {iteration!r}")
    for k, d in (("gradDecay", gradDecay), ("sqGradDecay", sqGradDecay)):
        if not 0 <= d < 1:
            raise ShapeError(f"adamupdate: {k} must be in [0, 1), got {d!r}")
    return _update("adamupdate", "adam_update", params, grad, [averageGrad, averageSqGrad],
                   [learnRate, gradDecay, sqGradDecay, epsilon, float(iteration)], 0)


def rmspropupdate(params, grad, averageSqGrad, learnRate=0.001, sqGradDecay=0.9,  # noqa: N803
                  epsilon=1e-8):
    """[params, averageSqGrad] = rmspropupdate(params, grad, averageSqGrad, learnRate,
    sqGradDecay, epsilon)

    v = ρ v + (1−ρ) g²; θ −= lr·g/(sqrt(v)+ε).
    """
    _positive("rmspropupdate", learnRate=learnRate, epsilon=epsilon)
    if not 0 <= sqGradDecay < 1:
        raise ShapeError(f"rmspropupdate: sqGradDecay must be in [0, 1), got {sqGradDecay!r}")
    return _update("rmspropupdate", "rmsprop_update", params, grad, [averageSqGrad],
                   [learnRate, sqGradDecay, epsilon], 0)


def sgdmupdate(params, grad, vel, learnRate=0.01, momentum=0.9):  # noqa: N803
    """[params, vel] = sgdmupdate(params, grad, vel, learnRate, momentum)

    vel = μ·vel − lr·g; θ += vel.
    """
    _positive("sgdmupdate", learnRate=learnRate, momentum=momentum)
    return _update("sgdmupdate", "sgdm_update", params, grad, [vel], [learnRate, momentum], 0)


def dlupdate(fn, params, *others):
    """params = dlupdate(fn, params, A1, ..., An) — `fn(param, a1, ..., an)` applied to each
    parameter and the matching element of each `A` (same structure). `fn` is traced and
    compiled once per structure, like a model function. With several outputs, returns a tuple
    of nests."""
    from .transforms import dlfeval

    leaves, struct = tree.flatten(params)
    other_leaves = [_matching("dlupdate", f"argument {k + 2}", o, leaves)
                    for k, o in enumerate(others)]
    fmts = [x.fmt if isinstance(x, DLArray) else "" for _, x in leaves]
    key = (fn, len(leaves), len(others))
    mapped = _MAPPED.get(key)
    if mapped is None:
        def mapped(ps, os):
            return [fn(p, *(o[i] for o in os)) for i, p in enumerate(ps)]
        mapped.__name__ = f"dlupdate_{getattr(fn, '__name__', 'fn')}"
        _MAPPED[key] = mapped
    ps = [DLArray._concrete(_data(x), f) for (_, x), f in zip(leaves, fmts)]
    os = [[DLArray._concrete(a, f) for a, f in zip(ol, fmts)] for ol in other_leaves]
    results = dlfeval(mapped, ps, os)
    if results and isinstance(results[0], tuple):
        return tuple(tree.unflatten(struct, [r[k] for r in results])
                     for k in range(len(results[0])))
    return tree.unflatten(struct, results)


_MAPPED: dict = {}
