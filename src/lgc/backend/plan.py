"""Buffer planning shared by the compiled backends: every value a step writes gets a buffer,
reused by later values of the same dtype and shape once its lifetime (and that of every view
of it) has ended. Backends differ only in which steps write their own outputs, which steps
return views of their inputs, and how a buffer is allocated (host or device memory)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

from ..ir.core import Node, Value

CACHE_LINE = 64


def empty_aligned(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.empty whose data starts on a cache line (NumPy's start 16 bytes apart): threads
    writing neighbouring blocks of a row, such as the columns of a recurrence's step, then
    never write into one line (an LSTM train step whose backward kernel's two threads each
    write 16 of a step's 32 columns: 3.15-3.46 ms with NumPy's buffers, 2.91-3.05 with
    these). One np.ndarray on an over-allocated block: ~2 us (np.empty ~0.2)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if not size:
        return np.empty(shape, dtype)
    raw = np.empty(size + CACHE_LINE, np.uint8)
    return np.ndarray(shape, dtype, raw, -raw.ctypes.data % CACHE_LINE)


def zeros_aligned(shape: tuple[int, ...], dtype) -> np.ndarray:
    """np.zeros starting on a cache line (`empty_aligned`)."""
    out = empty_aligned(shape, dtype)
    out.fill(0)
    return out


def plan_buffers(nodes: list[Node], writes: list[bool], views: list[bool],
                 allocate: Callable[[Value], object], *, skip: set[Value] = frozenset(),
                 live_to_end: Iterable[Value] = ()) -> dict[Value, object]:
    """{value: buffer} for the outputs of the nodes whose `writes[t]` is set (but not those in
    `skip`). An output of a node whose `views[t]` is set shares its inputs' memory, so it keeps
    them alive; `live_to_end` values (and what they view) are never reused."""
    last_use: dict[Value, int] = {}
    roots: dict[Value, set[Value]] = {}
    for t, n in enumerate(nodes):
        for v in n.inputs:
            for root in roots.get(v, {v}):
                last_use[root] = t
        for o in n.outputs:
            roots[o] = set().union(*(roots.get(v, {v}) for v in n.inputs)) if views[t] else {o}
    for v in live_to_end:
        for root in roots.get(v, {v}):
            last_use[root] = len(nodes)
    releases: dict[int, list[Value]] = {}
    for v, t in last_use.items():
        releases.setdefault(t, []).append(v)
    free: dict[tuple, list] = {}
    buffers: dict[Value, object] = {}
    for t, n in enumerate(nodes):
        if writes[t]:
            for o in n.outputs:
                if o not in skip:
                    key = (o.dtype, o.shape)
                    buffers[o] = free[key].pop() if free.get(key) else allocate(o)
        for v in releases.get(t, []):
            if v in buffers:
                free.setdefault((v.dtype, v.shape), []).append(buffers[v])
    return buffers


def workspace_bytes(buffers: dict[Value, object]) -> int:
    """The memory of the distinct buffers of a plan."""
    return sum(b.nbytes for b in {id(b): b for b in buffers.values()}.values())
