"""The op IR: a flat, typed SSA list of nodes.

A `Graph` has named input `Value`s, a list of `Node`s in a valid execution order, and output
values. A `Node` applies one registered op (`lgc.ops`) to input values with constant attributes
and produces one or more values. Every node carries provenance: the layer or op it came from
(`vjp(fc1)` for gradient nodes), so errors and kernels can name their origin.

`Builder` appends nodes to a graph; it is what the tracer, the VJP rules and the passes use to
emit IR. Emission infers the output types through the op's `infer`, which validates the inputs.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .types import TensorType, dtype_name

if TYPE_CHECKING:
    from ..ops.base import OpDef

_ids = itertools.count()


class Value:
    """An SSA value: a graph input (with a name) or one output of a node."""

    __slots__ = ("type", "name", "producer", "index", "id")

    def __init__(self, type: TensorType, name: str | None = None, producer: Node | None = None,
                 index: int = 0):
        self.type = type
        self.name = name
        self.producer = producer
        self.index = index
        self.id = next(_ids)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def fmt(self) -> str:
        return self.type.fmt

    @property
    def ndim(self) -> int:
        return self.type.ndim

    def __repr__(self) -> str:
        return f"Value({self.name or self.id}: {self.type})"


class Node:
    """One op application: `outputs = op(*inputs, **attrs)`, with provenance `prov`."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "prov")

    def __init__(self, op: OpDef, inputs: Sequence[Value], attrs: dict[str, Any],
                 out_types: Sequence[TensorType], prov: str = ""):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.outputs = tuple(Value(t, producer=self, index=i) for i, t in enumerate(out_types))
        self.prov = prov

    @property
    def out(self) -> Value:
        assert len(self.outputs) == 1, f"{self.op.name} has {len(self.outputs)} outputs"
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"Node({self.op.name}, prov={self.prov!r})"


class Graph:
    """A function in SSA form: `inputs`, `nodes` in execution order, `outputs`."""

    def __init__(self, name: str = "main", inputs: Sequence[Value] = (),
                 nodes: Sequence[Node] = (), outputs: Sequence[Value] = ()):
        self.name = name
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)

    def __str__(self) -> str:
        from .text import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph @{self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def to_networkx(self):
        """A networkx MultiDiGraph: a node per IR node and input, an edge per use."""
        import networkx as nx

        from .text import print_node, value_names

        names = value_names(self)
        nxg = nx.MultiDiGraph(name=self.name)
        for v in self.inputs:
            nxg.add_node(names[v], kind="input", type=str(v.type))
        for i, n in enumerate(self.nodes):
            nxg.add_node(f"node{i}", kind="node", op=n.op.name, prov=n.prov,
                         label=print_node(n, names), outputs=[names[o] for o in n.outputs])
        producer = {o: f"node{i}" for i, n in enumerate(self.nodes) for o in n.outputs}
        for i, n in enumerate(self.nodes):
            for k, v in enumerate(n.inputs):
                src = producer.get(v, names[v])
                nxg.add_edge(src, f"node{i}", port=k, type=str(v.type))
        for k, v in enumerate(self.outputs):
            nxg.add_node(f"output{k}", kind="output", type=str(v.type))
            nxg.add_edge(producer.get(v, names[v]), f"output{k}", port=0, type=str(v.type))
        return nxg


class Builder:
    """Appends nodes to a graph. `emit` validates through the op's `infer`."""

    def __init__(self, graph: Graph | None = None):
        self.graph = graph if graph is not None else Graph()
        self._prov: list[str] = []

    @property
    def prov(self) -> str:
        return self._prov[-1] if self._prov else ""

    @contextlib.contextmanager
    def provenance(self, name: str) -> Iterator[None]:
        self._prov.append(name)
        try:
            yield
        finally:
            self._prov.pop()

    def input(self, type: TensorType, name: str) -> Value:
        v = Value(type, name=name)
        self.graph.inputs.append(v)
        return v

    def emit_node(self, op_name: str, *inputs: Value, **attrs) -> Node:
        from ..ops.base import get_op

        op = get_op(op_name)
        attrs = op.normalize_attrs(attrs)
        out_types = op.infer([v.type for v in inputs], **attrs)
        node = Node(op, inputs, attrs, out_types, self.prov)
        self.graph.nodes.append(node)
        return node

    def emit(self, op_name: str, *inputs: Value, **attrs) -> Value:
        """Emit a single-output op and return its value."""
        return self.emit_node(op_name, *inputs, **attrs).out

    def const(self, value, dtype: str | None = None) -> Value:
        """A constant. Python scalars take `dtype` (default f32)."""
        arr = np.asarray(value)
        if dtype is None:
            dtype = dtype_name(arr.dtype) if isinstance(value, np.ndarray) else "f32"
        return self.emit("constant", value=arr, dtype=dtype)

    # Small helpers the VJP rules use; each is one op.
    def add(self, a: Value, b: Value) -> Value:
        return self.emit("add", a, b)

    def mul(self, a: Value, b: Value) -> Value:
        return self.emit("mul", a, b)

    def neg(self, a: Value) -> Value:
        return self.emit("neg", a)

    def sum_to(self, a: Value, shape: tuple[int, ...]) -> Value:
        """Sum `a` down to `shape` (the VJP of broadcasting); a no-op when shapes agree."""
        if a.shape == tuple(shape):
            return a
        return self.emit("sum_to", a, shape=tuple(shape))

    def relabel(self, v: Value, fmt: str) -> Value:
        """`v` with format `fmt`; no node when it already has it."""
        return v if v.fmt == fmt else self.emit("relabel", v, fmt=fmt)

    def zeros_like(self, v: Value) -> Value:
        return self.emit("fill", value=0.0, dtype=v.dtype, shape=v.shape, fmt=v.fmt)
