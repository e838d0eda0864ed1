"""The op registry. Importing this package registers every op family."""

from . import creation, elementwise, linalg, nn, norm, recurrent, reduce, shape  # noqa: F401
from .base import REGISTRY, Elementwise, OpDef, Sample, get_op, register

__all__ = ["REGISTRY", "Elementwise", "OpDef", "Sample", "get_op", "register"]
