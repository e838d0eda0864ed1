"""The op registry. Importing this package registers every op family."""

from . import (  # noqa: F401
    conv,
    creation,
    elementwise,
    fused,
    linalg,
    lstm,
    nn,
    norm,
    pool,
    recurrent,
    reduce,
    shape,
    update,
)
from .base import REGISTRY, Elementwise, OpDef, Sample, get_op, register

__all__ = ["REGISTRY", "Elementwise", "OpDef", "Sample", "get_op", "register"]
