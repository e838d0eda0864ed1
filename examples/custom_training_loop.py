"""MATLAB's "Train Network Using Custom Training Loop", ported to lgc.

The MATLAB example trains a small CNN on DigitsData with dlfeval + modelLoss + sgdmupdate and a
time-based decaying learning rate, then reports the test accuracy with onehotdecode. Same here:

    imageInputLayer([16 16 1], Normalization="none")
    convolution2dLayer(5, 20, Padding="same"), batchNormalizationLayer, reluLayer
    convolution2dLayer(3, 20, Padding="same"), batchNormalizationLayer, reluLayer
    convolution2dLayer(3, 20, Padding="same"), batchNormalizationLayer, reluLayer
    fullyConnectedLayer(10), softmaxLayer

numEpochs 10, miniBatchSize 128, initialLearnRate 0.01, decay 0.01, momentum 0.9; every
iteration `learnRate = initialLearnRate / (1 + decay * iteration)` (iteration starts at 1),
`[loss, gradients, state] = dlfeval(modelLoss, net, X, T)`, `net.State = state`,
`[net, velocity] = sgdmupdate(net, gradients, velocity, learnRate, momentum)`.

Changes the data forced: DigitsData (10,000 28x28 images) cannot be downloaded, so this uses
scikit-learn's 1,797 8x8 digits upsampled to 16x16 (scipy.ndimage.zoom), split 90/10 as
splitEachLabel(imds, 0.9, "randomize") does. The random translation augmentation is
[-2, 2] px at 16x16 (MATLAB: [-5, 5] px at 28x28; the small digits fill their frame). The last
partial mini-batch of each epoch is discarded. Everything else is as in MATLAB.

Result (full mode, this 2-core machine): test accuracy >= 95% (98.3%) in about 20 s.

    python examples/custom_training_loop.py            # full: 10 epochs
    python examples/custom_training_loop.py --quick    # a few iterations on a subset
"""

# ruff: noqa: N802, N803, N806  (MATLAB's variable names: X, T, learnRate, modelLoss)
from __future__ import annotations

import argparse
import time

import numpy as np
from _data import digits, minibatches, onehot, split, translate

from lgc import (
    batchNormalizationLayer,
    convolution2dLayer,
    crossentropy,
    dlarray,
    dlfeval,
    dlgradient,
    dlnetwork,
    forward,
    fullyConnectedLayer,
    imageInputLayer,
    onehotdecode,
    predict,
    reluLayer,
    rng,
    sgdmupdate,
    softmaxLayer,
)


def modelLoss(net, X, T):
    Y, state = forward(net, X)
    loss = crossentropy(Y, T)
    gradients = dlgradient(loss, net.Learnables)
    return loss, gradients, state


def build_network(size: int, num_classes: int = 10):
    layers = [
        imageInputLayer([size, size, 1], Normalization="none"),
        convolution2dLayer(5, 20, Padding="same"), batchNormalizationLayer(), reluLayer(),
        convolution2dLayer(3, 20, Padding="same"), batchNormalizationLayer(), reluLayer(),
        convolution2dLayer(3, 20, Padding="same"), batchNormalizationLayer(), reluLayer(),
        fullyConnectedLayer(num_classes),
        softmaxLayer(),
    ]
    return dlnetwork(layers)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations on a subset")
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args(argv)

    size, classes = 16, np.arange(10)
    numEpochs, miniBatchSize = (1, 64) if args.quick else (args.epochs, 128)
    initialLearnRate, decay, momentum = 0.01, 0.01, 0.9
    x, y = digits(size)
    train, test = split(len(y), 0.1)
    if args.quick:
        train, test = train[:320], test[:64]
    rng(0)
    data_rng = np.random.default_rng(0)
    net = build_network(size)

    velocity, iteration, losses = None, 0, []
    t0 = time.perf_counter()
    for epoch in range(1, numEpochs + 1):
        for idx in minibatches(len(train), miniBatchSize, data_rng):
            iteration += 1
            b = train[idx]
            X = dlarray(translate(x[..., b], 2, data_rng), "SSCB")
            T = dlarray(onehot(y[b]), "CB")
            loss, gradients, state = dlfeval(modelLoss, net, X, T)
            net.State = state
            learnRate = initialLearnRate / (1 + decay * iteration)
            net, velocity = sgdmupdate(net, gradients, velocity, learnRate, momentum)
            losses.append(float(loss))
        print(f"epoch {epoch:2d}  iteration {iteration:4d}  loss {losses[-1]:.4f}  "
              f"learnRate {learnRate:.5f}  ({time.perf_counter() - t0:.0f} s)")

    # test: predict on mini-batches, then onehotdecode(scores, classes, 1)
    predicted = []
    for k in range(0, len(test), miniBatchSize):
        scores = predict(net, dlarray(x[..., test[k:k + miniBatchSize]], "SSCB"))
        predicted.append(onehotdecode(scores, classes, 0))
    accuracy = float(np.mean(np.concatenate(predicted) == y[test]))
    seconds = time.perf_counter() - t0
    if args.quick:
        first, last = np.mean(losses[:2]), np.mean(losses[-2:])
        assert last < first, f"loss did not go down: {first:.4f} -> {last:.4f}"
    print(f"test accuracy {100 * accuracy:.2f}% on {len(test)} images "
          f"({iteration} iterations, {seconds:.0f} s)")
    return {"accuracy": accuracy, "losses": losses, "iterations": iteration, "seconds": seconds}


if __name__ == "__main__":
    main()
