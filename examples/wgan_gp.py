"""Wasserstein GAN with gradient penalty (WGAN-GP) in lgc, as in MATLAB's gradient-penalty
example: the penalty is the gradient of the critic with respect to its input, taken with
dlgradient(..., EnableHigherDerivatives=True) so that the critic's own gradient can be
differentiated again.

    critic loss      XHat = epsilon.*X + (1-epsilon).*XGenerated   (epsilon ~ U(0,1) per image)
                     gradientsHat = dlgradient(sum(forward(netD, XHat)), XHat,
                                               EnableHigherDerivatives=True)
                     gradientPenalty = lambda * mean((sqrt(sum(gradientsHat.^2, 1:3) + 1e-10)
                                                      - 1).^2)
                     lossD = mean(YGenerated - YReal) + gradientPenalty
    generator loss   lossG = -mean(YGenerated)

The critic has no sigmoid. numIterationsDPerG 5 critic updates per generator update,
lambda 10, learnRateD 2e-4, learnRateG 1e-3, gradientDecayFactor 0,
squaredGradientDecayFactor 0.9, and separate Adam iteration counters for the critic and the
generator, as in MATLAB.

Changes the data forced: the flowers (64x64 RGB) are not available, so this generates
scikit-learn's digits upsampled to 16x16 (scipy.ndimage.zoom), rescaled to [-1, 1], with the
16x16 generator of examples/gan.py. The critic is that example's discriminator without dropout
and sigmoid and with layer normalization in place of batch normalization (batch statistics
would couple the images of a batch, and the penalty is per image):

    imageInputLayer([16 16 1], Normalization="none")
    convolution2dLayer(5, 32, Stride=2, Padding="same"), leakyReluLayer(0.2)
    convolution2dLayer(5, 64, Stride=2, Padding="same"), layerNormalizationLayer,
        leakyReluLayer(0.2)
    convolution2dLayer(4, 1)

epsilon is drawn outside dlfeval and passed in (a traced function's Python random calls run
only once, when it is traced). miniBatchSize 64 as in MATLAB; 200 generator iterations instead
of 10,000 so a full run takes a few minutes on two cores.

Result (full mode, this 2-core machine): docs/img/wgan_gp_digits.png, recognizable digits
(9, 6, 5, 3, 1, ...) after 200 generator / 1,000 critic iterations; the Wasserstein estimate
falls from a peak of 5.1 to 1.08 as the generator learns. 2 min 40 s of wall time on the
shared machine.

    python examples/wgan_gp.py [--out DIR]            # full: 200 generator iterations
    python examples/wgan_gp.py --quick [--out DIR]    # a few iterations
"""

# ruff: noqa: N802, N803, N806  (MATLAB's variable names)
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _data import digits
from gan import generator, numLatentInputs, save_grid

from lgc import (
    adamupdate,
    convolution2dLayer,
    dlarray,
    dlfeval,
    dlgradient,
    dlnetwork,
    extractdata,
    forward,
    imageInputLayer,
    layerNormalizationLayer,
    leakyReluLayer,
    mean,
    predict,
    rng,
    sqrt,
)
from lgc import sum as dlsum


def critic(filterSize=5, numFilters=32, scale=0.2):
    return dlnetwork([
        imageInputLayer([16, 16, 1], Normalization="none"),
        convolution2dLayer(filterSize, numFilters, Stride=2, Padding="same"),
        leakyReluLayer(scale),
        convolution2dLayer(filterSize, 2 * numFilters, Stride=2, Padding="same"),
        layerNormalizationLayer(), leakyReluLayer(scale),
        convolution2dLayer(4, 1),
    ])


def modelLossD(netD, netG, X, Z, epsilon, lambda_):
    XGenerated = predict(netG, Z)
    YReal = forward(netD, X)[0]
    YGenerated = forward(netD, XGenerated)[0]
    lossDUnregularized = mean(YGenerated - YReal)

    XHat = epsilon * X + (1 - epsilon) * XGenerated
    YHat = dlsum(forward(netD, XHat)[0])
    gradientsHat = dlgradient(YHat, XHat, EnableHigherDerivatives=True)
    gradientsHatNorm = sqrt(dlsum(gradientsHat**2, (0, 1, 2)) + 1e-10)
    gradientPenalty = lambda_ * mean((gradientsHatNorm - 1) ** 2)

    lossD = lossDUnregularized + gradientPenalty
    gradientsD = dlgradient(lossD, netD.Learnables)
    return lossD, gradientsD, lossDUnregularized


def modelLossG(netG, netD, Z):
    XGenerated, stateG = forward(netG, Z)
    YGenerated = forward(netD, XGenerated)[0]
    lossG = -mean(YGenerated)
    gradientsG = dlgradient(lossG, netG.Learnables)
    return lossG, gradientsG, stateG


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few iterations")
    ap.add_argument("--iterations", type=int, default=200, help="generator iterations")
    ap.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "img"),
                    help="folder for wgan_gp_digits.png")
    args = ap.parse_args(argv)

    numIterationsG, miniBatchSize = (3, 32) if args.quick else (args.iterations, 64)
    numIterationsDPerG, lambda_ = 5, 10
    learnRateD, learnRateG = 2e-4, 1e-3
    gradientDecayFactor, squaredGradientDecayFactor = 0, 0.9
    x, _ = digits(16)
    x = 2 * x - 1
    rng(0)
    r = np.random.default_rng(0)
    netG, netD = generator(), critic()
    ZValidation = dlarray(r.standard_normal((numLatentInputs, 25)).astype(np.float32), "CB")

    def latents(n):
        return dlarray(r.standard_normal((numLatentInputs, n)).astype(np.float32), "CB")

    avgD = avgSqD = avgG = avgSqG = None
    iterationD = iterationG = 0
    historyD, historyW, historyG = [], [], []
    t0 = time.perf_counter()
    for _ in range(numIterationsG):
        for _ in range(numIterationsDPerG):
            idx = r.choice(x.shape[-1], miniBatchSize, replace=False)
            X = dlarray(x[..., idx], "SSCB")
            epsilon = r.random((1, 1, 1, miniBatchSize)).astype(np.float32)
            lossD, gradientsD, lossDUnregularized = dlfeval(
                modelLossD, netD, netG, X, latents(miniBatchSize), epsilon, lambda_)
            iterationD += 1
            netD, avgD, avgSqD = adamupdate(netD, gradientsD, avgD, avgSqD, iterationD,
                                            learnRateD, gradientDecayFactor,
                                            squaredGradientDecayFactor)
            historyD.append(float(lossD))
            historyW.append(-float(lossDUnregularized))
        lossG, gradientsG, stateG = dlfeval(modelLossG, netG, netD, latents(miniBatchSize))
        netG.State = stateG
        iterationG += 1
        netG, avgG, avgSqG = adamupdate(netG, gradientsG, avgG, avgSqG, iterationG,
                                        learnRateG, gradientDecayFactor,
                                        squaredGradientDecayFactor)
        historyG.append(float(lossG))
        if iterationG % max(1, numIterationsG // 10) == 0:
            print(f"generator iteration {iterationG:4d}  lossD {np.mean(historyD[-25:]):8.3f}  "
                  f"W estimate {np.mean(historyW[-25:]):7.3f}  lossG {historyG[-1]:7.3f}  "
                  f"({time.perf_counter() - t0:.0f} s)")

    XGeneratedValidation = extractdata(predict(netG, ZValidation))
    out = Path(args.out) / "wgan_gp_digits.png"
    save_grid(XGeneratedValidation, out, f"WGAN-GP, {iterationG} generator iterations")
    seconds = time.perf_counter() - t0
    if args.quick:
        first, last = np.mean(historyD[:3]), np.mean(historyD[-3:])
        assert last < first, f"critic loss did not go down: {first:.4f} -> {last:.4f}"
    w_start, w_end = np.mean(historyW[:25]), np.mean(historyW[-25:])
    print(f"critic loss {np.mean(historyD[-25:]):.3f}; Wasserstein estimate {w_end:.3f} "
          f"(peak {np.max(historyW):.3f}); {iterationG} generator / {iterationD} critic "
          f"iterations in {seconds:.0f} s; generated digits in {out}")
    return {"lossD": historyD, "lossG": historyG, "wasserstein": historyW,
            "w_start": float(w_start), "w_end": float(w_end), "image": str(out),
            "iterations": iterationG, "seconds": seconds}


if __name__ == "__main__":
    main()
