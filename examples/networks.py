"""Networks and a model function to inspect with the `lgc` command and `lgc.plot`.

    lgc inspect examples/networks.py:residual       # analyzeNetwork's table
    lgc plot examples/networks.py:residual -o residual.svg
    lgc plot examples/networks.py:broken -o broken.svg   # the bad layer drawn in red
    lgc ir examples/networks.py:model_loss --source # traced, gradient and fused IR, kernels

`lgc inspect`/`lgc plot` take a module-level LayerGraph, dlnetwork or list of layers, or a
function with no arguments returning one. `lgc ir` and `lgc plot --stage ir|grad|fused` on a
function need its example arguments: a function `model_loss_inputs()` or `example_inputs()`
in the same file returning them as a tuple.

MATLAB (documentation, "Create Simple Deep Learning Network for Classification", shortened):

    layers = [imageInputLayer([8 8 1])
              convolution2dLayer(3,8,'Padding','same','Name','conv_1')
              batchNormalizationLayer('Name','bn_1')
              reluLayer('Name','relu_1')
              ...
              additionLayer(2,'Name','add')
              ...];
    lgraph = connectLayers(lgraph,'relu_1','add/in2');
    analyzeNetwork(lgraph)
"""

from __future__ import annotations

import numpy as np

from lgc import (
    additionLayer,
    batchNormalizationLayer,
    convolution2dLayer,
    crossentropy,
    dlarray,
    dlgradient,
    fullyconnect,
    fullyConnectedLayer,
    imageInputLayer,
    layerGraph,
    relu,
    reluLayer,
    softmax,
    softmaxLayer,
)


def residual():
    """A small residual CNN: conv-bn-relu, a two-conv branch added back to its input."""
    layers = [
        imageInputLayer([8, 8, 1], Normalization="none", Name="input"),
        convolution2dLayer(3, 8, Padding="same", Name="conv_1"),
        batchNormalizationLayer(Name="bn_1"),
        reluLayer(Name="relu_1"),
        convolution2dLayer(3, 8, Padding="same", Name="conv_2"),
        batchNormalizationLayer(Name="bn_2"),
        reluLayer(Name="relu_2"),
        convolution2dLayer(3, 8, Padding="same", Name="conv_3"),
        additionLayer(2, Name="add"),
        reluLayer(Name="relu_3"),
        fullyConnectedLayer(10, Name="fc"),
        softmaxLayer(Name="softmax"),
    ]
    lg = layerGraph(layers)
    return lg.connectLayers("relu_1", "add/in2")


# A module-level network: the first one `lgc inspect examples/networks.py` finds.
chain = [
    imageInputLayer([8, 8, 1], Normalization="none", Name="input"),
    convolution2dLayer(3, 4, Name="conv"),
    reluLayer(Name="relu"),
    fullyConnectedLayer(10, Name="fc"),
    softmaxLayer(Name="softmax"),
]


def broken():
    """An invalid graph: the addition's second input is never connected."""
    return layerGraph([
        imageInputLayer([8, 8, 1], Normalization="none", Name="input"),
        convolution2dLayer(3, 4, Padding="same", Name="conv"),
        additionLayer(2, Name="add"),
        reluLayer(Name="relu"),
    ])


def model(p, X):  # noqa: N803
    """A 4-8-3 MLP written as a model function."""
    return softmax(fullyconnect(relu(fullyconnect(X, p["W1"], p["b1"])), p["W2"], p["b2"]))


def model_loss(p, X, T):  # noqa: N803
    """Cross-entropy of the MLP and its gradient with respect to every parameter."""
    loss = crossentropy(model(p, X), T)
    return loss, dlgradient(loss, p)


def example_inputs():
    """Arguments for `model_loss` (and `model`, which takes the first two)."""
    rng = np.random.default_rng(0)
    p = {"W1": dlarray(rng.uniform(-0.5, 0.5, (8, 4)).astype(np.float32)),
         "b1": dlarray(np.zeros((8, 1), np.float32)),
         "W2": dlarray(rng.uniform(-0.5, 0.5, (3, 8)).astype(np.float32)),
         "b2": dlarray(np.zeros((3, 1), np.float32))}
    X = dlarray(rng.standard_normal((4, 16)).astype(np.float32), "CB")  # noqa: N806
    T = dlarray(np.eye(3, dtype=np.float32)[:, rng.integers(0, 3, 16)], "CB")  # noqa: N806
    return p, X, T


def model_inputs():
    """Arguments for `model`: `lgc ir examples/networks.py:model` finds this first."""
    p, X, _ = example_inputs()  # noqa: N806
    return p, X


if __name__ == "__main__":
    from lgc import analyzeNetwork

    print(analyzeNetwork(residual()))
