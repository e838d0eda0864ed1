"""compile_train_step: forward, backward and the optimizer update compiled into one call.

The traced program takes each parameter as an input that is a view into a flat buffer (one per
dtype and learn-rate factor), computes the loss and its gradient, concatenates the gradient of
each group and applies the solver's update op to the group's flat buffers. On the Numba backend
the update writes straight into the flat parameter and state buffers (donated inputs), so the
views the next step reads are already up to date: no copies of parameters between steps.
"""

from __future__ import annotations

import numpy as np

from .. import tree
from ..backend import compile_graph, get_backend
from ..dlarray import DLArray, apply, reshape
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


class TrainStep:
    """A compiled training step: `step(*batch)` returns the loss as a float (and aux outputs).

    `step.params` (or `step.net`) are the current parameters, `step.iteration` the number of
    steps done, `step.learn_rate` the learning rate of the next step (settable: schedules).
    """

    def __init__(self, loss_fn, params, solver: str = "adam", **options):
        if solver not in SOLVERS:
            raise LgcError(f"compile_train_step: solver must be one of {sorted(SOLVERS)}, got "
                           f"{solver!r}")
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
        self._fmts = [x.fmt if isinstance(x, DLArray) else "" for _, x in leaves]
        arrays = [x._data if isinstance(x, DLArray) else np.asarray(x) for _, x in leaves]
        self._packed = _Packed(arrays, factors or [1.0] * len(arrays), n_state)
        self._is_net = self._state is not None
        self._programs: dict = {}
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
        return self._rebuild(self._learnables(), self._state)

    net = params

    # --- the traced program -------------------------------------------------------------------

    def _trace(self, batch: tuple):
        packed, n_state, op = self._packed, self._n_state, self._op
        n_leaves, groups = len(packed.param_views), packed.groups
        struct, fmts, rebuild, is_net = self._struct, self._fmts, self._rebuild, self._is_net
        loss_fn = self.loss_fn

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
            updated = []
            for k, g in enumerate(groups):
                gflat = apply("concatenate", *(reshape(grads[i], (-1,)) for i in g.members),
                              axis=0) if len(g.members) > 1 else reshape(grads[g.members[0]], (-1,))
                h = list(hyper)
                if g.factor != 1.0:
                    h[0] = h[0] * g.factor
                res = apply(op, flats[k], gflat, *states[k], *h)
                updated.append(list(res))
            return loss, extras, new_state, updated

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
        return program, exe, donate

    def __call__(self, *batch):
        key, batch_arrays = _trace.signature(batch)
        entry = self._programs.get(key)
        if entry is None:
            entry = self._programs[key] = self._trace(batch)
        program, exe, donate = entry
        self.iteration += 1
        hyper = [np.array(v, np.float64) for v in self._hyper.values()]
        if self._op == "adam_update":
            hyper.append(np.array(self.iteration, np.float64))
        packed = self._packed
        state_arrays = _trace.signature((self._state,))[1] if self._is_net else []
        inputs = (list(packed.param_views) + [g.theta for g in packed.groups]
                  + [s for g in packed.groups for s in g.state] + hyper + state_arrays
                  + batch_arrays + program.captures)
        outs = exe(inputs)
        for k, j in donate.items():
            if outs[k] is not inputs[j]:
                np.copyto(inputs[j], outs[k])
        result = _trace.unflatten_outputs(program, outs)
        loss, extras, new_state, _ = result
        if self._is_net:
            self._state = new_state
        value = float(np.asarray(loss))
        if not np.isfinite(value):
            raise LgcError(f"compile_train_step: the loss is {value} at iteration "
                           f"{self.iteration}")
        return (value, *extras) if extras else value

    def __repr__(self) -> str:
        return (f"<TrainStep {getattr(self.loss_fn, '__name__', 'loss')} solver={self.solver} "
                f"iteration={self.iteration} learn_rate={self.learn_rate:g} "
                f"backend={get_backend()}>")


def compile_train_step(loss_fn, params_or_net, solver: str = "adam", **solver_options):
    """lgc.compile_train_step(loss_fn, params_or_net, solver="adam", **solver_options)

    Forward, backward and the optimizer update compiled into one call. `loss_fn(params, *batch)`
    returns the loss, optionally followed by aux outputs; for a dlnetwork, `(loss, state)` as
    in MATLAB's modelLoss (the state is carried to the next step). Solvers: "adam"
    (learnRate, gradDecay, sqGradDecay, epsilon), "rmsprop" (learnRate, sqGradDecay, epsilon),
    "sgdm" (learnRate, momentum), with the update functions' defaults. Example::

        step = lgc.compile_train_step(model_loss, params, "sgdm", learnRate=0.1)
        for X, T in batches:
            loss = step(X, T)
        params = step.params
    """
    return TrainStep(loss_fn, params_or_net, solver, **solver_options)
