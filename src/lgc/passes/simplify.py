"""Algebraic simplification: each op's own `simplify` rule (x + 0, x * 1, reshape of reshape,
identity transposes, relabel chains...). The rules live on the ops; this pass only asks."""

from __future__ import annotations

from ..ir.core import Graph
from .rewrite import rewrite


def simplify(g: Graph) -> Graph:
    return rewrite(g, lambda n, b: n.op.simplify(n, b))
