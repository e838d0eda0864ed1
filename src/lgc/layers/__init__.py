"""The MATLAB layers (API.md §5): one class per layer, its factory function under it, one
file per family. `base.Layer` is the contract with `lgc.network`."""

from .activation import (
    DropoutLayer,
    LeakyReLULayer,
    ReLULayer,
    SigmoidLayer,
    SoftmaxLayer,
    TanhLayer,
    dropoutLayer,
    leakyReluLayer,
    reluLayer,
    sigmoidLayer,
    softmaxLayer,
    tanhLayer,
)
from .base import Layer
from .combine import (
    AdditionLayer,
    ConcatenationLayer,
    DepthConcatenationLayer,
    FlattenLayer,
    additionLayer,
    concatenationLayer,
    depthConcatenationLayer,
    flattenLayer,
)
from .conv import (
    Convolution2DLayer,
    TransposedConvolution2DLayer,
    convolution2dLayer,
    transposedConv2dLayer,
)
from .fc import FullyConnectedLayer, fullyConnectedLayer
from .function import FunctionLayer, functionLayer
from .input import (
    FeatureInputLayer,
    ImageInputLayer,
    SequenceInputLayer,
    featureInputLayer,
    imageInputLayer,
    sequenceInputLayer,
)
from .norm import (
    BatchNormalizationLayer,
    CrossChannelNormalizationLayer,
    GroupNormalizationLayer,
    LayerNormalizationLayer,
    batchNormalizationLayer,
    crossChannelNormalizationLayer,
    groupNormalizationLayer,
    layerNormalizationLayer,
)
from .pool import (
    AveragePooling2DLayer,
    GlobalAveragePooling2DLayer,
    GlobalMaxPooling2DLayer,
    MaxPooling2DLayer,
    MaxUnpooling2DLayer,
    averagePooling2dLayer,
    globalAveragePooling2dLayer,
    globalMaxPooling2dLayer,
    maxPooling2dLayer,
    maxUnpooling2dLayer,
)
from .recurrent import EmbeddingLayer, GRULayer, LSTMLayer, embeddingLayer, gruLayer, lstmLayer

__all__ = [
    "Layer",
    # the MATLAB factories, in API.md §5 order
    "imageInputLayer", "featureInputLayer", "sequenceInputLayer", "convolution2dLayer",
    "transposedConv2dLayer", "fullyConnectedLayer", "batchNormalizationLayer",
    "groupNormalizationLayer", "layerNormalizationLayer", "crossChannelNormalizationLayer",
    "reluLayer", "leakyReluLayer", "sigmoidLayer", "tanhLayer", "softmaxLayer", "dropoutLayer",
    "maxPooling2dLayer", "maxUnpooling2dLayer", "averagePooling2dLayer",
    "globalAveragePooling2dLayer", "globalMaxPooling2dLayer", "additionLayer",
    "concatenationLayer", "depthConcatenationLayer", "flattenLayer", "lstmLayer", "gruLayer",
    "embeddingLayer", "functionLayer",
    # the layer classes
    "AdditionLayer", "AveragePooling2DLayer", "BatchNormalizationLayer", "ConcatenationLayer",
    "Convolution2DLayer", "CrossChannelNormalizationLayer", "DepthConcatenationLayer",
    "DropoutLayer", "EmbeddingLayer", "FeatureInputLayer", "FlattenLayer",
    "FullyConnectedLayer", "FunctionLayer", "GRULayer", "GlobalAveragePooling2DLayer",
    "GlobalMaxPooling2DLayer", "GroupNormalizationLayer", "ImageInputLayer", "LSTMLayer",
    "LayerNormalizationLayer", "LeakyReLULayer", "MaxPooling2DLayer", "MaxUnpooling2DLayer",
    "ReLULayer", "SequenceInputLayer", "SigmoidLayer", "SoftmaxLayer", "TanhLayer",
    "TransposedConvolution2DLayer",
]

FACTORIES = [name for name in __all__ if name[0].islower()]
