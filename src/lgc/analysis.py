"""analyzeNetwork (API.md §5): check a layer graph and compute its activation and learnable sizes.

Two stages. Structure: duplicate names, cycles, unconnected ports, missing input layers, the
number of example inputs. Types: each layer's `initialize` and `forward` run, in topological
order, on symbolic dlarrays of batch 1 inside one trace, so activation sizes and formats are
exactly what the layer's own code produces (there is no second, hand-written size calculus);
a ShapeError or FormatError raised there becomes an issue naming the layer and its input
sources with their sizes. `dlnetwork` builds on the same `Plan`.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass, field

import numpy as np

from .dlarray import DLArray
from .errors import GraphError
from .ir.trace import Trace
from .ir.types import TensorType, dtype_name
from .ops.creation import generator


@dataclass
class Issue:
    """One problem found by analyzeNetwork: `Severity` ("error"/"warning"), `Layer`, `Message`."""

    Severity: str
    Layer: str
    Message: str

    def __str__(self) -> str:
        where = f"{self.Layer}: " if self.Layer else ""
        return f"{self.Severity}: {where}{self.Message}"


LayerInfoRow = namedtuple("LayerInfoRow", ("Name", "Type", "ActivationSizes",
                                           "ActivationFormats", "LearnableSizes",
                                           "NumLearnables"))


class LayerInfo:
    """Rows of per-layer information (namedtuples), also readable as columns (`info.Name`)."""

    def __init__(self, rows):
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            for r in self.rows:
                if r.Name == key:
                    return r
            raise KeyError(f"no layer named {key!r}")
        return self.rows[key]

    def __getattr__(self, column: str):
        if column in LayerInfoRow._fields:
            return [getattr(r, column) for r in self.rows]
        raise AttributeError(column)


def size_str(shape) -> str:
    return "x".join(str(s) for s in shape) if len(shape) else "1x1"


def type_str(t: TensorType) -> str:
    return size_str(t.shape) + (f" ({t.fmt})" if t.fmt else "")


class NetworkAnalysis:
    """The result of analyzeNetwork: `LayerInfo`, `TotalLearnables`, `Issues`."""

    def __init__(self, layer_info: LayerInfo, issues: list[Issue], plan: Plan | None):
        self.LayerInfo = layer_info
        self.TotalLearnables = int(sum(r.NumLearnables for r in layer_info))
        self.Issues = issues
        self._plan = plan

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.Issues if i.Severity == "error"]

    def __repr__(self) -> str:
        rows = [("Name", "Type", "Activations", "Learnables")]
        for r in self.LayerInfo:
            acts = "; ".join(f"{size_str(s)} {f}".strip() for s, f in
                             zip(r.ActivationSizes.values(), r.ActivationFormats.values()))
            if len(r.ActivationSizes) > 1:
                acts = "; ".join(f"{p}: {size_str(s)} {r.ActivationFormats[p]}".strip()
                                 for p, s in r.ActivationSizes.items())
            learn = ", ".join(f"{k} {size_str(s)}" for k, s in r.LearnableSizes.items())
            rows.append((r.Name, r.Type, acts or "-", learn or "-"))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [f"Network analysis: {len(self.LayerInfo)} layers, {self.TotalLearnables:,} "
                 f"learnables, {_count(len(self.errors), 'error')}, "
                 f"{_count(len(self.Issues) - len(self.errors), 'warning')}", ""]
        for k, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3])
            if k == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 10)
        lines += ["", "Issues:" if self.Issues else "No issues."]
        lines += [f"  {i}" for i in self.Issues]
        return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass
class Plan:
    """What dlnetwork needs from the analysis: execution order, wiring, types, parameters."""

    order: list[str]
    sources: dict[str, list]  # layer -> per input port: (src layer, src port) or None
    inputs: list[tuple[str, str | None]]  # network inputs: (input layer, None) or (layer, port)
    outputs: list[tuple[str, str]]
    in_types: dict[str, list[TensorType]] = field(default_factory=dict)
    out_types: dict[tuple[str, str], TensorType] = field(default_factory=dict)
    params: dict[str, tuple[dict, dict]] = field(default_factory=dict)
    typed: bool = False  # every layer's types were propagated


def is_input_layer(layer) -> bool:
    return not layer.InputNames


def _example_type(x, layer) -> TensorType:
    """The type of an example input with its batch set to 1."""
    if isinstance(x, DLArray):
        t = x._type
    else:
        arr = np.asarray(x)
        hint = layer.input_type() if layer is not None else None
        fmt = hint.fmt if hint is not None and len(hint.fmt) == arr.ndim else ""
        t = TensorType(dtype_name(arr.dtype, "analyzeNetwork: example input"), arr.shape, fmt)
    shape = list(t.shape)
    if "B" in t.fmt:
        shape[t.fmt.index("B")] = 1
    return TensorType(t.dtype, tuple(shape), t.fmt)


def structure(lg, issues: list[Issue], n_examples: int | None,
              need_inputs: bool = True) -> Plan | None:
    """Structural checks; the Plan (without types), or None when there is a cycle."""
    import networkx as nx  # imported on use: it is most of `import lgc`'s time otherwise

    g = lg.graph
    layer = lg._layer
    cyclic = False
    for comp in nx.strongly_connected_components(g):
        names = [n for n in g.nodes if n in comp]
        if len(comp) > 1 or g.has_edge(names[0], names[0]):
            cyclic = True
            cyc = [e[0] for e in nx.find_cycle(g.subgraph(comp))]
            issues.append(Issue("error", names[0], "the connections form a cycle through layers "
                                + " -> ".join(cyc + [cyc[0]])))
    if cyclic:
        return None
    position = {n: i for i, n in enumerate(g.nodes)}
    order = list(nx.lexicographical_topological_sort(g, key=position.__getitem__))
    sources: dict[str, list] = {}
    for n in order:
        ports = layer(n).InputNames
        sources[n] = [None] * len(ports)
        for s, _, d in g.in_edges(n, data=True):
            sources[n][ports.index(d["dst_port"])] = (s, d["src_port"])
    has_input_layer = any(is_input_layer(layer(n)) for n in order)
    dangling = [(n, p) for n in order for p, s in zip(layer(n).InputNames, sources[n])
                if s is None]
    if has_input_layer:
        inputs = [(n, None) for n in order if is_input_layer(layer(n))]
        for n, p in dangling:
            issues.append(Issue("error", n, f"input {p!r} of {n!r} ({layer(n).Type}) is not "
                                            f"connected"))
    else:
        inputs = list(dangling)
        if need_inputs and n_examples is None and order:
            names = ", ".join(f"{n}/{p}" for n, p in dangling)
            issues.append(Issue("error", dangling[0][0] if dangling else order[0],
                                f"the network has no input layer; add one or give example "
                                f"inputs for the unconnected inputs ({names})"))
    if n_examples is not None and n_examples != len(inputs):
        want = ", ".join(n if p is None else f"{n}/{p}" for n, p in inputs) or "none"
        issues.append(Issue("error", inputs[0][0] if inputs else "",
                            f"wrong number of inputs: {n_examples} example inputs given, the "
                            f"network has {len(inputs)} ({want})"))
    used = {(s, d["src_port"]) for s, _, d in g.edges(data=True)}
    outputs = [(n, p) for n in order for p in layer(n).OutputNames if (n, p) not in used]
    # a dangling output is a network output (as in MATLAB); only warn where that is probably a
    # mistake: a secondary port (maxpool indices) or one of several outputs
    primary = [(n, p) for n, p in outputs if p == layer(n).OutputNames[0]]
    for n, p in outputs:
        if p != layer(n).OutputNames[0] or len(primary) > 1:
            others = ", ".join(f"{a}/{b}" for a, b in outputs)
            issues.append(Issue("warning", n, f"output {p!r} of {n!r} is not connected, so it "
                                              f"is a network output (outputs: {others})"))
    for n in order:
        la = layer(n)
        if getattr(la, "Normalization", None) in ("zerocenter", "zscore") and \
                getattr(la, "Mean", None) is None:
            issues.append(Issue("warning", n, f"Normalization={la.Normalization!r} without a "
                                              f"Mean: trainnet computes it from the training "
                                              f"data; elsewhere the mean is zeros"))
    return Plan(order, sources, inputs, outputs)


def _outputs_by_port(layer, outs) -> dict:
    if isinstance(outs, dict):
        return outs
    if isinstance(outs, DLArray | np.ndarray):
        outs = [outs]
    return dict(zip(layer.OutputNames, outs))


def propagate(lg, plan: Plan, issues: list[Issue], examples, given=None) -> None:
    """Run each layer's initialize + forward, in one trace, on symbolic network inputs of batch
    1 and symbolic parameters, each layer on its sources' actual outputs; fills the plan's
    types and parameters (`given[name] = (learnables, state)` skips initialize)."""
    layer = lg._layer
    ex_types = {}
    if examples:
        for (n, p), x in zip(plan.inputs, examples):
            try:
                ex_types[(n, p)] = _example_type(x, layer(n) if p is None else None)
            except Exception as e:  # noqa: BLE001 (reported, with the input named)
                issues.append(Issue("error", n, f"example input: {e}"))
    tr = Trace("analyzeNetwork")
    rng = generator()

    def sym(t: TensorType, name: str) -> DLArray:
        return DLArray._symbolic(tr.builder.input(t, name), tr)

    values: dict = {}  # (layer, port) -> the traced (or, like maxpool's size, known) output
    with tr:
        for n in plan.order:
            la = layer(n)
            if is_input_layer(la):
                t = ex_types.get((n, None), la.input_type())
                ins = [sym(t, f"{n}/in")] if t is not None else None
            else:
                ins = []
                for p, src in zip(la.InputNames, plan.sources[n]):
                    if src is not None:
                        ins.append(values.get(src))
                    else:
                        t = ex_types.get((n, p))
                        ins.append(sym(t, f"{n}/{p}") if t is not None else None)
                if any(x is None for x in ins):
                    ins = None
            if ins is None:
                continue
            in_types = [_value_type(x) for x in ins]
            plan.in_types[n] = in_types
            try:
                lp, sp = given[n] if given and n in given else la.initialize(in_types, rng)
                lsym = {k: sym(_param_type(v), f"{n}/{k}") for k, v in lp.items()}
                ssym = {k: sym(_param_type(v), f"{n}/{k}") for k, v in sp.items()}
                with tr.builder.provenance(n):
                    outs, _ = la.forward(ins, lsym, ssym, False)
                outs = _outputs_by_port(la, outs)
                missing = [p for p in la.OutputNames if p not in outs]
                if missing:
                    raise GraphError(f"{type(la).__name__}.forward returned no output for "
                                     f"port(s) {', '.join(missing)}")
            except Exception as e:  # noqa: BLE001 (user mistakes and user code: reported)
                issues.append(Issue("error", n, _mismatch(la, plan.sources.get(n, []),
                                                          in_types, e)))
                issues[-1].exception = e
                continue
            plan.params[n] = (lp, sp)
            for p in la.OutputNames:
                values[(n, p)] = outs[p]
                plan.out_types[(n, p)] = _value_type(outs[p])
    plan.typed = all(n in plan.params for n in plan.order)


def _value_type(v) -> TensorType:
    if isinstance(v, DLArray):
        return v._type
    a = np.asarray(v)
    return TensorType(dtype_name(a.dtype, "layer output"), a.shape)


def _param_type(v) -> TensorType:
    if isinstance(v, DLArray):
        return TensorType(v._type.dtype, v.shape)
    a = np.asarray(v)
    return TensorType(dtype_name(a.dtype, "layer parameter"), a.shape)


def _mismatch(layer, sources, in_types, e: Exception) -> str:
    what = str(e) if type(e).__module__.startswith("lgc") else f"{type(e).__name__}: {e}"
    # the issue names the layer already; drop the layer's own "name (Type): " prefix
    for prefix in (f"{layer.Name} ({layer.Type}): ", f"{layer.Name}: "):
        if what.startswith(prefix):
            what = what[len(prefix):]
    if not sources:
        return f"{what} (network input {type_str(in_types[0])})"
    srcs = ", ".join(f"{p} <- {s[0] if s[1] == 'out' else '/'.join(s)} {type_str(t)}"
                     if s is not None else f"{p} <- network input {type_str(t)}"
                     for p, s, t in zip(layer.InputNames, sources, in_types))
    return f"{what} (inputs: {srcs})"


def run_analysis(lg, examples=(), given=None, renamed=()) -> NetworkAnalysis:
    issues: list[Issue] = [Issue("error", n, f"duplicate layer name {n!r}; layer names must be "
                                             f"unique") for n in renamed]
    plan = structure(lg, issues, len(examples) if examples else None)
    if plan is not None and not any(i.Message.startswith("wrong number") for i in issues):
        propagate(lg, plan, issues, examples, given)
    issues.sort(key=lambda i: i.Severity != "error")  # errors first, each group in order
    rows = []
    for n in (plan.order if plan is not None else list(lg.graph.nodes)):
        la = lg._layer(n)
        outs = [(p, plan.out_types.get((n, p))) for p in la.OutputNames] if plan else []
        lp = plan.params.get(n, ({}, {}))[0] if plan else {}
        sizes = {k: tuple(np.shape(v)) for k, v in lp.items()}
        rows.append(LayerInfoRow(n, la.Type, {p: t.shape for p, t in outs if t is not None},
                                 {p: t.fmt for p, t in outs if t is not None}, sizes,
                                 int(sum(math.prod(s) for s in sizes.values()))))
    return NetworkAnalysis(LayerInfo(rows), issues, plan)


def analyzeNetwork(net, *example_inputs) -> NetworkAnalysis:  # noqa: N802
    """analyzeNetwork(layers_or_net, X1, ..., Xn) — check a network and list its layers.

    Args:
        net: a LayerGraph, a DLNetwork, a layer or a list of layers (chained).
        example_inputs: one per network input (needed when there is no input layer).
    Returns:
        NetworkAnalysis with `LayerInfo` (Name, Type, ActivationSizes, ActivationFormats,
        LearnableSizes, NumLearnables per layer), `TotalLearnables` and `Issues`.

    MATLAB difference: the result is returned (and printed with `print`) instead of opening
    an app; activation sizes are those of a batch of 1.
    """
    from .dlnetwork import DLNetwork
    from .network import lenient_graph

    given = None
    if isinstance(net, DLNetwork):
        lg, renamed = net._arch.lg, ()
        if net.Initialized:
            given = net._params_by_layer()
    else:
        lg, renamed = lenient_graph(net, "analyzeNetwork")
    return run_analysis(lg, example_inputs, given, renamed)
