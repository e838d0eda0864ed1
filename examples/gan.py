"""MATLAB's "Train Generative Adversarial Network (GAN)", ported to lgc.

A generator of transposed convolutions turns 100 random numbers into an image; a discriminator
with dropout and leaky ReLU (scale 0.2) tells real images from generated ones. One dlfeval per
iteration evaluates, as separate forward passes, YReal = forward(netD, X),
[XGenerated, stateG] = forward(netG, Z), YGenerated = forward(netD, XGenerated); then

    scoreD = (mean(YReal) + mean(1 - YGenerated)) / 2,  scoreG = mean(YGenerated)
    flip-label trick: YReal(idx) = 1 - YReal(idx) for idx = rand(1, N) < flipProb (0.35),
        applied to the real predictions after the scores are computed
    lossD = -mean(log(YReal)) - mean(log(1 - YGenerated))
    lossG = -mean(log(YGenerated))
    gradientsG = dlgradient(lossG, netG.Learnables, RetainData=True)
    gradientsD = dlgradient(lossD, netD.Learnables)

and only netG.State is written back. The discriminator is updated first, then the generator,
both with adamupdate(..., iteration, 2e-4, 0.5, 0.999) and the same iteration counter.
It writes a 5x5 grid of images generated from 25 fixed latent vectors as a PNG.

Changes the data forced: the flowers set (64x64 RGB) is not available, so the networks generate
scikit-learn's digits upsampled to 16x16 (scipy.ndimage.zoom), one channel, rescaled to
[-1, 1]. For 16x16 the generator has two transposed convolutions instead of four and the
discriminator two strided convolutions instead of four, with a quarter of MATLAB's filters so a
full run fits a few minutes on two cores:

    generator:     featureInputLayer(100)
                   projectAndReshape to [4 4 128] (fullyConnectedLayer(2048) + a functionLayer
                       reshaping to "SSCB", as MATLAB's custom projectAndReshapeLayer)
                   transposedConv2dLayer(5, 64)                         -> 8x8x64
                   batchNormalizationLayer, reluLayer
                   transposedConv2dLayer(5, 1, Stride=2, Cropping="same") -> 16x16x1
                   tanhLayer
    discriminator: imageInputLayer([16 16 1], Normalization="none"), dropoutLayer(0.5)
                   convolution2dLayer(5, 32, Stride=2, Padding="same"), leakyReluLayer(0.2)
                   convolution2dLayer(5, 64, Stride=2, Padding="same"),
                       batchNormalizationLayer, leakyReluLayer(0.2)
                   convolution2dLayer(4, 1)  (4x4 -> 1x1), sigmoidLayer

The random X reflection augmentation is left out (a mirrored digit is not a digit). The flip
mask is drawn outside dlfeval and passed in (a traced function's Python random calls would run
only once, when it is traced). miniBatchSize 128 as in MATLAB; 30 epochs instead of 500.

Result (full mode, this 2-core machine): docs/img/gan_digits.png, blurry digit-like shapes after
420 iterations (several recognizable: 0, 2, 3, 5, 6); final scoreD 0.53, scoreG 0.30 (the
discriminator barely tells real from generated). 20 minutes of wall time on the shared, heavily
loaded machine (9.5 minutes of CPU time).

    python examples/gan.py [--out DIR]            # full: 30 epochs
    python examples/gan.py --quick [--out DIR]    # a few iterations
"""

# ruff: noqa: N802, N803, N806, N816  (MATLAB's variable names)
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _data import digits, minibatches

from lgc import (
    adamupdate,
    batchNormalizationLayer,
    convolution2dLayer,
    dlarray,
    dlfeval,
    dlgradient,
    dlnetwork,
    dropoutLayer,
    extractdata,
    featureInputLayer,
    forward,
    fullyConnectedLayer,
    functionLayer,
    imageInputLayer,
    leakyReluLayer,
    log,
    mean,
    predict,
    reluLayer,
    reshape,
    rng,
    sigmoidLayer,
    tanhLayer,
    transposedConv2dLayer,
)

numLatentInputs = 100


def projectAndReshapeLayers(projectionSize, Name="proj"):
    """MATLAB's custom projectAndReshapeLayer as two built-in layers: a fully connected
    projection (Glorot weights, zero bias), then a reshape of each observation to
    projectionSize, relabeled "SSCB" (the batch stays the last dimension)."""
    n = int(np.prod(projectionSize))

    def reshape_to_image(X):
        return dlarray(reshape(X, (*projectionSize, X.shape[-1])), "SSCB")

    return [fullyConnectedLayer(n, Name=Name),
            functionLayer(reshape_to_image, Name=f"{Name}_reshape", Formattable=True)]


def generator(filterSize=5, numFilters=64, projectionSize=(4, 4, 128)):
    return dlnetwork([
        featureInputLayer(numLatentInputs),
        *projectAndReshapeLayers(projectionSize),
        transposedConv2dLayer(filterSize, numFilters),
        batchNormalizationLayer(), reluLayer(),
        transposedConv2dLayer(filterSize, 1, Stride=2, Cropping="same"),
        tanhLayer(),
    ])


def discriminator(inputSize=(16, 16, 1), filterSize=5, numFilters=32, dropoutProb=0.5,
                  scale=0.2):
    return dlnetwork([
        imageInputLayer(list(inputSize), Normalization="none"),
        dropoutLayer(dropoutProb),
        convolution2dLayer(filterSize, numFilters, Stride=2, Padding="same"),
        leakyReluLayer(scale),
        convolution2dLayer(filterSize, 2 * numFilters, Stride=2, Padding="same"),
        batchNormalizationLayer(), leakyReluLayer(scale),
        convolution2dLayer(4, 1),
        sigmoidLayer(),
    ])


def modelLoss(netG, netD, X, Z, flip):
    """MATLAB's modelLoss; `flip` is the 1 x N mask (rand(1,N) < flipProb) drawn outside."""
    YReal = forward(netD, X)[0]
    XGenerated, stateG = forward(netG, Z)
    YGenerated = forward(netD, XGenerated)[0]

    scoreD = (mean(YReal) + mean(1 - YGenerated)) / 2
    scoreG = mean(YGenerated)

    # YReal(:,:,:,idx) = 1 - YReal(:,:,:,idx), written arithmetically on the 0/1 mask
    YReal = YReal + flip * (1 - 2 * YReal)

    lossD, lossG = ganLoss(YReal, YGenerated)
    gradientsG = dlgradient(lossG, netG.Learnables, RetainData=True)
    gradientsD = dlgradient(lossD, netD.Learnables)
    return gradientsG, gradientsD, stateG, scoreG, scoreD, lossG, lossD


def ganLoss(YReal, YGenerated):
    lossD = -mean(log(YReal)) - mean(log(1 - YGenerated))
    lossG = -mean(log(YGenerated))
    return lossD, lossG


def save_grid(images: np.ndarray, path: Path, title: str) -> None:
    """images: (H, W, 1, 25) in [-1, 1] -> a 5x5 PNG grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w, _, n = images.shape
    k = int(np.ceil(np.sqrt(n)))
    grid = np.ones((k * (h + 1) + 1, k * (w + 1) + 1))
    for i in range(n):
        r, c = divmod(i, k)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = (
            images[:, :, 0, i] + 1) / 2
    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=80)
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "img"),
                    help="folder for gan_digits.png")
    args = ap.parse_args(argv)

    numEpochs, miniBatchSize = (1, 64) if args.quick else (args.epochs, 128)
    learnRate, gradientDecayFactor, squaredGradientDecayFactor = 0.0002, 0.5, 0.999
    flipProb = 0.35
    x, _ = digits(16)
    x = 2 * x - 1  # rescale(X, -1, 1, InputMin=0, InputMax=1)
    if args.quick:
        x = x[..., :320]
    rng(0)
    r = np.random.default_rng(0)
    netG, netD = generator(), discriminator()
    ZValidation = dlarray(r.standard_normal((numLatentInputs, 25)).astype(np.float32), "CB")

    avgG = avgSqG = avgD = avgSqD = None
    iteration, history = 0, []
    t0 = time.perf_counter()
    for epoch in range(1, numEpochs + 1):
        for idx in minibatches(x.shape[-1], miniBatchSize, r):
            iteration += 1
            N = len(idx)
            X = dlarray(x[..., idx], "SSCB")
            Z = dlarray(r.standard_normal((numLatentInputs, N)).astype(np.float32), "CB")
            flip = (r.random((1, 1, 1, N)) < flipProb).astype(np.float32)
            gradientsG, gradientsD, stateG, scoreG, scoreD, lossG, lossD = dlfeval(
                modelLoss, netG, netD, X, Z, flip)
            netG.State = stateG
            netD, avgD, avgSqD = adamupdate(netD, gradientsD, avgD, avgSqD, iteration,
                                            learnRate, gradientDecayFactor,
                                            squaredGradientDecayFactor)
            netG, avgG, avgSqG = adamupdate(netG, gradientsG, avgG, avgSqG, iteration,
                                            learnRate, gradientDecayFactor,
                                            squaredGradientDecayFactor)
            history.append((float(lossD), float(lossG), float(scoreD), float(scoreG)))
        lD, lG, sD, sG = np.mean(history[-10:], axis=0)
        print(f"epoch {epoch:3d}  iteration {iteration:4d}  lossD {lD:.3f}  lossG {lG:.3f}  "
              f"scoreD {sD:.3f}  scoreG {sG:.3f}  ({time.perf_counter() - t0:.0f} s)")

    XGeneratedValidation = extractdata(predict(netG, ZValidation))
    out = Path(args.out) / "gan_digits.png"
    save_grid(XGeneratedValidation, out, f"GAN, {iteration} iterations")
    seconds = time.perf_counter() - t0
    h = np.array(history)
    if args.quick:
        first, last = h[:2, 0].mean(), h[-2:, 0].mean()
        assert last < first, f"discriminator loss did not go down: {first:.4f} -> {last:.4f}"
    lD, lG, sD, sG = h[-10:].mean(axis=0)
    print(f"final scoreD {sD:.3f}, scoreG {sG:.3f} (last 10 iterations); {iteration} "
          f"iterations in {seconds:.0f} s; generated digits in {out}")
    return {"lossD": h[:, 0].tolist(), "lossG": h[:, 1].tolist(), "scoreD": float(sD),
            "scoreG": float(sG), "image": str(out), "iterations": iteration, "seconds": seconds}


if __name__ == "__main__":
    main()
