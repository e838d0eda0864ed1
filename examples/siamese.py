"""MATLAB's "Train a Siamese Network to Compare Images", ported to lgc.

One twin subnetwork (a single dlnetwork, so both images go through the same weights) maps an
image to a feature vector; the head compares two of them:

    F1 = sigmoid(forward(net, X1)); F2 = sigmoid(forward(net, X2))
    Y  = sigmoid(fullyconnect(abs(F1 - F2), fcParams.FcWeights, fcParams.FcBias))

with fcWeights = 0.01*randn(1, numFeatures), fcBias = 0.01*randn(1, 1) in a dict. The loss is
the binary cross-entropy with MATLAB's manual clamping of Y to [eps, 1 - eps] (single
precision eps), loss = sum(-T.*log(Y) - (1-T).*log(1-Y)) / numel(T);
[gradientsSubnet, gradientsParams] = dlgradient(loss, net.Learnables, fcParams), and two
separate Adam states (one for the subnetwork, one for fcParams) share the iteration counter,
gradDecay 0.9, gradDecaySq 0.99, miniBatchSize 180. Each batch is half similar pairs (label 1:
two distinct images of one class) and half dissimilar ones (label 0: images of two distinct
classes), each pair drawn similar with probability 0.5 as getSiameseBatch does. Evaluation: 5
batches of 150 test pairs, accuracy = mean(round(Y) == label).

Changes the data forced: Omniglot (105x105 drawings of 964 characters) is not available, so
the pairs are made of scikit-learn's digits upsampled to 16x16 (scipy.ndimage.zoom): training
pairs from the 90% training digits, test pairs from the 10% held-out digits (unseen images; the
classes are the same ten digits, whereas Omniglot's test alphabets are unseen). For 16x16 the
twin keeps MATLAB's layer sequence and filter counts (64, 128, 128, 256) with smaller filters,
and 1024 output features instead of 4096. Its layers use the default initializers (Glorot
weights, zero biases) instead of "narrow-normal" N(0, 0.01^2): with 16x16 inputs and 1x1 to 3x3
filters the fan-ins are small (9 to 512), and weights that narrow make the features vanish
(every pair scores 0.5 and the loss stays at log 2 for hundreds of iterations):

    imageInputLayer([16 16 1], Normalization="none")
    convolution2dLayer(3, 64), reluLayer, maxPooling2dLayer(2, Stride=2)    16 -> 14 -> 7
    convolution2dLayer(2, 128), reluLayer, maxPooling2dLayer(2, Stride=2)   7 -> 6 -> 3
    convolution2dLayer(2, 128), reluLayer, maxPooling2dLayer(2, Stride=2)   3 -> 2 -> 1
    convolution2dLayer(1, 256), reluLayer
    fullyConnectedLayer(1024)

Omniglot's 19,280 training drawings give far more pairs than 1,617 digits, which the twin
overfits (pair accuracy 89.9% without augmentation), so training images are translated randomly
by up to 1 px (as example 1's augmentation). learningRate is raised from 6e-5 to 6e-4 and
numIterations cut from 10,000 to 1,000 so a full run takes a few minutes on two cores.

Result (full mode, this 2-core machine): pair accuracy >= 90% (93.1% on 750 held-out digit
pairs) after 1,000 iterations, in 1.5 minutes.

    python examples/siamese.py            # full: 1000 iterations
    python examples/siamese.py --quick    # a few iterations
"""

# ruff: noqa: N802, N803, N806  (MATLAB's variable names)
from __future__ import annotations

import argparse
import time

import numpy as np
from _data import digits, split, translate

from lgc import (
    abs,
    adamupdate,
    convolution2dLayer,
    dlarray,
    dlfeval,
    dlgradient,
    dlnetwork,
    extractdata,
    forward,
    fullyconnect,
    fullyConnectedLayer,
    imageInputLayer,
    log,
    maximum,
    maxPooling2dLayer,
    minimum,
    predict,
    reluLayer,
    rng,
    sigmoid,
)
from lgc import sum as dlsum

EPS = float(np.finfo(np.float32).eps)  # eps("single")


def subnetwork(numFeatures=1024):
    nn = {}  # MATLAB: WeightsInitializer="narrow-normal", BiasInitializer="narrow-normal"
    return dlnetwork([
        imageInputLayer([16, 16, 1], Normalization="none"),
        convolution2dLayer(3, 64, **nn), reluLayer(), maxPooling2dLayer(2, Stride=2),
        convolution2dLayer(2, 128, **nn), reluLayer(), maxPooling2dLayer(2, Stride=2),
        convolution2dLayer(2, 128, **nn), reluLayer(), maxPooling2dLayer(2, Stride=2),
        convolution2dLayer(1, 256, **nn), reluLayer(),
        fullyConnectedLayer(numFeatures, **nn),
    ])


def forwardSiamese(net, fcParams, X1, X2):
    F1 = sigmoid(forward(net, X1)[0])
    F2 = sigmoid(forward(net, X2)[0])
    Y = abs(F1 - F2)
    return sigmoid(fullyconnect(Y, fcParams["FcWeights"], fcParams["FcBias"]))


def predictSiamese(net, fcParams, X1, X2):
    F1 = sigmoid(predict(net, X1))
    F2 = sigmoid(predict(net, X2))
    return sigmoid(fullyconnect(abs(F1 - F2), fcParams["FcWeights"], fcParams["FcBias"]))


def binarycrossentropy(Y, T):
    # Y(Y < eps) = eps; Y(Y > 1 - eps) = 1 - eps
    Y = minimum(maximum(Y, EPS), 1 - EPS)
    return dlsum(-T * log(Y) - (1 - T) * log(1 - Y)) / T.size


def modelLoss(net, fcParams, X1, X2, pairLabels):
    Y = forwardSiamese(net, fcParams, X1, X2)
    loss = binarycrossentropy(Y, pairLabels)
    gradientsSubnet, gradientsParams = dlgradient(loss, net.Learnables, fcParams)
    return loss, gradientsSubnet, gradientsParams


def getSiameseBatch(x, labels, miniBatchSize, r, shift=0):
    """(X1, X2, pairLabels): each pair similar (label 1) or dissimilar (0) with probability
    0.5, as MATLAB's getSiameseBatch; `shift` > 0 translates each image randomly by up to
    that many pixels (training only)."""
    by_class = [np.flatnonzero(labels == c) for c in range(10)]
    i1, i2 = np.empty(miniBatchSize, int), np.empty(miniBatchSize, int)
    pairLabels = np.zeros((1, miniBatchSize), np.float32)
    for k in range(miniBatchSize):
        if r.random() > 0.5:  # similar: a random class, two distinct images of it
            members = by_class[r.integers(10)]
            i1[k], i2[k] = r.choice(members, 2, replace=False)
            pairLabels[0, k] = 1
        else:  # dissimilar: two distinct classes, one random image of each
            c1, c2 = r.choice(10, 2, replace=False)
            i1[k], i2[k] = r.choice(by_class[c1]), r.choice(by_class[c2])
    return (dlarray(translate(x[..., i1], shift, r), "SSCB"),
            dlarray(translate(x[..., i2], shift, r), "SSCB"), dlarray(pairLabels, "CB"))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations")
    ap.add_argument("--iterations", type=int, default=1000)
    args = ap.parse_args(argv)

    numIterations, miniBatchSize = (8, 64) if args.quick else (args.iterations, 180)
    learningRate, gradDecay, gradDecaySq = 6e-4, 0.9, 0.99
    x, y = digits(16)
    train, test = split(len(y), 0.1)
    rng(0)
    r = np.random.default_rng(0)
    net = subnetwork()
    numFeatures = net.Learnables.Value[-2].shape[0]
    fcParams = {"FcWeights": dlarray(0.01 * r.standard_normal((1, numFeatures))
                                     .astype(np.float32)),
                "FcBias": dlarray(0.01 * r.standard_normal((1, 1)).astype(np.float32))}

    avgSubnet = avgSqSubnet = avgParams = avgSqParams = None
    losses = []
    t0 = time.perf_counter()
    for iteration in range(1, numIterations + 1):
        X1, X2, pairLabels = getSiameseBatch(x[..., train], y[train], miniBatchSize, r, 1)
        loss, gradientsSubnet, gradientsParams = dlfeval(modelLoss, net, fcParams, X1, X2,
                                                         pairLabels)
        net, avgSubnet, avgSqSubnet = adamupdate(net, gradientsSubnet, avgSubnet, avgSqSubnet,
                                                 iteration, learningRate, gradDecay,
                                                 gradDecaySq)
        fcParams, avgParams, avgSqParams = adamupdate(fcParams, gradientsParams, avgParams,
                                                      avgSqParams, iteration, learningRate,
                                                      gradDecay, gradDecaySq)
        losses.append(float(loss))
        if iteration % max(1, numIterations // 10) == 0:
            print(f"iteration {iteration:5d}  loss {np.mean(losses[-20:]):.4f}  "
                  f"({time.perf_counter() - t0:.0f} s)")

    # 5 batches of 150 held-out pairs
    correct = []
    for _ in range(1 if args.quick else 5):
        X1, X2, pairLabels = getSiameseBatch(x[..., test], y[test], 150, r)
        Y = extractdata(dlfeval(predictSiamese, net, fcParams, X1, X2))
        correct.append(np.round(Y) == extractdata(pairLabels))
    accuracy = float(np.mean(np.concatenate(correct, axis=1)))
    seconds = time.perf_counter() - t0
    if args.quick:
        first, last = np.mean(losses[:2]), np.mean(losses[-2:])
        assert last < first, f"loss did not go down: {first:.4f} -> {last:.4f}"
    print(f"pair accuracy {100 * accuracy:.2f}% on {150 * len(correct)} held-out pairs "
          f"({numIterations} iterations, {seconds:.0f} s)")
    return {"accuracy": accuracy, "losses": losses, "iterations": numIterations,
            "seconds": seconds}


if __name__ == "__main__":
    main()
