"""Tensor types of the IR: dtype, shape and dlarray format.

Dtypes are spelled by short names (`f32`, `f64`, `i64`, `i32`, `bool`) in the IR and its text;
`np_dtype` and `dtype_name` convert to and from NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DTypeError

_TO_NUMPY = {
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
    "i32": np.dtype(np.int32),
    "i64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
_FROM_NUMPY = {v: k for k, v in _TO_NUMPY.items()}
FLOAT_DTYPES = ("f32", "f64")


def np_dtype(name: str) -> np.dtype:
    return _TO_NUMPY[name]


def dtype_name(dt, what: str = "array") -> str:
    """The IR name of a NumPy dtype; other integer widths map to i64, anything else is an error."""
    dt = np.dtype(dt)
    if dt in _FROM_NUMPY:
        return _FROM_NUMPY[dt]
    if dt.kind in "iu":
        return "i64"
    raise DTypeError(f"{what}: unsupported dtype {dt}; use float32, float64, integers or bool")


def is_float(dtype: str) -> bool:
    return dtype in FLOAT_DTYPES


def result_dtype(*dtypes: str) -> str:
    """NumPy's promotion among IR dtypes (float64 wins, floats beat integers, ints beat bool)."""
    return dtype_name(np.result_type(*(np_dtype(d) for d in dtypes)))


@dataclass(frozen=True)
class TensorType:
    """dtype, shape and format label string (`""` when unformatted; else one letter per dim)."""

    dtype: str
    shape: tuple[int, ...]
    fmt: str = ""

    def __post_init__(self):
        assert self.dtype in _TO_NUMPY, self.dtype
        assert all(isinstance(d, int) and d >= 0 for d in self.shape), self.shape
        assert self.fmt == "" or len(self.fmt) == len(self.shape), (self.fmt, self.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def with_(self, dtype: str | None = None, shape=None, fmt: str | None = None) -> TensorType:
        return TensorType(
            self.dtype if dtype is None else dtype,
            self.shape if shape is None else tuple(int(s) for s in shape),
            self.fmt if fmt is None else fmt,
        )

    def __str__(self) -> str:
        dims = ",".join(str(s) for s in self.shape)
        return f"{self.dtype}[{dims}]" + (f"{{{self.fmt}}}" if self.fmt else "")


def type_of(x) -> TensorType:
    """The TensorType of a concrete NumPy array (unformatted)."""
    x = np.asarray(x)
    return TensorType(dtype_name(x.dtype), tuple(int(s) for s in x.shape))
