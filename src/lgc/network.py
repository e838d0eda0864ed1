"""Layer graphs (API.md §5): build and edit networks of layers; `lgc.dlnetwork` runs them.

`LayerGraph` is a value: a networkx MultiDiGraph whose nodes are layer names (node attribute
`layer`) and whose edges carry the source output port (`src_port`) and the destination input
port (`dst_port`). Every verb returns a new graph; layers are copied on the way in and out, so a
user's layer objects are never mutated.
"""

from __future__ import annotations

import copy
import itertools
from collections import namedtuple

from .errors import GraphError
from .layers.base import Layer

# --- names and ports --------------------------------------------------------------------------


def _check_layer(layer, fn: str) -> None:
    if not isinstance(layer, Layer):
        raise GraphError(f"{fn}: expected a layer, got {type(layer).__name__}")


def _as_layer_list(layers, fn: str) -> list[Layer]:
    if layers is None:
        return []
    if isinstance(layers, Layer):
        return [layers]
    layers = list(layers)
    for la in layers:
        _check_layer(la, fn)
    return layers


def _auto_names(layers: list[Layer], taken: set[str]) -> None:
    """Give every unnamed layer `<stem>_<k>`: the smallest k >= 1 (per stem, counting on from
    the last one given) whose name is free in `taken` and among the explicit names."""
    used = set(taken) | {la.Name for la in layers if la.Name}
    counters: dict[str, itertools.count] = {}
    for la in layers:
        if la.Name:
            continue
        count = counters.setdefault(la.stem, itertools.count(1))
        name = f"{la.stem}_{next(count)}"
        while name in used:
            name = f"{la.stem}_{next(count)}"
        la.Name = name
        used.add(name)


def _split(spec: str, fn: str) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec:
        raise GraphError(f"{fn}: a layer or port must be a non-empty string like 'relu_1' or "
                         f"'add_1/in2', got {spec!r}")
    name, _, port = spec.partition("/")
    return name, (port or None)


def port_label(layer: Layer, port: str, output: bool) -> str:
    """MATLAB's spelling of a port: just the layer name for a lone `out`/`in` port."""
    ports = layer.OutputNames if output else layer.InputNames
    lone = "out" if output else "in"
    return layer.Name if ports == [lone] and port == lone else f"{layer.Name}/{port}"


Connection = namedtuple("Connection", ("Source", "Destination"))


class Connections:
    """MATLAB's connections table: columns `Source` and `Destination` (lists of strings)."""

    def __init__(self, sources, destinations):
        self.Source = list(sources)
        self.Destination = list(destinations)

    def __len__(self) -> int:
        return len(self.Source)

    def __iter__(self):
        return (Connection(s, d) for s, d in zip(self.Source, self.Destination))

    def __getitem__(self, i: int) -> Connection:
        return Connection(self.Source[i], self.Destination[i])

    def __repr__(self) -> str:
        w = max([len("Source")] + [len(s) for s in self.Source])
        lines = [f"{len(self)}x2 Connections", f"{'Source':<{w}}  Destination",
                 f"{'-' * w}  -----------"]
        lines += [f"{s:<{w}}  {d}" for s, d in self]
        return "\n".join(lines)


# --- LayerGraph -------------------------------------------------------------------------------


class LayerGraph:
    """layerGraph(layers) — a graph of layers (MATLAB `layerGraph`), immutable: every verb
    returns a new graph. `lg.graph` is the networkx MultiDiGraph (node attribute `layer`, edge
    attributes `src_port`, `dst_port`); `lg.Layers`, `lg.Connections`."""

    def __init__(self, graph=None):
        import networkx as nx  # imported on use, not by `import lgc`

        self.graph = graph if graph is not None else nx.MultiDiGraph(next_order=0)

    # -- views --

    def _layer(self, name: str) -> Layer:
        return self.graph.nodes[name]["layer"]

    def _names(self) -> list[str]:
        return list(self.graph.nodes)

    @property
    def Layers(self) -> list[Layer]:  # noqa: N802
        """Copies of the layers, in insertion order."""
        return [copy.deepcopy(self._layer(n)) for n in self.graph.nodes]

    def _edges(self) -> list[tuple[str, str, str, str]]:
        """(src, src_port, dst, dst_port) in the order the connections were made."""
        es = sorted(self.graph.edges(data=True), key=lambda e: e[2]["order"])
        return [(s, d["src_port"], t, d["dst_port"]) for s, t, d in es]

    @property
    def Connections(self) -> Connections:  # noqa: N802
        rows = [(port_label(self._layer(s), sp, True), port_label(self._layer(t), tp, False))
                for s, sp, t, tp in self._edges()]
        return Connections([r[0] for r in rows], [r[1] for r in rows])

    def __repr__(self) -> str:
        return (f"LayerGraph with {self.graph.number_of_nodes()} layers and "
                f"{self.graph.number_of_edges()} connections")

    # -- building (on a copy) --

    def _copy(self) -> LayerGraph:
        return LayerGraph(self.graph.copy())

    def _add(self, layers: list[Layer], fn: str, renamed: list | None = None) -> list[str]:
        """Add copies of `layers` (named automatically) chained to each other; returns their
        names. With a `renamed` list, a duplicate name does not raise: the layer is renamed
        `name#k` and its name appended to `renamed` (analyzeNetwork reports it)."""
        layers = [copy.deepcopy(la) for la in layers]
        _auto_names(layers, set(self.graph.nodes))
        names = []
        for la in layers:
            if la.Name in self.graph:
                if renamed is None:
                    raise GraphError(f"{fn}: a layer named {la.Name!r} is already in the graph; "
                                     f"layer names must be unique")
                k = 2
                while f"{la.Name}#{k}" in self.graph:
                    k += 1
                renamed.append(la.Name)
                la.Name = f"{la.Name}#{k}"
            self.graph.add_node(la.Name, layer=la)
            names.append(la.Name)
        for a, b in zip(names, names[1:]):
            src, dst = self._layer(a), self._layer(b)
            if not dst.InputNames:
                raise GraphError(f"{fn}: cannot chain {a!r} into {b!r}: {b!r} "
                                 f"({type(dst).__name__}) has no inputs")
            if not src.OutputNames:
                raise GraphError(f"{fn}: cannot chain {a!r} into {b!r}: {a!r} has no outputs")
            self._connect(a, src.OutputNames[0], b, dst.InputNames[0])
        return names

    def _connect(self, s: str, sp: str, d: str, dp: str, order: int | None = None) -> None:
        if order is None:
            order = self.graph.graph["next_order"]
            self.graph.graph["next_order"] = order + 1
        self.graph.add_edge(s, d, key=f"{sp}->{dp}", src_port=sp, dst_port=dp, order=order)

    def _resolve(self, spec: str, output: bool, fn: str) -> tuple[str, str]:
        name, port = _split(spec, fn)
        if name not in self.graph:
            raise GraphError(f"{fn}: no layer named {name!r} in the graph (layers: "
                             f"{', '.join(self.graph.nodes) or 'none'})")
        layer = self._layer(name)
        ports = layer.OutputNames if output else layer.InputNames
        kind = "output" if output else "input"
        if port is None:
            if output and "out" in ports:
                return name, "out"
            if len(ports) == 1:
                return name, ports[0]
            if not ports:
                raise GraphError(f"{fn}: layer {name!r} ({type(layer).__name__}) has no {kind}s")
            raise GraphError(f"{fn}: layer {name!r} has {kind}s {', '.join(ports)}; name one, "
                             f"e.g. '{name}/{ports[0]}'")
        if port not in ports:
            raise GraphError(f"{fn}: layer {name!r} ({type(layer).__name__}) has no {kind} "
                             f"port {port!r}; its {kind}s are {', '.join(ports) or 'none'}")
        return name, port

    def _incoming(self, name: str, port: str):
        for s, _, k, d in self.graph.in_edges(name, keys=True, data=True):
            if d["dst_port"] == port:
                return s, k
        return None

    # -- MATLAB verbs (each returns a new graph) --

    def addLayers(self, layers) -> LayerGraph:  # noqa: N802
        """addLayers(lgraph, larray) — add the layers, chained to each other but not connected
        to the layers already in the graph."""
        g = self._copy()
        g._add(_as_layer_list(layers, "addLayers"), "addLayers")
        return g

    def connectLayers(self, s: str, d: str) -> LayerGraph:  # noqa: N802
        """connectLayers(lgraph, s, d) — connect output `s` ('mp' or 'mp/indices') to input `d`
        ('relu_1' or 'add_1/in2'). A connection closing a cycle is accepted (analyzeNetwork
        reports it)."""
        g = self._copy()
        sn, sp = g._resolve(s, True, "connectLayers")
        dn, dp = g._resolve(d, False, "connectLayers")
        prev = g._incoming(dn, dp)
        if prev is not None:
            raise GraphError(f"connectLayers: input {dn}/{dp} is already connected to "
                             f"{prev[0]!r}; disconnect it first")
        g._connect(sn, sp, dn, dp)
        return g

    def disconnectLayers(self, s: str, d: str) -> LayerGraph:  # noqa: N802
        """disconnectLayers(lgraph, s, d) — remove the connection from `s` to `d`."""
        g = self._copy()
        sn, sp = g._resolve(s, True, "disconnectLayers")
        dn, dp = g._resolve(d, False, "disconnectLayers")
        key = f"{sp}->{dp}"
        if not g.graph.has_edge(sn, dn, key):
            raise GraphError(f"disconnectLayers: {s!r} is not connected to {d!r}")
        g.graph.remove_edge(sn, dn, key)
        return g

    def removeLayers(self, names) -> LayerGraph:  # noqa: N802
        """removeLayers(lgraph, names) — remove the layers and their connections."""
        names = [names] if isinstance(names, str) else list(names)
        missing = [n for n in names if n not in self.graph]
        if missing:
            raise GraphError(f"removeLayers: no layer named {', '.join(map(repr, missing))} in "
                             f"the graph")
        g = self._copy()
        g.graph.remove_nodes_from(names)
        return g

    def replaceLayer(self, name: str, layers, ReconnectBy="name") -> LayerGraph:  # noqa: N802,N803
        """replaceLayer(lgraph, layerName, larray, ReconnectBy="name"|"order") — replace a layer
        by a chain of layers: the old inputs feed the first new layer, the old outputs come
        from the last one (ports matched by name, or by position with ReconnectBy="order")."""
        if name not in self.graph:
            raise GraphError(f"replaceLayer: no layer named {name!r} in the graph")
        if ReconnectBy not in ("name", "order"):
            raise GraphError(f"replaceLayer: ReconnectBy must be 'name' or 'order', got "
                             f"{ReconnectBy!r}")
        new = _as_layer_list(layers, "replaceLayer")
        if not new:
            raise GraphError("replaceLayer: give at least one layer")
        old = self._layer(name)
        edges = sorted(self.graph.edges(data="order", keys=True), key=lambda e: e[3])
        g = self._copy()
        g.graph.remove_node(name)
        names = g._add(new, "replaceLayer")
        first, last = g._layer(names[0]), g._layer(names[-1])

        def match(port, old_ports, new_ports, what):
            if ReconnectBy == "order":
                i = old_ports.index(port)
                if i < len(new_ports):
                    return new_ports[i]
            elif port in new_ports:
                return port
            raise GraphError(f"replaceLayer: the {what} {port!r} of {name!r} has no "
                             f"counterpart among {', '.join(new_ports) or 'no ports'} "
                             f"(ReconnectBy={ReconnectBy!r})")

        # reconnected edges keep their place in the Connections order
        for s, t, key, order in edges:
            sp, tp = key.split("->")
            if t == name and s != name:
                g._connect(s, sp, first.Name, match(tp, old.InputNames, first.InputNames,
                                                     "input"), order)
            elif s == name and t != name:
                g._connect(last.Name, match(sp, old.OutputNames, last.OutputNames, "output"),
                           t, tp, order)
        return g


def layerGraph(layers=None) -> LayerGraph:  # noqa: N802
    """layerGraph(layers) — a LayerGraph of the layers, each connected to the next.

    Unnamed layers get `<stem>_<k>` names (`conv_1`, `relu_1`). Example::

        lg = layerGraph([imageInputLayer([28, 28, 1]), convolution2dLayer(3, 8), reluLayer()])
        lg = lg.addLayers(additionLayer(2, Name="add")).connectLayers("relu_1", "add/in1")
    """
    if isinstance(layers, LayerGraph):
        return layers._copy()
    g = LayerGraph()
    g._add(_as_layer_list(layers, "layerGraph"), "layerGraph")
    return g


def _graph_of(lg, fn: str) -> LayerGraph:
    if not isinstance(lg, LayerGraph):
        raise GraphError(f"{fn}: expected a LayerGraph, got {type(lg).__name__}")
    return lg


def addLayers(lg, layers) -> LayerGraph:  # noqa: N802
    """addLayers(lgraph, larray) — see `LayerGraph.addLayers`."""
    return _graph_of(lg, "addLayers").addLayers(layers)


def connectLayers(lg, s: str, d: str) -> LayerGraph:  # noqa: N802
    """connectLayers(lgraph, s, d) — see `LayerGraph.connectLayers`."""
    return _graph_of(lg, "connectLayers").connectLayers(s, d)


def disconnectLayers(lg, s: str, d: str) -> LayerGraph:  # noqa: N802
    """disconnectLayers(lgraph, s, d) — see `LayerGraph.disconnectLayers`."""
    return _graph_of(lg, "disconnectLayers").disconnectLayers(s, d)


def removeLayers(lg, names) -> LayerGraph:  # noqa: N802
    """removeLayers(lgraph, names) — see `LayerGraph.removeLayers`."""
    return _graph_of(lg, "removeLayers").removeLayers(names)


def replaceLayer(lg, name: str, layers, ReconnectBy="name") -> LayerGraph:  # noqa: N802,N803
    """replaceLayer(lgraph, layerName, larray) — see `LayerGraph.replaceLayer`."""
    return _graph_of(lg, "replaceLayer").replaceLayer(name, layers, ReconnectBy=ReconnectBy)


def lenient_graph(obj, fn: str) -> tuple[LayerGraph, list[str]]:
    """A LayerGraph of `obj` (graph, layer or list) and the duplicate names met building it."""
    if isinstance(obj, LayerGraph):
        return obj, []
    g, renamed = LayerGraph(), []
    g._add(_as_layer_list(obj, fn), fn, renamed)
    return g, renamed
