"""compile_train_step: forward, backward and the optimizer update compiled into one call.

The traced program takes each parameter as an input that is a view into a flat buffer (one per
dtype and learn-rate factor), computes the loss and its gradient, concatenates the gradient of
each group and applies the solver's update op to the group's flat buffers. On the Numba backend
the update writes straight into the flat parameter and state buffers (donated inputs), so the
views the next step reads are already up to date: no copies of parameters between steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .. import tree
from ..backend import compile_graph, get_backend, host_changed, sync_host
from ..dlarray import DLArray, apply, maximum, minimum, reshape, sqrt
from ..dlarray import sum as _sum
from ..errors import LgcError, ShapeError
from ..ir import trace as _trace
from ..table import Table
from ..transforms import dlgradient
from ..updates import _Packed, network_parts

# solver -> (update op, number of state buffers, hyperparameters in op order with defaults)
SOLVERS = {
    "adam": ("adam_update", 2, (("learnRate", 0.001), ("gradDecay", 0.9),
                                ("sqGradDecay", 0.999), ("epsilon", 1e-8))),
    "rmsprop": ("rmsprop_update", 1, (("learnRate", 0.001), ("sqGradDecay", 0.9),
                                      ("epsilon", 1e-8))),
    "sgdm": ("sgdm_update", 1, (("learnRate", 0.01), ("momentum", 0.9))),
}


THRESHOLD_METHODS = ("l2norm", "global-l2norm", "absolute-value")


class NonFiniteError(LgcError):
    """The loss or a gradient of a training step is NaN or Inf; the parameters and optimizer
    state are those from before the step. `.iteration` is the failed step, `.parameter` the
    first parameter (``layer/name``) whose gradient is not finite, or None for the loss."""

    def __init__(self, message: str, iteration: int, parameter: str | None):
        super().__init__(message)
        self.iteration, self.parameter = iteration, parameter


class _Compiled(NamedTuple):
    """A traced and compiled train step for one batch signature."""

    program: _trace.Program
    exe: Any
    donate: dict[int, int]  # output k -> the input it is written into
    head: Any  # the structure of (loss, extras, new state, finite flags): the first outputs
    n_head: int  # their number (the updated buffers follow, already in place)


class TrainStep:
    """A compiled training step: `step(*batch)` returns the loss as a float (and aux outputs).

    `step.params` (or `step.net`) are the current parameters, `step.iteration` the number of
    steps done, `step.learn_rate` the learning rate of the next step (settable: schedules).

    Gradient transforms, applied to the symbolic gradients inside the compiled step, in
    MATLAB's order (regularize, then clip, then update):
    `l2_regularization=λ` adds λ·f·W to the gradient of each parameter W (f: the layer's L2
    factor, `layer.l2_factor(name)`, 1 for plain parameter nests);
    `gradient_threshold=thr` with `gradient_threshold_method` "l2norm" (each parameter's
    gradient scaled to norm ≤ thr), "global-l2norm" (all gradients scaled by
    min(1, thr/‖all gradients‖)) or "absolute-value" (elementwise clip to [−thr, thr]).
    `check_finite=True` keeps a copy of the parameters and optimizer state before each step
    and the compiled step reports one finite flag per parameter gradient; a non-finite loss or
    gradient restores the copy and raises NonFiniteError naming the iteration and parameter.
    """

    def __init__(self, loss_fn, params, solver: str = "adam", *, l2_regularization=0.0,
                 gradient_threshold=float("inf"), gradient_threshold_method="l2norm",
                 check_finite=False, **options):
        if solver not in SOLVERS:
            raise LgcError(f"compile_train_step: solver must be one of {sorted(SOLVERS)}, got "
                           f"{solver!r}")
        _check_transforms(l2_regularization, gradient_threshold, gradient_threshold_method)
        self._l2 = float(l2_regularization)
        self._threshold = float(gradient_threshold)
        self._threshold_method = gradient_threshold_method
        self._check_finite = bool(check_finite)
        op_name, n_state, hyper = SOLVERS[solver]
        unknown = set(options) - {k for k, _ in hyper}
        if unknown:
            raise LgcError(f"compile_train_step: unknown option(s) {sorted(unknown)} for "
                           f"solver {solver!r}; it takes {[k for k, _ in hyper]}")
        self.loss_fn, self.solver, self._op, self._n_state = loss_fn, solver, op_name, n_state
        self._hyper = {k: float(options.get(k, d)) for k, d in hyper}
        learn, self._rebuild, self._state, factors = network_parts(params)
        leaves, self._struct = tree.flatten(learn)
        if not leaves:
            raise ShapeError("compile_train_step: the parameters hold no arrays")
        self.names = [path or "0" for path, _ in leaves]
        self._l2_factors = _l2_factors(params, len(leaves))
        self._fmts = [x.fmt if isinstance(x, DLArray) else "" for _, x in leaves]
        arrays = [x._data if isinstance(x, DLArray) else np.asarray(x) for _, x in leaves]
        self._packed = _Packed(arrays, factors or [1.0] * len(arrays), n_state)
        self._is_net = self._state is not None
        self._programs: dict = {}
        # the hyperparameters (and Adam's iteration) as 0-d arrays, written in place each step
        # and pinned with the buffers: the update's call is then built once
        self._hyper_arrays = [np.zeros((), np.float64)
                              for _ in range(len(self._hyper) + (op_name == "adam_update"))]
        # the inputs that are the same arrays on every call: parameters, optimizer state,
        # hyperparameters (pinned by the program)
        groups = self._packed.groups
        self._fixed_inputs = (list(self._packed.param_views) + [g.theta for g in groups]
                              + [s for g in groups for s in g.state] + self._hyper_arrays)
        self._backup: list[np.ndarray] | None = None
        self.iteration = 0

    # --- public state -------------------------------------------------------------------------

    @property
    def learn_rate(self) -> float:
        return self._hyper["learnRate"]

    @learn_rate.setter
    def learn_rate(self, value: float) -> None:
        if not np.isfinite(value) or value < 0:
            raise ShapeError(f"TrainStep: learn_rate must be finite and >= 0, got {value!r}")
        self._hyper["learnRate"] = float(value)

    def _learnables(self):
        views = [DLArray._concrete(v, f) for v, f in zip(self._packed.param_views, self._fmts)]
        return tree.unflatten(self._struct, views)

    @property
    def params(self):
        sync_host()  # a device backend (cuda) keeps the parameters resident: copy back on read
        return self._rebuild(self._learnables(), self._state)

    net = params

    # --- optimizer buffers (checkpoints) --------------------------------------------------------

    def buffers(self) -> list[np.ndarray]:
        """The flat buffers that make up the training state: per group the parameters, then
        the solver's state (Adam: average gradient, average squared gradient). Live views:
        copy them to keep a snapshot."""
        sync_host()
        return [a for g in self._packed.groups for a in (g.theta, *g.state)]

    @property
    def network_state(self):
        """The network's State table (batch-norm statistics), or None for parameter nests."""
        return self._state

    def restore(self, buffers, iteration: int, network_state=None) -> None:
        """Set the training state from `buffers()`-shaped arrays (a checkpoint)."""
        mine = self.buffers()
        if len(buffers) != len(mine) or any(np.shape(a) != b.shape for a, b in
                                             zip(buffers, mine)):
            raise ShapeError(f"TrainStep.restore: expected {len(mine)} buffers of shapes "
                             f"{[b.shape for b in mine]}, got "
                             f"{[np.shape(a) for a in buffers]}")
        for a, b in zip(buffers, mine):
            np.copyto(b, a, casting="same_kind")
        host_changed(mine)  # device-resident copies are now stale
        self.iteration = int(iteration)
        if network_state is not None:
            self._state = network_state

    # --- the traced program -------------------------------------------------------------------

    def _trace(self, batch: tuple):
        packed, n_state, op = self._packed, self._n_state, self._op
        n_leaves, groups = len(packed.param_views), packed.groups
        struct, fmts, rebuild, is_net = self._struct, self._fmts, self._rebuild, self._is_net
        loss_fn, transform = self.loss_fn, self._transform_gradients

        def train_step(views, flats, states, hyper, state, *batch):
            params = rebuild(tree.unflatten(struct, [
                DLArray._symbolic(v._value, v._trace) if not f else apply("relabel", v, fmt=f)
                for v, f in zip(views, fmts)]), state)
            out = loss_fn(params, *batch)
            out = out if isinstance(out, tuple) else (out,)
            loss, extras = out[0], list(out[1:])
            new_state = extras.pop(0) if is_net and extras and isinstance(extras[0], Table) \
                else state
            grads = dlgradient(loss, list(views))
            # sum(g·0) is 0 for a finite gradient and NaN otherwise: exact and one cheap pass
            flags = [_sum(g * 0.0) for g in grads] if check else []
            grads = transform(grads, views)
            head[:] = [tree.flatten((loss, extras, new_state, flags))]
            updated = []
            for k, g in enumerate(groups):
                gflat = apply("concatenate", *(reshape(grads[i], (-1,)) for i in g.members),
                              axis=0) if len(g.members) > 1 else reshape(grads[g.members[0]], (-1,))
                h = list(hyper)
                if g.factor != 1.0:
                    h[0] = h[0] * g.factor
                res = apply(op, flats[k], gflat, *states[k], *h)
                updated.append(list(res))
            return loss, extras, new_state, flags, updated

        check = self._check_finite
        head: list = []  # filled by the trace: the leaves and structure of the first outputs
        views = [DLArray._concrete(v, "") for v in packed.param_views]
        flats = [g.theta for g in groups]
        states = [g.state for g in groups]
        # 0-d arrays, not Python floats: inputs of the program, never part of its signature
        hyper = [np.zeros((), np.float64)] * (len(self._hyper) + (op == "adam_update"))
        args = (views, flats, states, hyper, self._state, *batch)
        program = _trace.trace_function(train_step, args, name="train_step")
        exe = compile_graph(program.graph)
        # outputs: loss, extras..., state leaves..., then per group theta' and state'
        n_inputs_before = n_leaves
        outs = program.graph.outputs
        n_upd = len(groups) * (1 + n_state)
        donate = {}
        for k in range(len(groups)):
            base = len(outs) - n_upd + k * (1 + n_state)
            donate[base] = n_inputs_before + k  # theta flat of group k
            for s in range(n_state):
                donate[base + 1 + s] = n_inputs_before + len(groups) + k * n_state + s
        if hasattr(exe, "donate"):
            exe.donate(donate)
        if hasattr(exe, "pin"):  # the same parameter, state and hyperparameter arrays each call
            exe.pin(dict(enumerate(self._fixed_inputs)))
        (leaves, struct), = head
        return _Compiled(program, exe, donate, struct, len(leaves))

    def __call__(self, *batch):
        key, batch_arrays = _trace.signature(batch)
        entry = self._programs.get(key)
        if entry is None:
            entry = self._programs[key] = self._trace(batch)
        program, exe, donate = entry.program, entry.exe, entry.donate
        if self._check_finite:
            if self._backup is None:
                self._backup = [b.copy() for b in self.buffers()]
            else:
                for a, b in zip(self._backup, self.buffers()):
                    np.copyto(a, b)
            self._backup_iteration = self.iteration
        self.iteration += 1
        hyper = self._hyper_arrays
        for a, v in zip(hyper, self._hyper.values()):
            a[()] = v
        if self._op == "adam_update":
            hyper[-1][()] = self.iteration
        state_arrays = _trace.signature((self._state,))[1] if self._is_net else []
        inputs = self._fixed_inputs + state_arrays + batch_arrays + program.captures
        outs = exe(inputs)
        for k, j in donate.items():
            if outs[k] is not inputs[j]:
                np.copyto(inputs[j], outs[k])
        if entry.n_head == 1 and not self._is_net:  # the loss alone: no structure to rebuild
            value, extras, new_state, flags = float(outs[0]), (), None, ()
        else:
            loss, extras, new_state, flags = _trace.unflatten_outputs(
                program, outs[:entry.n_head], entry.head)
            value = float(np.asarray(loss))
        bad = next((i for i, f in enumerate(flags) if not np.isfinite(np.asarray(f))), None)
        if not np.isfinite(value) or bad is not None:
            failed = self.iteration
            kept = "; the parameters are those from before this step" if self.rollback() else ""
            if not np.isfinite(value):
                raise NonFiniteError(f"compile_train_step: the loss is {value} at iteration "
                                     f"{failed}{kept}", failed, None)
            raise NonFiniteError(f"compile_train_step: the gradient of {self.names[bad]} is not "
                                 f"finite (NaN or Inf) at iteration {failed}{kept}", failed,
                                 self.names[bad])
        if self._is_net:
            self._state = new_state
        return (value, *extras) if extras else value

    def rollback(self) -> bool:
        """Undo the last (failed or interrupted) step: parameters, optimizer state and
        iteration as before it. Needs check_finite=True (which keeps the copy); returns
        whether there was a copy to restore."""
        if self._backup is None:
            return False
        mine = self.buffers()
        for a, b in zip(self._backup, mine):
            np.copyto(b, a)
        host_changed(mine)
        self.iteration = self._backup_iteration
        return True

    # --- gradient transforms (traced) ----------------------------------------------------------

    def _transform_gradients(self, grads: list, views: list) -> list:
        """L2 regularization, then gradient clipping, on the symbolic gradients."""
        if self._l2:
            grads = [g + (self._l2 * f) * w if f else g
                     for g, w, f in zip(grads, views, self._l2_factors)]
        thr, method = self._threshold, self._threshold_method
        if not np.isfinite(thr):
            return grads
        if method == "absolute-value":
            return [minimum(maximum(g, -thr), thr) for g in grads]
        if method == "l2norm":
            # thr / max(‖g‖, thr) is 1 when ‖g‖ ≤ thr and thr/‖g‖ otherwise, never 0/0
            return [g * (thr / maximum(sqrt(_sum(g * g)), thr)) for g in grads]
        sq = [_sum(g * g) for g in grads]
        total = sq[0]
        for q in sq[1:]:
            total = total + q
        scale = thr / maximum(sqrt(total), thr)
        return [g * scale for g in grads]

    def __repr__(self) -> str:
        return (f"<TrainStep {getattr(self.loss_fn, '__name__', 'loss')} solver={self.solver} "
                f"iteration={self.iteration} learn_rate={self.learn_rate:g} "
                f"backend={get_backend()}>")


def _check_transforms(l2, threshold, method) -> None:
    fn = "compile_train_step"
    if not np.isscalar(l2) or not np.isfinite(l2) or l2 < 0:
        raise LgcError(f"{fn}: l2_regularization must be a finite scalar >= 0, got {l2!r}")
    if not np.isscalar(threshold) or np.isnan(threshold) or threshold <= 0:
        raise LgcError(f"{fn}: gradient_threshold must be a positive scalar (inf: no clipping), "
                       f"got {threshold!r}")
    if method not in THRESHOLD_METHODS:
        raise LgcError(f"{fn}: gradient_threshold_method must be one of {THRESHOLD_METHODS}, "
                       f"got {method!r}")


def _l2_factors(params, n: int) -> list[float]:
    """MATLAB's per-parameter L2 factors: the layers' (WeightL2Factor, BiasL2Factor = 0, ...)
    for a dlnetwork, 1 for every parameter of a plain nest."""
    from ..dlnetwork import DLNetwork

    if isinstance(params, DLNetwork):
        layers = params._arch.layers
        learn = params.Learnables
        return [layers[la].l2_factor(pa) for la, pa in zip(learn.Layer, learn.Parameter)]
    return [1.0] * n


def compile_train_step(loss_fn, params_or_net, solver: str = "adam", **solver_options):
    """lgc.compile_train_step(loss_fn, params_or_net, solver="adam", **solver_options)

    Forward, backward and the optimizer update compiled into one call. `loss_fn(params, *batch)`
    returns the loss, optionally followed by aux outputs; for a dlnetwork, `(loss, state)` as
    in MATLAB's modelLoss (the state is carried to the next step). Solvers: "adam"
    (learnRate, gradDecay, sqGradDecay, epsilon), "rmsprop" (learnRate, sqGradDecay, epsilon),
    "sgdm" (learnRate, momentum), with the update functions' defaults. Further options (see
    TrainStep): l2_regularization, gradient_threshold, gradient_threshold_method,
    check_finite. Example::

        step = lgc.compile_train_step(model_loss, params, "sgdm", learnRate=0.1)
        for X, T in batches:
            loss = step(X, T)
        params = step.params
    """
    return TrainStep(loss_fn, params_or_net, solver, **solver_options)
