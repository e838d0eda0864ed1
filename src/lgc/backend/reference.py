"""The reference backend: a NumPy interpreter of the IR, the oracle for every other backend."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir.core import Graph
from ..ir.types import np_dtype
from ..passes import eliminate_dead_code


def run_graph(g: Graph, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `g` on concrete inputs, node by node, with each op's `ref`."""
    if len(inputs) != len(g.inputs):
        raise ShapeError(f"@{g.name}: expected {len(g.inputs)} inputs, got {len(inputs)}")
    env = {}
    for v, a in zip(g.inputs, inputs):
        a = np.asarray(a)
        if a.shape != v.shape:
            raise ShapeError(f"@{g.name}: input %{v.name} has shape {a.shape}, expected "
                             f"{v.shape}")
        env[v] = a.astype(np_dtype(v.dtype), copy=False)
    for n in g.nodes:
        res = n.op.ref(*(env[v] for v in n.inputs), **n.attrs)
        res = res if isinstance(res, tuple) else (res,)
        for o, r in zip(n.outputs, res):
            env[o] = np.asarray(r)
    return [env[v] for v in g.outputs]


class ReferenceExecutable:
    """A graph ready to run on the reference interpreter (dead code removed)."""

    backend = "reference"

    def __init__(self, g: Graph):
        self.graph = eliminate_dead_code(g)

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return run_graph(self.graph, inputs)
