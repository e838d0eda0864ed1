"""lgc — a layer-graph compiler for training neural networks the MATLAB Deep Learning Toolbox
way: dlarray, dlfeval, dlgradient and the MATLAB functions, traced to an op IR, differentiated
by source transformation and compiled."""

from . import init
from .analysis import Issue, NetworkAnalysis, analyzeNetwork
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
from .dlnetwork import DLNetwork, dlnetwork, forward, initialize, predict
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
from .io import NetworkFileError, load, save
from .ir.trace import Program
from .layers import (
    additionLayer,
    averagePooling2dLayer,
    batchNormalizationLayer,
    concatenationLayer,
    convolution2dLayer,
    crossChannelNormalizationLayer,
    depthConcatenationLayer,
    dropoutLayer,
    embeddingLayer,
    featureInputLayer,
    flattenLayer,
    fullyConnectedLayer,
    functionLayer,
    globalAveragePooling2dLayer,
    globalMaxPooling2dLayer,
    groupNormalizationLayer,
    gruLayer,
    imageInputLayer,
    layerNormalizationLayer,
    leakyReluLayer,
    lstmLayer,
    maxPooling2dLayer,
    maxUnpooling2dLayer,
    reluLayer,
    sequenceInputLayer,
    sigmoidLayer,
    softmaxLayer,
    tanhLayer,
    transposedConv2dLayer,
)
from .network import (
    LayerGraph,
    addLayers,
    connectLayers,
    disconnectLayers,
    layerGraph,
    removeLayers,
    replaceLayer,
)
from .normalization import batchnorm, crosschannelnorm, groupnorm, layernorm
from .ops.creation import rng
from .recurrent import embed, gru, lstm
from .table import Table
from .train import (
    TrainingInfo,
    TrainingOptions,
    TrainStep,
    compile_train_step,
    trainingOptions,
    trainnet,
)
from .transforms import dlfeval, dlgradient, grad, trace, value_and_grad
from .updates import adamupdate, dlupdate, rmspropupdate, sgdmupdate
from .viz import plot

__version__ = "0.1.0"

__all__ = [
    "abs", "adamupdate", "additionLayer", "addLayers", "analyzeNetwork",
    "averagePooling2dLayer", "avgpool", "batchnorm", "batchNormalizationLayer", "cache_info",
    "clear_cache", "compile", "compile_train_step", "CompiledFunction", "CompileError",
    "concatenationLayer", "connectLayers", "convolution2dLayer", "cos", "crosschannelnorm",
    "crossChannelNormalizationLayer", "crossentropy", "depthConcatenationLayer", "dims",
    "disconnectLayers", "DLArray", "dlarray", "dlconv", "dlfeval", "dlgradient", "DLNetwork",
    "dlnetwork", "dltranspconv", "dlupdate", "dropout", "dropoutLayer", "DTypeError", "embed",
    "embeddingLayer", "exp", "extractdata", "featureInputLayer", "finddim", "flattenLayer",
    "FormatError", "forward", "fullyconnect", "fullyConnectedLayer", "functionLayer",
    "get_backend", "globalAveragePooling2dLayer", "globalMaxPooling2dLayer", "grad",
    "GraphError", "groupnorm", "groupNormalizationLayer", "gru", "gruLayer", "imageInputLayer",
    "init", "initialize", "Issue", "l2loss", "LayerGraph", "layerGraph", "layernorm",
    "layerNormalizationLayer", "leakyrelu", "leakyReluLayer", "LgcError", "load", "log",
    "Lowered", "lstm", "lstmLayer", "matmul", "max", "maximum", "maxpool", "maxPooling2dLayer",
    "maxunpool", "maxUnpooling2dLayer", "mean", "min", "minimum", "mse", "NetworkAnalysis",
    "NetworkFileError", "onehotdecode", "onehotencode", "plot", "predict", "Program", "relu",
    "reluLayer", "removeLayers", "replaceLayer", "reshape", "rmspropupdate", "rng", "save",
    "sequenceInputLayer", "set_backend", "sgdmupdate", "ShapeError", "sigmoid", "sigmoidLayer",
    "sin", "softmax", "softmaxLayer", "sqrt", "stripdims", "sum", "Table", "tanh", "tanhLayer",
    "trace", "TraceError", "TrainingInfo", "trainingOptions", "TrainingOptions", "trainnet",
    "TrainStep", "transposedConv2dLayer", "value_and_grad", "where",
]
