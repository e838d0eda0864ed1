"""Sequence classification in lgc, the MATLAB way: recurrent layers with OutputMode "last"
(as in MATLAB's "Sequence Classification Using Deep Learning") and a model function that embeds
token sequences (as in MATLAB's text examples that call embed and lstm directly).

Three classifiers of digits read as sequences, each trained with dlfeval + modelLoss +
adamupdate (default hyperparameters: lr 1e-3, 0.9, 0.999), crossentropy loss, miniBatchSize 64:

    lstm:  sequenceInputLayer(8), lstmLayer(64, OutputMode="last"),
           fullyConnectedLayer(10), softmaxLayer
    gru:   sequenceInputLayer(8), gruLayer(64, OutputMode="last"),
           fullyConnectedLayer(10), softmaxLayer
    embed: a model function on token sequences:
           Y = embed(X, parameters.emb.Weights)                        (32 x N x 8, "CBT")
           [~, H] = lstm(Y, H0, C0, W, R, b)   % H = the last hidden state, 64 x N
           Y = softmax(fullyconnect(H, fc.Weights, fc.Bias))
           with MATLAB's lstmLayer initializers written by hand: Glorot input weights,
           orthogonal recurrent weights, unit-forget-gate bias, Glorot fully connected
           weights, zero bias, and narrow-normal N(0, 0.01^2) embedding weights.

Data (no MATLAB data set here; this is what the digits give): scikit-learn's 8x8 digits read
row by row, top to bottom, so each digit is a sequence of 8 time steps of 8 features ("CBT")
for the two networks. For the model function, each row of 8 pixels is thresholded at half
intensity and the 8-bit pattern is one word: a digit is a sentence of 8 tokens over a
vocabulary of the 61 row patterns that occur (0-based indices, as lgc's embed takes them).
90% of the digits train, 10% are held out. 40 epochs.

Result (full mode, this 2-core machine): test accuracy >= 90% for each classifier (lstm 95.6%,
gru 96.7%, embed 91.7% on 180 held-out digits), 1,000 iterations each, in about 3.5 minutes
of wall time on the shared machine (under 1 minute of CPU time).

    python examples/sequence_classification.py            # full: 40 epochs each
    python examples/sequence_classification.py --quick    # a few iterations on a subset
"""

# ruff: noqa: N802, N803, N806, N816  (MATLAB's variable names)
from __future__ import annotations

import argparse
import time

import numpy as np
from _data import digit_rows, digit_tokens, minibatches, onehot, split

from lgc import (
    adamupdate,
    crossentropy,
    dlarray,
    dlfeval,
    dlgradient,
    dlnetwork,
    embed,
    forward,
    fullyconnect,
    fullyConnectedLayer,
    gruLayer,
    lstm,
    lstmLayer,
    onehotdecode,
    predict,
    rng,
    sequenceInputLayer,
    softmax,
    softmaxLayer,
)
from lgc import init as lgcinit

numHiddenUnits, embeddingDimension, numClasses = 64, 32, 10


def recurrent_network(kind: str, numFeatures: int = 8):
    layer = lstmLayer if kind == "lstm" else gruLayer
    return dlnetwork([
        sequenceInputLayer(numFeatures),
        layer(numHiddenUnits, OutputMode="last"),
        fullyConnectedLayer(numClasses),
        softmaxLayer(),
    ])


def networkLoss(net, X, T):
    Y, state = forward(net, X)
    loss = crossentropy(Y, T)
    return loss, dlgradient(loss, net.Learnables), state


def initializeEmbeddingModel(numWords: int, seed: int = 0):
    r = np.random.default_rng(seed)
    H = numHiddenUnits
    p = {
        "emb": {"Weights": lgcinit.narrow_normal((embeddingDimension, numWords), r)},
        "lstm": {"InputWeights": lgcinit.glorot((4 * H, embeddingDimension), rng=r),
                 "RecurrentWeights": lgcinit.orthogonal((4 * H, H), r),
                 "Bias": lgcinit.unit_forget_gate((4 * H, 1), r)},
        "fc": {"Weights": lgcinit.glorot((numClasses, H), rng=r),
               "Bias": lgcinit.zeros((numClasses, 1))},
    }
    return {k: {n: dlarray(v) for n, v in g.items()} for k, g in p.items()}


def embeddingModel(parameters, X):
    H0 = C0 = np.zeros((numHiddenUnits, 1), np.float32)
    Y = embed(X, parameters["emb"]["Weights"])
    p = parameters["lstm"]
    _, H, _ = lstm(Y, H0, C0, p["InputWeights"], p["RecurrentWeights"], p["Bias"])
    return softmax(fullyconnect(H, parameters["fc"]["Weights"], parameters["fc"]["Bias"]))


def embeddingLoss(parameters, X, T):
    loss = crossentropy(embeddingModel(parameters, X), T)
    return loss, dlgradient(loss, parameters)


def train(kind, x, y, train_idx, test_idx, numEpochs, miniBatchSize, numWords=None):
    """Train one classifier; returns (test accuracy, losses, seconds)."""
    r = np.random.default_rng(0)
    rng(0)
    if kind == "embed":
        params = initializeEmbeddingModel(numWords)
    else:
        params = recurrent_network(kind, x.shape[0])
    avg = avgSq = None
    iteration, losses = 0, []
    t0 = time.perf_counter()
    for epoch in range(1, numEpochs + 1):
        for idx in minibatches(len(train_idx), miniBatchSize, r):
            iteration += 1
            b = train_idx[idx]
            X = dlarray(x[:, b, :], "CBT")
            T = dlarray(onehot(y[b]), "CB")
            if kind == "embed":
                loss, gradients = dlfeval(embeddingLoss, params, X, T)
            else:
                # the state holds only the recurrent layer's final hidden (and cell) state;
                # each mini-batch is a set of independent sequences that must start from the
                # initial zero state, so it is not written back (no net.State = state)
                loss, gradients, _ = dlfeval(networkLoss, params, X, T)
            params, avg, avgSq = adamupdate(params, gradients, avg, avgSq, iteration)
            losses.append(float(loss))
        if epoch % max(1, numEpochs // 4) == 0:
            print(f"  {kind:5s} epoch {epoch:3d}  loss {np.mean(losses[-10:]):.4f}  "
                  f"({time.perf_counter() - t0:.0f} s)")
    X = dlarray(x[:, test_idx, :], "CBT")
    scores = (dlfeval(embeddingModel, params, X) if kind == "embed" else predict(params, X))
    accuracy = float(np.mean(onehotdecode(scores, np.arange(numClasses), 0) == y[test_idx]))
    return accuracy, losses, time.perf_counter() - t0


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations on a subset")
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args(argv)

    numEpochs, miniBatchSize = (2, 32) if args.quick else (args.epochs, 64)
    rows, y = digit_rows()
    tokens, _, numWords = digit_tokens(levels=2)
    train_idx, test_idx = split(len(y), 0.1)
    if args.quick:
        train_idx, test_idx = train_idx[:96], test_idx[:64]
    results = {}
    for kind, x in (("lstm", rows), ("gru", rows), ("embed", tokens)):
        accuracy, losses, seconds = train(kind, x, y, train_idx, test_idx, numEpochs,
                                          miniBatchSize, numWords)
        if args.quick:
            first, last = np.mean(losses[:2]), np.mean(losses[-2:])
            assert last < first, f"{kind}: loss did not go down: {first:.4f} -> {last:.4f}"
        print(f"{kind}: test accuracy {100 * accuracy:.2f}% on {len(test_idx)} digits "
              f"({len(losses)} iterations, {seconds:.0f} s)")
        results[kind] = {"accuracy": accuracy, "losses": losses, "seconds": seconds}
    return results


if __name__ == "__main__":
    main()
