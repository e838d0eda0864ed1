"""dlnetwork (API.md §5): a validated layer graph with its Learnables and State, and running it.

`DLNetwork` = a validated graph (its `_Arch`, immutable, shared by every copy of the network) +
Learnables and State `Table`s. Running a network traces each layer's `forward` under the
layer's name (IR provenance); outside dlfeval it goes through the compiled path of dlfeval, so
eager calls are compiled once per input signature.
"""

from __future__ import annotations

import copy

import numpy as np

from . import tree
from .dlarray import DLArray, dlarray
from .errors import GraphError
from .ir import trace as _trace
from .layers.base import Layer
from .network import Connections, LayerGraph, _split, lenient_graph, port_label
from .table import Table


class _Arch:
    """The immutable part of a DLNetwork, shared by its copies; hashed by identity, it is the
    static part of the network's pytree structure (so dlfeval caches per architecture)."""

    def __init__(self, lg: LayerGraph, plan):
        self.lg = lg
        self.order = plan.order
        self.sources = plan.sources
        self.inputs = plan.inputs
        self.outputs = plan.outputs
        self.layers = {n: lg._layer(n) for n in plan.order}
        self.InputNames = [n if p is None else port_label(self.layers[n], p, False)
                           for n, p in plan.inputs]
        self.OutputNames = [port_label(self.layers[n], p, True) for n, p in plan.outputs]
        self.input_fmts = []
        for n, p in plan.inputs:
            t = self.layers[n].input_type() if p is None else None
            self.input_fmts.append(t.fmt if t is not None else None)


def _raise_errors(fn: str, issues) -> None:
    errors = [i for i in issues if i.Severity == "error"]
    if errors:
        listing = "\n".join(f"  {i}" for i in errors)
        err = GraphError(f"{fn}: the network is invalid ({len(errors)} error"
                         f"{'s' if len(errors) > 1 else ''}):\n{listing}", issues)
        cause = next((getattr(i, "exception", None) for i in errors
                      if getattr(i, "exception", None) is not None), None)
        raise err from cause


def _tables(plan) -> tuple[Table, Table]:
    learn, state = ([], [], []), ([], [], [])
    for n in plan.order:
        lp, sp = plan.params[n]
        for cols, params in ((learn, lp), (state, sp)):
            for k, v in params.items():
                cols[0].append(n)
                cols[1].append(k)
                cols[2].append(v if isinstance(v, DLArray) else dlarray(np.asarray(v)))
    return Table(*learn), Table(*state)


class DLNetwork:
    """A network ready to run (MATLAB `dlnetwork`): `Layers`, `Connections`, `Learnables`,
    `State`, `InputNames`, `OutputNames`, `Initialized`. Build one with `dlnetwork`."""

    def __init__(self, arch: _Arch, learnables: Table, state: Table, initialized: bool):
        self._arch = arch
        self.Learnables = learnables
        self.State = state
        self.Initialized = initialized

    @property
    def Layers(self) -> list[Layer]:  # noqa: N802
        """Copies of the layers in topological order; learnable properties (`Weights`...) hold
        the current values where the layer has them."""
        params = self._params_by_layer()
        out = []
        for n in self._arch.order:
            la = copy.deepcopy(self._arch.layers[n])
            for k, v in {**params.get(n, ({}, {}))[0], **params.get(n, ({}, {}))[1]}.items():
                if hasattr(la, k) and isinstance(v, DLArray) and not v.is_traced:
                    setattr(la, k, np.array(v._data))
            out.append(la)
        return out

    @property
    def Connections(self) -> Connections:  # noqa: N802
        return self._arch.lg.Connections

    @property
    def InputNames(self) -> list[str]:  # noqa: N802
        return list(self._arch.InputNames)

    @property
    def OutputNames(self) -> list[str]:  # noqa: N802
        return list(self._arch.OutputNames)

    def layerGraph(self) -> LayerGraph:  # noqa: N802
        return self._arch.lg._copy()

    def _params_by_layer(self) -> dict[str, tuple[dict, dict]]:
        out: dict[str, tuple[dict, dict]] = {n: ({}, {}) for n in self._arch.order}
        for k, table in enumerate((self.Learnables, self.State)):
            for la, pa, v in table:
                out.setdefault(la, ({}, {}))[k][pa] = v
        return out

    def __repr__(self) -> str:
        return (f"dlnetwork with {len(self._arch.order)} layers, "
                f"{sum(int(np.prod(v.shape)) for v in self.Learnables.Value if v is not None):,} "
                f"learnables\n  InputNames: {self.InputNames}\n  OutputNames: "
                f"{self.OutputNames}\n  Initialized: {self.Initialized}")


tree.register_node(
    DLNetwork,
    lambda net: ([("Learnables", net.Learnables), ("State", net.State)],
                 (net._arch, net.Initialized)),
    lambda aux, children: DLNetwork(aux[0], children[0][1], children[1][1], aux[1]),
)


def dlnetwork(layers, *example_inputs, Initialize=True) -> DLNetwork:  # noqa: N803
    """dlnetwork(layers, X1, ..., Xn, Initialize=True) — a network ready for training.

    Args:
        layers: a LayerGraph, a layer or a list of layers (chained).
        example_inputs: one per network input; needed when the network has no input layers.
        Initialize: initialize the learnables and state now (seed with `lgc.rng`).
    Raises:
        GraphError carrying `.issues` (analyzeNetwork's) when the network is invalid.
    Example::

        net = dlnetwork([featureInputLayer(4), fullyConnectedLayer(3), softmaxLayer()])
        Y = predict(net, dlarray(X, "CB"))
    """
    from .analysis import Issue, run_analysis, structure

    if isinstance(layers, DLNetwork):
        layers = layers._arch.lg
    lg, renamed = lenient_graph(layers, "dlnetwork")
    if Initialize:
        a = run_analysis(lg, example_inputs, None, renamed)
        _raise_errors("dlnetwork", a.Issues)
        plan = a._plan
        return DLNetwork(_Arch(lg, plan), *_tables(plan), True)
    issues = [Issue("error", n, f"duplicate layer name {n!r}") for n in renamed]
    plan = structure(lg, issues, len(example_inputs) if example_inputs else None,
                     need_inputs=False)
    _raise_errors("dlnetwork", issues)
    return DLNetwork(_Arch(lg, plan), Table(), Table(), False)


def initialize(net: DLNetwork, *example_inputs) -> DLNetwork:
    """net = initialize(net, X1, ..., Xn) — an initialized copy of an uninitialized network
    (an initialized one is returned as it is)."""
    from .analysis import run_analysis

    if not isinstance(net, DLNetwork):
        raise GraphError(f"initialize: expected a dlnetwork, got {type(net).__name__}")
    if net.Initialized:
        return net
    a = run_analysis(net._arch.lg, example_inputs)
    _raise_errors("initialize", a.Issues)
    return DLNetwork(_Arch(net._arch.lg, a._plan), *_tables(a._plan), True)


# --- running ----------------------------------------------------------------------------------


def _layer_provenance(name: str):
    import contextlib

    tr = _trace.current()
    # pushed even under an outer label: the nodes a layer emits carry the layer's name
    return tr.builder.provenance(name) if tr is not None else contextlib.nullcontext()


def _output_ports(arch: _Arch, Outputs, fn: str) -> tuple[tuple[str, str], ...]:  # noqa: N803
    if Outputs is None:
        return tuple(arch.outputs)
    specs = [Outputs] if isinstance(Outputs, str) else list(Outputs)
    out = []
    for spec in specs:
        name, port = _split(spec, fn)
        if name not in arch.layers:
            raise GraphError(f"{fn}: Outputs names {spec!r}, but the network has no layer "
                             f"{name!r}")
        ports = arch.layers[name].OutputNames
        port = port or ports[0]
        if port not in ports:
            raise GraphError(f"{fn}: Outputs names {spec!r}, but layer {name!r} has outputs "
                             f"{', '.join(ports)}")
        out.append((name, port))
    return tuple(out)


def _execute(net: DLNetwork, xs: list, outputs, training: bool):
    """Run the layers needed for `outputs`; returns (outputs, new State or None)."""
    arch = net._arch
    params = net._params_by_layer()
    state_index = {(la, pa): i for i, (la, pa) in enumerate(zip(net.State.Layer,
                                                                net.State.Parameter))}
    new_state = list(net.State.Value)
    fed = dict(zip(arch.inputs, xs))
    import networkx as nx

    needed = {n for n, _ in outputs}
    for n in list(needed):
        needed |= nx.ancestors(arch.lg.graph, n)
    vals: dict[tuple[str, str], object] = {}
    from .analysis import _outputs_by_port

    for n in arch.order:
        if n not in needed:
            continue
        la = arch.layers[n]
        if not la.InputNames:
            ins = [fed[(n, None)]]
        else:
            ins = [vals[src] if src is not None else fed[(n, p)]
                   for p, src in zip(la.InputNames, arch.sources[n])]
        lp, sp = params.get(n, ({}, {}))
        with _layer_provenance(n):
            outs, st = la.forward(ins, lp, sp, training)
        outs = _outputs_by_port(la, outs)
        for p in la.OutputNames:
            vals[(n, p)] = outs[p]
        if training:
            for k, v in (st or {}).items():
                new_state[state_index[(n, k)]] = v
    ys = [vals[o] for o in outputs]
    return ys, (net.State.with_values(new_state) if training else None)


def _eager(net, xs, outputs, training):
    return _execute(net, xs, outputs, training)


def _call(net, xs, Outputs, training: bool, fn: str):  # noqa: N803
    if not isinstance(net, DLNetwork):
        raise GraphError(f"{fn}: expected a dlnetwork, got {type(net).__name__}")
    if not net.Initialized:
        raise GraphError(f"{fn}: the network is not initialized; call net = initialize(net, "
                         f"X) first")
    arch = net._arch
    if len(xs) != len(arch.inputs):
        raise GraphError(f"{fn}: the network has {len(arch.inputs)} input(s) "
                         f"({', '.join(arch.InputNames)}), got {len(xs)}")
    xs = [x if isinstance(x, DLArray) else
          dlarray(np.asarray(x), f if f is not None and len(f) == np.ndim(x) else "")
          for x, f in zip(xs, arch.input_fmts)]
    outputs = _output_ports(arch, Outputs, fn)
    leaves, _ = tree.flatten((net, xs))
    if _trace.current() is not None or any(isinstance(v, DLArray) and v.is_traced
                                           for _, v in leaves):
        return _execute(net, xs, outputs, training)
    from .backend import get_backend
    from .transforms import run

    return run(_eager, (net, xs, outputs, training), get_backend())


def forward(net: DLNetwork, *X, Outputs=None):  # noqa: N803
    """Y, state = forward(net, X) — training behaviour (batch statistics, dropout on).

    Several inputs/outputs: `Y1, Y2, state = forward(net, X1, X2)`. `Outputs=["relu_1",
    "mp/indices"]` returns those activations instead of the network outputs. The new state
    is returned, never written back: do `net.State = state`.
    """
    ys, state = _call(net, X, Outputs, True, "forward")
    return (*ys, state)


def predict(net: DLNetwork, *X, Outputs=None):  # noqa: N803
    """Y = predict(net, X) — inference behaviour (trained statistics, no dropout); a tuple
    `Y1, Y2` when there are several outputs."""
    ys, _ = _call(net, X, Outputs, False, "predict")
    return ys[0] if len(ys) == 1 else tuple(ys)
