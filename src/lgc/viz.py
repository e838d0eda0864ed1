"""lgc.plot: graphviz diagrams of layer graphs, networks and IR graphs (any stage).

Layer diagrams come from `analyzeNetwork`, so the sizes and formats on the edges are the ones
the layers' own code produces and every issue it finds is drawn on the layer it names. IR
diagrams colour each node by what made it (forward, gradient, optimizer update) and draw a
fused node as a cluster of its member ops. Building a diagram never runs `dot`; rendering it
does, and a missing `dot` is an LgcError that says how to install it (the Digraph and its DOT
text stay available on the error).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import graphviz
import numpy as np

from .errors import LgcError

FORMATS = ("svg", "png", "pdf")

# fill colours: forward, gradient, update (their legend is the graph label of an IR diagram)
KIND_STYLE = {
    "forward": {"shape": "box", "style": "rounded,filled", "fillcolor": "#dbe9f6"},
    "gradient": {"shape": "box", "style": "filled", "fillcolor": "#fbe0c8"},
    "update": {"shape": "box3d", "style": "filled", "fillcolor": "#d4edd4"},
}
ERROR_RED = "#d62728"
FONT = "Helvetica"


class GraphvizNotFoundError(LgcError):
    """graphviz's `dot` program is not installed; `.digraph` holds the unrendered diagram."""

    def __init__(self, message: str, digraph: graphviz.Digraph):
        super().__init__(message)
        self.digraph = digraph


def plot(obj, path: str | os.PathLike | None = None, format: str | None = None):  # noqa: A002
    """lgc.plot(obj, path=None, format="svg") — draw a network or an IR graph with graphviz.

    Args:
        obj: a LayerGraph, a DLNetwork, a layer or list of layers (chained), a Program
            (`lgc.trace`), a Graph at any stage (`lower(...).optimized`) or a Lowered (its
            optimized graph).
        path: when given, the diagram is rendered and written to exactly this file (parent
            folders are created).
        format: "svg", "png" or "pdf"; default: the suffix of `path` (".svg", ".png",
            ".pdf"), or "svg" when there is none.
    Returns:
        the `graphviz.Digraph` (shown inline in Jupyter; `.source` is its DOT text).
    Raises:
        GraphvizNotFoundError when rendering needs graphviz's `dot` and it is not installed.
    Example::

        lgc.plot(lgraph, "net.svg")
        lgc.plot(lgc.compile(model_loss).lower(params, X, T).optimized, "fused.pdf")

    MATLAB difference: MATLAB's `plot(lgraph)` draws into a figure; here the diagram is a
    graphviz object and a file.
    """
    fmt = output_format(path, format)
    dot = digraph(obj)
    if path is not None:
        render(dot, path, fmt)
    return dot


def digraph(obj) -> graphviz.Digraph:
    """The diagram of `obj` (see `plot`), without rendering it."""
    from .compiler import Lowered
    from .dlnetwork import DLNetwork
    from .ir.core import Graph
    from .ir.trace import Program
    from .layers.base import Layer
    from .network import LayerGraph

    if isinstance(obj, Lowered):
        obj = obj.optimized
    if isinstance(obj, Program):
        obj = obj.graph
    if isinstance(obj, Graph):
        return ir_digraph(obj)
    if isinstance(obj, LayerGraph | DLNetwork | Layer) or (
            isinstance(obj, list | tuple) and obj and all(isinstance(x, Layer) for x in obj)):
        return layer_digraph(obj)
    raise LgcError(f"lgc.plot: expected a LayerGraph, DLNetwork, list of layers, Program or "
                   f"Graph, got {type(obj).__name__}")


def output_format(path, format: str | None) -> str:  # noqa: A002
    """The format `plot` writes `path` in (see `plot`); LgcError when they disagree."""
    suffix = Path(path).suffix.lower().lstrip(".") if path is not None else ""
    if format is None:
        if suffix and suffix not in FORMATS:
            raise LgcError(f"lgc.plot: cannot write {str(path)!r}: the file name must end in "
                           f".svg, .png or .pdf, or give format= ({', '.join(FORMATS)})")
        return suffix or "svg"
    fmt = str(format).lower()
    if fmt not in FORMATS:
        raise LgcError(f"lgc.plot: format must be one of {', '.join(FORMATS)}, got {format!r}")
    if suffix in FORMATS and suffix != fmt:
        raise LgcError(f"lgc.plot: format={format!r} does not match the file name {str(path)!r}")
    return fmt


def render(dot: graphviz.Digraph, path: str | os.PathLike, format: str = "svg") -> Path:  # noqa: A002
    """Render `dot` with graphviz's `dot` program and write exactly `path`."""
    path = Path(path)
    try:
        data = dot.pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError(
            "lgc.plot: graphviz's 'dot' program is not installed, so the diagram cannot be "
            "rendered; install it with 'apt-get install graphviz', 'brew install graphviz' or "
            "'conda install -c conda-forge graphviz' (the diagram itself is on this error's "
            ".digraph, its DOT text on .digraph.source)", dot) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _new(name: str, rankdir: str = "TB") -> graphviz.Digraph:
    dot = graphviz.Digraph(name=name)
    dot.attr(rankdir=rankdir, fontname=FONT, labelloc="b", labeljust="l")
    dot.attr("node", fontname=FONT, fontsize="11")
    dot.attr("edge", fontname=FONT, fontsize="9", color="#555555")
    return dot


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


# --- layer diagrams ---------------------------------------------------------------------------


def _node_ids(names) -> dict[str, str]:
    # graphviz's Python API reads "a:b" in an edge as node a, port b
    ids, used = {}, set()
    for n in names:
        nid = n.replace(":", "_")
        while nid in used:
            nid += "_"
        ids[n] = nid
        used.add(nid)
    return ids


def _sz(shape) -> str:
    return "×".join(str(s) for s in shape) if len(shape) else "1×1"


def _ports_row(ports: list[str], bad: set[str]) -> str:
    cells = []
    for p in ports:
        fill = ' BGCOLOR="#f8d0d0"' if p in bad else ""
        font = f' COLOR="{ERROR_RED}"' if p in bad else ""
        cells.append(f'<TD PORT="{_esc(p)}"{fill}><FONT POINT-SIZE="9"{font}>{_esc(p)}</FONT></TD>')
    return (f'<TR><TD BORDER="0" CELLPADDING="0"><TABLE BORDER="0" CELLBORDER="1" '
            f'CELLSPACING="0" CELLPADDING="2"><TR>{"".join(cells)}</TR></TABLE></TD></TR>')


def _layer_label(layer, row, issues: list, bad_ports: set[str]) -> str:
    color = ERROR_RED if any(i.Severity == "error" for i in issues) else (
        "#e6a100" if issues else "#333333")
    fill = "#fde2e2" if color == ERROR_RED else ("#fff4d6" if issues else "#eef3fa")
    lines = [f"<B>{_esc(layer.Name)}</B>", f'<FONT COLOR="#555555">{_esc(layer.Type)}</FONT>']
    if row is not None and row.NumLearnables:
        sizes = ", ".join(f"{k} {_sz(s)}" for k, s in row.LearnableSizes.items())
        lines.append(f'<FONT POINT-SIZE="9">{_esc(sizes)}</FONT>')
        lines.append(f'<FONT POINT-SIZE="9">{row.NumLearnables:,} learnables</FONT>')
    for i in issues:
        lines.append(f'<FONT POINT-SIZE="9" COLOR="{color}">{_esc(i.Severity)}</FONT>')
    rows = []
    if len(layer.InputNames) > 1 or bad_ports:
        rows.append(_ports_row(layer.InputNames, bad_ports))
    rows.append(f'<TR><TD BGCOLOR="{fill}" COLOR="{color}" CELLPADDING="5">'
                f'{"<BR/>".join(lines)}</TD></TR>')
    if len(layer.OutputNames) > 1:
        rows.append(_ports_row(layer.OutputNames, set()))
    return (f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" COLOR="{color}">'
            f'{"".join(rows)}</TABLE>>')


def layer_digraph(obj) -> graphviz.Digraph:
    """Diagram of a layer graph or network: a node per layer, an edge per connection."""
    from .analysis import analyzeNetwork
    from .dlnetwork import DLNetwork
    from .network import lenient_graph

    analysis = analyzeNetwork(obj)
    lg = obj._arch.lg if isinstance(obj, DLNetwork) else lenient_graph(obj, "lgc.plot")[0]
    plan = analysis._plan
    rows = {r.Name: r for r in analysis.LayerInfo}
    by_layer: dict[str, list] = {}
    for issue in analysis.Issues:
        by_layer.setdefault(issue.Layer, []).append(issue)
    ids = _node_ids(lg.graph.nodes)
    dot = _new("network")
    for n in lg.graph.nodes:
        layer = lg._layer(n)
        issues = by_layer.get(n, [])
        bad = {p for p in layer.InputNames for i in issues
               if i.Severity == "error" and f"input {p!r}" in i.Message}
        attrs = {"shape": "plain", "label": _layer_label(layer, rows.get(n), issues, bad)}
        if issues:
            attrs["tooltip"] = "\n".join(str(i) for i in issues)
            attrs["color"] = ERROR_RED
        else:
            attrs["tooltip"] = f"{layer.Name} ({layer.Type})"
        dot.node(ids[n], **attrs)
    for s, sp, d, dp in lg._edges():
        src, dst = lg._layer(s), lg._layer(d)
        tail = f"{ids[s]}:{sp}" if len(src.OutputNames) > 1 else ids[s]
        head = f"{ids[d]}:{dp}" if len(dst.InputNames) > 1 else ids[d]
        t = plan.out_types.get((s, sp)) if plan is not None else None
        label = f" {_sz(t.shape)} {t.fmt}".rstrip() if t is not None else ""
        dot.edge(tail, head, label=label, tooltip=f"{s}/{sp} -> {d}/{dp}")
    if analysis.Issues:
        items = "".join(f'<TR><TD ALIGN="LEFT"><FONT COLOR="'
                        f'{ERROR_RED if i.Severity == "error" else "#b07800"}">'
                        f'{_esc(i)}</FONT></TD></TR>' for i in analysis.Issues)
        dot.attr(label=f'<<TABLE BORDER="0"><TR><TD ALIGN="LEFT"><B>Issues</B></TD></TR>'
                       f'{items}</TABLE>>')
    return dot


# --- IR diagrams ------------------------------------------------------------------------------


def node_kind(n) -> str:
    """"update" (optimizer update ops), "gradient" (made by dlgradient) or "forward"."""
    if n.op.name.endswith("_update"):
        return "update"
    if n.prov == "dlgradient" or n.prov.startswith("vjp("):
        return "gradient"
    return "forward"


def _fused_kind(n) -> str:
    # a fused node keeps the provenance of the ops it absorbed
    provs = [p.strip() for p in n.prov.split(",")] if n.prov else []
    if any(p == "dlgradient" or p.startswith("vjp(") for p in provs):
        return "gradient"
    return "forward"


def _short_attrs(attrs: dict) -> str:
    parts = []
    for k, v in attrs.items():
        if isinstance(v, str) and not v:
            continue
        if isinstance(v, np.ndarray):
            v = f"array{list(v.shape)}" if v.size > 4 else v.tolist()
        text = f"{k}={v!r}" if not isinstance(v, str) else f"{k}={v}"
        parts.append(text if len(text) <= 28 else text[:25] + "...")
    return ", ".join(parts)


def ir_digraph(g) -> graphviz.Digraph:
    """Diagram of an IR Graph: inputs, one node per op (fused nodes as clusters of their
    member ops), outputs; every edge labelled with the type of the value it carries."""
    from .ir.text import value_names

    names = value_names(g)
    dot = _new(f"ir_{g.name}")
    dot.attr("edge", fontsize="8")
    src: dict = {}  # value -> graphviz node id producing it
    for v in g.inputs:
        nid = f"in_{names[v]}".replace(":", "_")
        dot.node(nid, label=f"%{names[v]}\n{v.type}", shape="ellipse", style="filled",
                 fillcolor="#f2f2f2", color="#888888")
        src[v] = nid
    counts = {"forward": 0, "gradient": 0, "update": 0, "fused": 0}
    for i, n in enumerate(g.nodes):
        if n.op.name == "fused":
            counts["fused"] += 1
            _fused_cluster(dot, g, i, n, names, src)
            continue
        kind = node_kind(n)
        counts[kind] += 1
        nid = f"n{i}"
        if n.op.name == "constant" and np.size(n.attrs.get("value")) <= 4:
            # a small constant is drawn next to each use: one shared node would pull edges
            # across the whole diagram
            src[n.outputs[0]] = ("const", nid, _short_attrs({"v": n.attrs.get("value")})[2:])
            continue
        if n.op.name == "constant":
            dot.node(nid, label=f"constant\n{n.outputs[0].type}", shape="plaintext",
                     fontsize="9", fontcolor="#666666")
        else:
            attrs = _short_attrs({k: v for k, v in n.attrs.items()
                                  if k not in ("value",) and v not in ((), "", None)})
            label = n.op.name + (f"\n{attrs}" if attrs else "") + (f"\n# {n.prov}" if n.prov
                                                                    else "")
            dot.node(nid, label=label, tooltip=f"{kind}: {n.op.name} # {n.prov}",
                     **KIND_STYLE[kind])
        for v in n.inputs:
            _value_edge(dot, src, v, nid, names)
        for o in n.outputs:
            src[o] = nid
    for k, v in enumerate(g.outputs):
        oid = f"out{k}"
        dot.node(oid, label=f"output {k}", shape="ellipse", style="bold", color="#333333")
        _value_edge(dot, src, v, oid, names)
    legend = "".join(
        f'<TD BGCOLOR="{KIND_STYLE[k]["fillcolor"]}">{k} ({counts[k]})</TD>'
        for k in ("forward", "gradient", "update"))
    legend += f'<TD BGCOLOR="#f7f7f7" STYLE="dashed">fused kernels ({counts["fused"]})</TD>'
    dot.attr(label=f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="2"><TR>'
                   f'<TD BORDER="0"><B>@{_esc(g.name)}</B>: {len(g.nodes)} nodes</TD>'
                   f'{legend}</TR></TABLE>>')
    return dot


def _value_edge(dot, src: dict, v, head: str, names: dict) -> None:
    tail = src.get(v)
    if isinstance(tail, tuple):  # a small constant: a fresh node at each use
        cid = f"{tail[1]}_{head}"
        dot.node(cid, label=tail[2], shape="plaintext", fontsize="9", fontcolor="#666666",
                 tooltip=f"%{names.get(v, '?')} = constant")
        dot.edge(cid, head, color="#bbbbbb")
        return
    if tail is None:  # a value from outside this graph (a gradient part's forward input)
        tail = f"ext_{names.get(v, v.id)}"
        dot.node(tail, label=f"%{names.get(v, '?')}\n{v.type}", shape="ellipse",
                 style="dashed", color="#888888")
        src[v] = tail
    label = f"%{names.get(v, '?')}: {v.type}"
    dot.edge(tail, head, label=label)


def _fused_cluster(dot, g, i: int, n, names: dict, src: dict) -> None:
    """A fused node as a cluster: one member node per body instruction, edges by operand."""
    kind = _fused_kind(n)
    body, results = n.attrs["body"], n.attrs["results"]
    n_in = len(n.inputs)
    with dot.subgraph(name=f"cluster_fused{i}") as c:
        c.attr(label=f"fused kernel ({len(body)} ops) # {n.prov}"[:90], style="dashed,filled",
               fillcolor="#f7f7f7", color="#777777", fontsize="10", tooltip=n.prov)
        member = []
        for j, (op_name, _refs, attrs) in enumerate(body):
            mid = f"n{i}_{j}"
            a = _short_attrs(dict(attrs))
            c.node(mid, label=op_name + (f"\n{a}" if a else ""), **KIND_STYLE[kind])
            member.append(mid)
    for j, (_op, refs, _a) in enumerate(body):
        for r in refs:
            if r < n_in:
                _value_edge(dot, src, n.inputs[r], member[j], names)
            else:
                dot.edge(member[r - n_in], member[j], color="#999999")
    for o, r in zip(n.outputs, results):
        src[o] = member[r - n_in] if r >= n_in else src.get(n.inputs[r])


# --- text -------------------------------------------------------------------------------------


def stages_text(lowered, source: bool = False) -> str:
    """The IR of a `Lowered` at each stage (traced, gradient, optimized/fused), its stats and,
    with `source`, the generated kernel source: what `lgc ir` prints."""
    fused = any(n.op.name == "fused" for n in lowered.optimized.nodes)
    stages = [("traced (lgc.trace)", lowered.program.graph)]
    if lowered.gradient_program is not None:
        stages.append(("gradient (the nodes dlgradient emitted)", lowered.gradient_program))
    stages.append(("optimized and fused" if fused else "optimized", lowered.optimized))
    parts = [f"== {title}: {len(g.nodes)} nodes ==\n{g}" for title, g in stages]
    st = lowered.stats
    parts.append(f"== stats ==\n{st['n_ops']} traced ops -> {len(lowered.optimized.nodes)} "
                 f"optimized nodes, {st['n_kernels']} kernels; compile {st['compile_seconds']:.2f}"
                 f" s, kernel cache {st['cache_hits']} hits / {st['cache_misses']} misses")
    if source:
        parts.append("== generated kernel source ==\n" + (lowered.source or
                                                           "(this backend generates no source)"))
    return "\n\n".join(parts)
