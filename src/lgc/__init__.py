"""lgc — a layer-graph compiler for training neural networks the MATLAB Deep Learning Toolbox
way: dlarray, dlfeval, dlgradient and the MATLAB functions, traced to an op IR, differentiated
by source transformation and compiled."""

from .backend import get_backend, set_backend
from .backend.numba.compile import cache_info, clear_cache
from .compiler import CompiledFunction, Lowered, compile
from .convolution import avgpool, dlconv, dltranspconv, maxpool, maxunpool
from .dlarray import (
    DLArray,
    abs,
    cos,
    dims,
    dlarray,
    exp,
    extractdata,
    finddim,
    log,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    reshape,
    sin,
    sqrt,
    stripdims,
    sum,
    where,
)
from .errors import (
    CompileError,
    DTypeError,
    FormatError,
    GraphError,
    LgcError,
    ShapeError,
    TraceError,
)
from .functional import (
    crossentropy,
    dropout,
    fullyconnect,
    l2loss,
    leakyrelu,
    mse,
    onehotdecode,
    onehotencode,
    relu,
    sigmoid,
    softmax,
    tanh,
)
from .ir.trace import Program
from .normalization import batchnorm, crosschannelnorm, groupnorm, layernorm
from .ops.creation import rng
from .recurrent import embed, gru, lstm
from .table import Table
from .transforms import dlfeval, dlgradient, grad, trace, value_and_grad
from .updates import adamupdate, dlupdate, rmspropupdate, sgdmupdate

__version__ = "0.1.0"

__all__ = [
    "adamupdate", "dlupdate", "rmspropupdate", "sgdmupdate",
    "avgpool", "batchnorm", "crosschannelnorm", "dlconv", "dltranspconv", "embed",
    "groupnorm", "gru", "layernorm", "lstm", "maxpool", "maxunpool",
    "CompiledFunction", "Lowered", "cache_info", "clear_cache", "compile",
    "CompileError", "DLArray", "DTypeError", "FormatError", "GraphError", "LgcError",
    "Program", "ShapeError", "Table", "TraceError", "abs", "cos", "crossentropy", "dims",
    "dlarray", "dlfeval", "dlgradient", "dropout", "exp", "extractdata", "finddim",
    "fullyconnect", "get_backend", "grad", "l2loss", "leakyrelu", "log", "matmul", "max",
    "maximum", "mean", "min", "minimum", "mse", "onehotdecode", "onehotencode", "relu",
    "reshape", "rng", "set_backend", "sigmoid", "sin", "softmax", "sqrt", "stripdims", "sum",
    "tanh", "trace", "value_and_grad", "where",
]
