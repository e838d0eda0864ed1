"""Graph -> Graph passes, each a pure function. `PIPELINE` lists, in order, what the compiled
backends run (the CPU backend's `CPU_PIPELINE` adds reduction fusion); `optimize` applies it
(printing the IR after each pass at LGC_DEBUG >= 2).
Buffer planning is not a pass: it assigns real memory (backend/plan.py, called by each
compiled runtime with its allocator)."""

from __future__ import annotations

import time

from .. import debug
from ..ir.core import Graph
from .cse import eliminate_common_subexpressions
from .dce import eliminate_dead_code
from .fold import fold_constants
from .fuse import fuse_elementwise
from .fuse_reduce import fuse_reductions
from .simplify import simplify

PIPELINE = [
    eliminate_dead_code,
    fold_constants,
    simplify,
    eliminate_common_subexpressions,
    simplify,
    eliminate_dead_code,
    fuse_elementwise,
]
# reductions of a fused kernel's output accumulate in its loop (the CUDA kernels do not yet)
CPU_PIPELINE = [*PIPELINE, fuse_reductions]


def optimize(g: Graph, pipeline=None) -> Graph:
    for p in PIPELINE if pipeline is None else pipeline:
        t0 = time.perf_counter()
        g = p(g)
        if debug.level() >= 1:
            debug.dump(f"pass {p.__name__}", f"{len(g.nodes)} nodes, "
                       f"{(time.perf_counter() - t0) * 1e3:.2f} ms")
        if debug.level() >= 2:
            debug.dump(f"after {p.__name__}", str(g))
    return g


__all__ = [
    "CPU_PIPELINE", "PIPELINE", "eliminate_common_subexpressions", "eliminate_dead_code",
    "fold_constants", "fuse_elementwise", "fuse_reductions", "optimize", "simplify",
]
