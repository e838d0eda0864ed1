"""`Table`: MATLAB's table as used for `net.Learnables` and `net.State`.

Columns are attributes holding lists (`T.Layer`, `T.Parameter`, `T.Value`); rows iterate as
named tuples; `T["fc1", "Weights"]` looks a value up. A Table is a container for dlfeval,
dlgradient and the update functions: its Value column holds the leaves.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterator

import numpy as np

from . import tree
from .errors import ShapeError

COLUMNS = ("Layer", "Parameter", "Value")
Row = namedtuple("Row", COLUMNS)


class Table:
    def __init__(self, Layer=(), Parameter=(), Value=()):  # noqa: N803 (MATLAB column names)
        if not len(Layer) == len(Parameter) == len(Value):
            raise ShapeError(f"Table: columns Layer, Parameter and Value must have the same "
                             f"length, got {len(Layer)}, {len(Parameter)} and {len(Value)}")
        self.Layer = list(Layer)
        self.Parameter = list(Parameter)
        self.Value = list(Value)

    def __len__(self) -> int:
        return len(self.Layer)

    def __iter__(self) -> Iterator[Row]:
        return (Row(*r) for r in zip(self.Layer, self.Parameter, self.Value))

    def _index(self, layer: str, parameter: str) -> int:
        for i, (la, pa) in enumerate(zip(self.Layer, self.Parameter)):
            if la == layer and pa == parameter:
                return i
        raise KeyError(f"no row with Layer={layer!r} and Parameter={parameter!r}")

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2:
            return self.Value[self._index(*key)]
        if isinstance(key, int):
            return Row(self.Layer[key], self.Parameter[key], self.Value[key])
        raise KeyError(f"Table keys are (layer, parameter) pairs or row numbers, got {key!r}")

    def __setitem__(self, key, value):
        self.Value[self._index(*key)] = value

    def with_values(self, values) -> Table:
        return Table(self.Layer, self.Parameter, list(values))

    def __repr__(self) -> str:
        rows = [(la, pa, _describe(v)) for la, pa, v in self]
        head = COLUMNS
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [f"{len(self)}x3 Table", fmt.format(*head), fmt.format(*("-" * w for w in widths))]
        lines += [fmt.format(*r) for r in rows]
        return "\n".join(lines)


def _describe(v) -> str:
    shape = getattr(v, "shape", None)
    if shape is None:
        return repr(v)
    fmt = getattr(v, "fmt", "")
    dtype = getattr(v, "dtype", "")
    kind = "dlarray" if hasattr(v, "fmt") else type(v).__name__
    size = "x".join(str(s) for s in shape) or "1x1"
    return f"{size} {np.dtype(dtype).name if dtype != '' else ''} {kind}" + (
        f" {fmt}" if fmt else "")


tree.register_node(
    Table,
    lambda t: ([(f"{la}/{pa}", v) for la, pa, v in t], (tuple(t.Layer), tuple(t.Parameter))),
    lambda aux, children: Table(aux[0], aux[1], [c for _, c in children]),
)
