"""`lgc demo`: train a small CNN on scikit-learn's handwritten digits with a compiled train step.

The network is a MATLAB-style layer array (imageInputLayer([8 8 1]), conv-batchnorm-relu twice,
fullyConnectedLayer(10), softmaxLayer) turned into a dlnetwork; `lgc.compile_train_step` runs
forward, backward and the optimizer update in one compiled call per mini-batch. The demo writes
what lgc lets you inspect: the layer diagram, the fused IR diagram of the loss and its gradient,
the IR text at each stage, and the training curves. Everything is seeded.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from .backend import get_backend
from .compiler import compile as lgc_compile
from .dlarray import dlarray
from .dlnetwork import dlnetwork, forward, predict
from .functional import crossentropy, onehotdecode
from .layers import (
    batchNormalizationLayer,
    convolution2dLayer,
    fullyConnectedLayer,
    imageInputLayer,
    reluLayer,
    softmaxLayer,
)
from .train import compile_train_step
from .transforms import dlgradient

BATCH = 64
DEFAULT_EPOCHS = 4
QUICK_STEPS = 3
SOLVER_OPTIONS = {"adam": {"learnRate": 0.01}, "sgdm": {"learnRate": 0.05, "momentum": 0.9}}


@dataclass
class DemoResult:
    steps: int
    losses: list[float]
    test_accuracy: float
    out_dir: str
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0
    epoch_accuracy: list[float] = field(default_factory=list)


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """The 1,797 8x8 digit images as "SSCB" arrays (8, 8, 1, N) in [0, 1] and their labels,
    split into train and test sets with a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32).transpose(1, 2, 0)[:, :, None, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(y.size)
    n_test = int(round(test_fraction * y.size))
    test, train = order[:n_test], order[n_test:]
    return x[..., train], y[train], x[..., test], y[test]


def layers():
    """The CNN as a MATLAB layer array."""
    return [
        imageInputLayer([8, 8, 1], Normalization="none", Name="input"),
        convolution2dLayer(3, 8, Padding="same", Name="conv_1"),
        batchNormalizationLayer(Name="bn_1"),
        reluLayer(Name="relu_1"),
        convolution2dLayer(3, 16, Padding="same", Name="conv_2"),
        batchNormalizationLayer(Name="bn_2"),
        reluLayer(Name="relu_2"),
        fullyConnectedLayer(10, Name="fc"),
        softmaxLayer(Name="softmax"),
    ]


def model_loss(net, X, T):  # noqa: N803
    """MATLAB's modelLoss for a dlnetwork: the loss and the updated batchnorm state."""
    Y, state = forward(net, X)  # noqa: N806
    return crossentropy(Y, T), state


def model_gradients(net, X, T):  # noqa: N803
    """The loss, its gradient with respect to the learnables, and the state: what the train
    step computes before its update (drawn as ir_fused.svg)."""
    Y, state = forward(net, X)  # noqa: N806
    loss = crossentropy(Y, T)
    return loss, dlgradient(loss, net.Learnables), state


def accuracy(net, X, labels) -> float:  # noqa: N803
    scores = predict(net, X)
    return float(np.mean(onehotdecode(scores, np.arange(10), 0) == labels))


def plot_training(losses: list[float], per_epoch: int, accs: list[float], path: str,
                  title: str) -> None:
    # The object API renders with Agg without touching pyplot's global backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.8), dpi=100)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=1.0, color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (crossentropy)", color="tab:blue")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if accs:
        ax2 = ax.twinx()
        ends = [min((k + 1) * per_epoch, len(losses)) for k in range(len(accs))]
        ax2.plot(ends, [100 * a for a in accs], "o-", color="tab:orange")
        ax2.set_ylabel("test accuracy (%)", color="tab:orange")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def write_diagrams(net, x0, t0, out_dir: str, say) -> tuple[list[str], str]:
    """network.svg, ir_fused.svg and ir.txt; returns the files written and the backend used.

    Without graphviz's `dot` the diagrams are written as DOT text (.dot) instead."""
    from .viz import GraphvizNotFoundError, plot, stages_text

    backend = get_backend()
    lowered = lgc_compile(model_gradients, backend=backend).lower(net, x0, t0)
    fused = lowered.optimized
    files = []
    for name, obj in (("network", net), ("ir_fused", fused)):
        path = os.path.join(out_dir, f"{name}.svg")
        try:
            plot(obj, path)
        except GraphvizNotFoundError as e:
            path = os.path.join(out_dir, f"{name}.dot")
            with open(path, "w") as f:
                f.write(e.digraph.source)
            say(f"note: {e} -- wrote {os.path.basename(path)} instead")
        files.append(path)
    ir_path = os.path.join(out_dir, "ir.txt")
    with open(ir_path, "w") as f:
        f.write(stages_text(lowered, source=True) + "\n")
    return files + [ir_path], backend


@dataclass
class Training:
    step: object  # the TrainStep; step.net is the trained network
    losses: list[float]
    epoch_accuracy: list[float]
    per_epoch: int
    first_step_seconds: float
    seconds: float


def train(epochs: int = DEFAULT_EPOCHS, solver: str = "adam", max_steps: int | None = None,
          out: TextIO | None = None, data=None) -> Training:
    """Train the CNN for `epochs` (at most `max_steps` steps), printing a line per epoch (and,
    on a terminal, a progress bar) to `out`."""
    from tqdm import tqdm

    out = out or sys.stdout
    x_train, y_train, x_test, y_test = data or load_digits_split()
    t_train = np.eye(10, dtype=np.float32)[:, y_train]
    x_test_dl = dlarray(x_test, "SSCB")
    n_train = y_train.size
    per_epoch = n_train // BATCH  # the last partial batch is dropped, as trainnet does
    total = per_epoch * epochs if max_steps is None else min(max_steps, per_epoch * epochs)
    t0 = time.perf_counter()
    step = compile_train_step(model_loss, dlnetwork(layers()), solver, **SOLVER_OPTIONS[solver])
    rng = np.random.default_rng(0)
    losses: list[float] = []
    accs: list[float] = []
    first = 0.0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n_train)
        n = min(per_epoch, total - len(losses))
        if n <= 0:
            break
        bar = tqdm(range(n), desc=f"epoch {epoch}/{epochs}", file=out, leave=False,
                   disable=not getattr(out, "isatty", lambda: False)(), unit="step")
        for k in bar:
            idx = order[k * BATCH:(k + 1) * BATCH]
            losses.append(step(dlarray(x_train[..., idx], "SSCB"),
                               dlarray(t_train[:, idx], "CB")))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if len(losses) == 1:
                first = time.perf_counter() - t0
        bar.close()
        accs.append(accuracy(step.net, x_test_dl, y_test))
        print(f"epoch {epoch:2d}  steps {len(losses):4d}  loss {np.mean(losses[-n:]):.4f}  "
              f"test accuracy {100 * accs[-1]:5.1f}%  ({time.perf_counter() - t0:.1f} s)",
              file=out, flush=True)
    return Training(step, losses, accs, per_epoch, first, time.perf_counter() - t0)


def run_demo(epochs: int = DEFAULT_EPOCHS, out_dir: str = "lgc-output", solver: str = "adam",
             max_steps: int | None = None, stream: TextIO | None = None) -> DemoResult:
    """Train for `epochs` (at most `max_steps` steps) and write the artefacts to `out_dir`."""
    out = stream or sys.stdout
    say = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    start = time.perf_counter()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"the output path {out_dir!r} exists and is not a folder")
    os.makedirs(out_dir, exist_ok=True)

    data = load_digits_split()
    x_train, y_train, _, y_test = data
    per_epoch = y_train.size // BATCH
    total = per_epoch * epochs if max_steps is None else min(max_steps, per_epoch * epochs)
    n_learn = sum(int(np.prod(v.shape)) for v in dlnetwork(layers()).Learnables.Value)
    say(f"lgc demo: CNN (conv-batchnorm-relu x2, fc, softmax; {n_learn:,} learnables) on "
        f"scikit-learn digits, {y_train.size} train / {y_test.size} test images of 8x8; "
        f"{solver}, batch {BATCH}, {total} steps, backend {get_backend()}")
    run = train(epochs, solver, max_steps, out, data)
    net = run.step.net

    t_train = np.eye(10, dtype=np.float32)[:, y_train[:BATCH]]
    files, backend = write_diagrams(net, dlarray(x_train[..., :BATCH], "SSCB"),
                                    dlarray(t_train, "CB"), out_dir, say)
    plot_path = os.path.join(out_dir, "training.png")
    plot_training(run.losses, run.per_epoch, run.epoch_accuracy, plot_path,
                  f"lgc demo: CNN on digits, {solver}, {len(run.losses)} steps")
    files.append(plot_path)
    seconds = time.perf_counter() - start
    acc = run.epoch_accuracy[-1]
    say(f"\nTest accuracy: {100 * acc:.1f}% after {len(run.losses)} steps; training "
        f"{run.seconds:.1f} s (first step, with compilation: {run.first_step_seconds:.1f} s), "
        f"{seconds:.1f} s in all")
    say(f"Wrote to {os.path.abspath(out_dir)}:")
    notes = {"network": "the layer graph (analyzeNetwork sizes on the edges)",
             "ir_fused": "the optimized IR of loss + gradient, fused kernels as clusters",
             "ir": "the IR at each stage (and the generated kernel source)",
             "training": "loss per iteration, test accuracy per epoch"}
    for path in files:
        base = os.path.basename(path)
        say(f"  {base:<14} {notes.get(base.split('.')[0], '')}")
    return DemoResult(len(run.losses), run.losses, acc, out_dir, files, seconds,
                      run.epoch_accuracy)
