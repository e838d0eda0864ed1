"""Nests of containers ("pytrees"): flatten to array leaves and a hashable structure, and back.

Containers: dict, list, tuple, and any class registered with `register_node` (Table,
DLNetwork). Array leaves are DLArrays and NumPy arrays; every other object is static and kept
inside the structure (it must be hashable for the structure to be a cache key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_NODES: dict[type, tuple[Callable, Callable]] = {}


def register_node(cls: type, flatten: Callable, unflatten: Callable) -> None:
    """`flatten(obj) -> (children, aux)`; `unflatten(aux, children) -> obj`; aux hashable."""
    _NODES[cls] = (flatten, unflatten)


_ARRAY_TYPES: tuple[type, ...] = ()


def is_array(x) -> bool:
    global _ARRAY_TYPES
    if not _ARRAY_TYPES:
        from .dlarray import DLArray  # imported late: dlarray imports this module

        _ARRAY_TYPES = (DLArray, np.ndarray)
    return isinstance(x, _ARRAY_TYPES)


class Leaf:
    """Marks an array leaf's position in a structure."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


LEAF = Leaf()


def flatten(tree, path: str = "") -> tuple[list[tuple[str, Any]], Any]:
    """Returns `([(path, leaf), ...], structure)`; paths name leaves (`params.fc1.W`)."""
    leaves: list[tuple[str, Any]] = []
    struct = _flatten(tree, path, leaves)
    return leaves, struct


def _flatten(x, path, leaves):
    if is_array(x):
        leaves.append((path, x))
        return LEAF
    t = type(x)
    if t is dict:
        keys = tuple(x)
        return ("dict", keys, tuple(_flatten(x[k], _join(path, k), leaves) for k in keys))
    if t is list or t is tuple:
        return (t.__name__, tuple(_flatten(c, _join(path, i), leaves) for i, c in enumerate(x)))
    if t in _NODES:
        children, aux = _NODES[t][0](x)
        names = [n for n, _ in children]
        return ("node", t, aux, tuple(names),
                tuple(_flatten(c, _join(path, n), leaves) for n, c in children))
    # the type is part of the key: 3 and 3.0 (or 1 and True) compare equal but can make
    # Python code in a traced function behave differently
    return ("static", type(x), x)


def _join(path, key) -> str:
    return f"{path}.{key}" if path else str(key)


def unflatten(struct, leaves) -> Any:
    it = iter(leaves)
    out = _unflatten(struct, it)
    return out


def _unflatten(s, it):
    if s is LEAF:
        return next(it)
    kind = s[0]
    if kind == "dict":
        return {k: _unflatten(c, it) for k, c in zip(s[1], s[2])}
    if kind == "list":
        return [_unflatten(c, it) for c in s[1]]
    if kind == "tuple":
        return tuple(_unflatten(c, it) for c in s[1])
    if kind == "node":
        _, cls, aux, names, children = s
        return _NODES[cls][1](aux, [(n, _unflatten(c, it)) for n, c in zip(names, children)])
    return s[2]


def map_leaves(fn: Callable, tree) -> Any:
    leaves, struct = flatten(tree)
    return unflatten(struct, [fn(x) for _, x in leaves])
