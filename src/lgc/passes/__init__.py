"""Graph -> Graph passes. `PIPELINE` lists, in order, what the compiled backends run."""

from .dce import eliminate_dead_code

PIPELINE = [eliminate_dead_code]


def optimize(g):
    for p in PIPELINE:
        g = p(g)
    return g


__all__ = ["PIPELINE", "eliminate_dead_code", "optimize"]
