"""lgc.plot: layer diagrams (one node per layer, one edge per connection, issues in red) and IR
diagrams (forward / gradient / update nodes, fused kernels as clusters), checked on the SVG
graphviz renders; formats; a missing `dot` program."""

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import lgc
from lgc import (
    additionLayer,
    convolution2dLayer,
    dlarray,
    dlgradient,
    fullyConnectedLayer,
    imageInputLayer,
    layerGraph,
    reluLayer,
)
from lgc.dlarray import apply
from lgc.passes import optimize
from lgc.passes.fuse import fuse_elementwise
from lgc.viz import ERROR_RED, KIND_STYLE, GraphvizNotFoundError, node_kind

SVG = "{http://www.w3.org/2000/svg}"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def groups(svg: bytes, kind: str) -> dict[str, ET.Element]:
    """The SVG's <g class=kind> elements by their <title> (graphviz's node/edge id)."""
    root = ET.fromstring(svg)
    return {g.find(f"{SVG}title").text: g for g in root.iter(f"{SVG}g")
            if g.get("class") == kind}


def strokes(g: ET.Element) -> set[str]:
    return {e.get("stroke") for e in g.iter() if e.get("stroke")}


def texts(g: ET.Element) -> list[str]:
    return [t.text or "" for t in g.iter(f"{SVG}text")]


@pytest.fixture(scope="module")
def networks():
    return example("networks")


def test_residual_network_has_a_node_per_layer_and_an_edge_per_connection(networks, tmp_path):
    lg = networks.residual()
    path = tmp_path / "deep" / "folder" / "residual.svg"
    dot = lgc.plot(lg, path)
    svg = path.read_bytes()
    nodes, edges = groups(svg, "node"), groups(svg, "edge")
    assert sorted(nodes) == sorted(la.Name for la in lg.Layers)
    assert len(edges) == len(lg.Connections) == 12
    # the skip connection goes to the addition's second port, the branch to its first
    assert "relu_1->add:in2" in edges and "conv_3->add:in1" in edges
    assert "in1" in texts(nodes["add"]) and "in2" in texts(nodes["add"])
    # layer type, learnable sizes and count; activation size and format on the edges
    assert "2-D Convolution" in texts(nodes["conv_2"])
    assert "584 learnables" in texts(nodes["conv_2"])
    assert "8×8×8×1 SSCB" in " ".join(texts(edges["relu_1->add:in2"]))
    assert "10×1 CB" in " ".join(texts(edges["fc->softmax"]))
    assert not any(ERROR_RED in strokes(g) for g in nodes.values())
    assert dot.source.startswith("digraph network")


def test_a_dlnetwork_and_a_layer_array_draw_like_their_graph(networks):
    net = lgc.dlnetwork(networks.residual())
    svg = lgc.plot(net).pipe(format="svg")
    assert len(groups(svg, "node")) == 12 and len(groups(svg, "edge")) == 12
    chain = groups(lgc.plot(networks.chain).pipe(format="svg"), "edge")
    assert sorted(chain) == ["conv->relu", "fc->softmax", "input->conv", "relu->fc"]


def test_unconnected_port_marks_the_layer_and_the_port_in_red(networks):
    svg = lgc.plot(networks.broken()).pipe(format="svg")
    nodes = groups(svg, "node")
    assert ERROR_RED in strokes(nodes["add"])
    assert all(ERROR_RED not in strokes(nodes[n]) for n in ("input", "conv", "relu"))
    red_texts = [t.text for t in nodes["add"].iter(f"{SVG}text") if t.get("fill") == ERROR_RED]
    assert "in2" in red_texts and "error" in red_texts
    # the message is in the node's tooltip and in the legend under the graph
    assert "is not connected" in nodes["add"].find(f"{SVG}g/{SVG}a").get(
        "{http://www.w3.org/1999/xlink}title")
    root_texts = " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))
    assert "Issues" in root_texts and "input 'in2' of 'add' (Addition) is not connected" in \
        root_texts


def test_size_mismatch_and_cycle_are_drawn_on_the_offending_layer():
    mismatch = layerGraph([
        imageInputLayer([8, 8, 1], Normalization="none", Name="input"),
        convolution2dLayer(3, 4, Name="small"),  # 6x6: no padding
        additionLayer(2, Name="add"),
    ]).connectLayers("input", "add/in2")
    nodes = groups(lgc.plot(mismatch).pipe(format="svg"), "node")
    assert ERROR_RED in strokes(nodes["add"]) and ERROR_RED not in strokes(nodes["small"])
    cycle = layerGraph([
        imageInputLayer([4, 4, 1], Normalization="none", Name="input"),
        additionLayer(2, Name="add"),
        reluLayer(Name="relu"),
        fullyConnectedLayer(2, Name="fc"),
    ]).connectLayers("relu", "add/in2")
    svg = lgc.plot(cycle).pipe(format="svg")
    nodes, edges = groups(svg, "node"), groups(svg, "edge")
    assert len(nodes) == 4 and len(edges) == 4
    assert [n for n, g in nodes.items() if ERROR_RED in strokes(g)] == ["add"]
    assert "cycle" in " ".join(t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text"))


def _fills(svg: bytes) -> dict[str, str]:
    return {title: {e.get("fill") for e in g.iter() if e.get("fill") not in (None, "none")}
            for title, g in groups(svg, "node").items()}


def test_ir_of_a_traced_program_colours_forward_and_gradient_nodes(networks):
    program = lgc.trace(networks.model_loss, *networks.example_inputs())
    graph = program.graph
    svg = lgc.plot(program).pipe(format="svg")
    fills = _fills(svg)
    for i, n in enumerate(graph.nodes):
        if n.op.name != "constant":
            assert KIND_STYLE[node_kind(n)]["fillcolor"] in fills[f"n{i}"], (i, n)
    kinds = {node_kind(n) for n in graph.nodes}
    assert kinds == {"forward", "gradient"}
    # every graph input and output is drawn, and each edge carries its value's type
    assert {f"in_{v.name}" for v in graph.inputs} <= set(fills)
    assert sum(k.startswith("out") for k in fills) == len(graph.outputs)
    edge_text = " ".join(" ".join(texts(g)) for g in groups(svg, "edge").values())
    assert "%p.W1: f32[8,4]" in edge_text and "f32[3,16]{CB}" in edge_text


def test_update_nodes_have_their_own_style():
    def train_step(w, m, v, lr, b1, b2, eps, t, X):  # noqa: N803
        loss = lgc.sum(lgc.relu(w * X))
        g = dlgradient(loss, w)
        return loss, apply("adam_update", w, g, m, v, lr, b1, b2, eps, t)

    vec = lambda: dlarray(np.ones(6, np.float32))  # noqa: E731
    hyper = [np.zeros((), np.float64)] * 5
    program = lgc.trace(train_step, vec(), vec(), vec(), *hyper, vec())
    kinds = [node_kind(n) for n in program.graph.nodes]
    assert kinds.count("update") == 1 and "gradient" in kinds
    k = kinds.index("update")
    node = groups(lgc.plot(program).pipe(format="svg"), "node")[f"n{k}"]
    assert KIND_STYLE["update"]["fillcolor"] in {e.get("fill") for e in node.iter()}
    assert "adam_update" in texts(node)


def test_fused_kernels_are_clusters_of_their_member_ops(networks):
    graph = fuse_elementwise(optimize(lgc.trace(networks.model_loss,
                                                *networks.example_inputs()).graph))
    fused = [n for n in graph.nodes if n.op.name == "fused"]
    assert fused
    svg = lgc.plot(graph).pipe(format="svg")
    clusters = groups(svg, "cluster")
    assert len(clusters) == len(fused)
    nodes = groups(svg, "node")
    for i, n in enumerate(graph.nodes):
        if n.op.name == "fused":
            members = [nodes[f"n{i}_{j}"] for j in range(len(n.attrs["body"]))]
            assert [texts(m)[0] for m in members] == [op for op, _, _ in n.attrs["body"]]
            assert f"fused kernel ({len(members)} ops)" in " ".join(
                texts(clusters[f"cluster_fused{i}"]))


def test_gradient_part_draws_outside_values_as_inputs(networks):
    from lgc.compiler import gradient_part

    grad = gradient_part(lgc.trace(networks.model_loss, *networks.example_inputs()).graph)
    svg = lgc.plot(grad).pipe(format="svg")
    assert {node_kind(n) for n in grad.nodes} == {"gradient"}
    assert len(groups(svg, "node")) >= len(grad.nodes)


@pytest.mark.parametrize("fmt,magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF")])
def test_png_and_pdf_write_exactly_the_file(networks, tmp_path, fmt, magic):
    named = tmp_path / f"net.{fmt}"
    lgc.plot(networks.chain, named)  # format from the suffix
    assert named.read_bytes().startswith(magic)
    other = tmp_path / "sub" / "diagram"
    lgc.plot(networks.chain, other, format=fmt)
    assert other.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["diagram",
                                                                          f"net.{fmt}"]


def test_bad_format_and_bad_object_raise_lgc_errors(networks, tmp_path):
    with pytest.raises(lgc.LgcError, match="format must be one of svg, png, pdf"):
        lgc.plot(networks.chain, tmp_path / "x.gif", format="gif")
    with pytest.raises(lgc.LgcError, match="does not match the file name"):
        lgc.plot(networks.chain, tmp_path / "x.png", format="pdf")
    with pytest.raises(lgc.LgcError, match="must end in .svg, .png or .pdf"):
        lgc.plot(networks.chain, tmp_path / "x.gif")
    assert not list(tmp_path.iterdir())
    with pytest.raises(lgc.LgcError, match="expected a LayerGraph, DLNetwork"):
        lgc.plot(42)


def test_missing_dot_says_how_to_install_it_and_keeps_the_diagram(networks, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    dot = lgc.plot(networks.residual())  # building a diagram needs no dot
    assert "add:in2" in dot.source
    with pytest.raises(GraphvizNotFoundError) as info:
        lgc.plot(networks.residual(), tmp_path / "net.svg")
    message = str(info.value)
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "conda" in message
    assert isinstance(info.value, lgc.LgcError)
    assert info.value.digraph.source == dot.source
    assert not (tmp_path / "net.svg").exists()
