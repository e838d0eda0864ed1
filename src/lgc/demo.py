"""`lgc demo`: train a 64-32-10 MLP on scikit-learn's handwritten digits with dlfeval.

It exercises what exists end to end — dlarray formats, tracing (`lgc.trace`), reverse mode
(`dlgradient`), the reference backend behind `dlfeval` — and writes its artefacts (`ir.txt`,
`loss.png`) to an output folder. Everything is seeded, so two runs print the same numbers.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from .dlarray import dlarray
from .functional import crossentropy, fullyconnect, onehotdecode, onehotencode, relu, softmax
from .transforms import dlfeval, dlgradient, trace

SIZES = (64, 32, 10)
BATCH = 64
LEARN_RATE = 0.5
IR_PREVIEW_LINES = 40
DEFAULT_STEPS = 440  # 20 epochs of 22 mini-batches; about 3 s on the reference backend
QUICK_STEPS = 5


@dataclass
class DemoResult:
    steps: int
    losses: list[float]
    test_accuracy: float
    out_dir: str
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def load_digits_split(test_fraction: float = 0.2, seed: int = 0):
    """The 1,797 8x8 digit images as `(64, N)` float32 features in [0, 1] and labels,
    split into train and test sets with a fixed permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).T  # features along C, observations along B
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(y.size)
    n_test = int(round(test_fraction * y.size))
    test, train = order[:n_test], order[n_test:]
    return x[:, train], y[train], x[:, test], y[test]


def glorot(shape: tuple[int, int], rng: np.random.Generator):
    """Glorot (Xavier) uniform weights: U(±sqrt(6 / (fanIn + fanOut))), as a float32 dlarray."""
    fan_out, fan_in = shape
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return dlarray(rng.uniform(-bound, bound, size=shape).astype(np.float32))


def init_params(seed: int = 0) -> dict:
    """W1 (32, 64), b1 (32, 1), W2 (10, 32), b2 (10, 1): Glorot weights, zero biases."""
    rng = np.random.default_rng(seed)
    n_in, n_hidden, n_out = SIZES
    return {
        "W1": glorot((n_hidden, n_in), rng),
        "b1": dlarray(np.zeros((n_hidden, 1), np.float32)),
        "W2": glorot((n_out, n_hidden), rng),
        "b2": dlarray(np.zeros((n_out, 1), np.float32)),
    }


def model(params, X):  # noqa: N803
    """Class probabilities of the MLP for "CB" features X."""
    h = relu(fullyconnect(X, params["W1"], params["b1"]))
    return softmax(fullyconnect(h, params["W2"], params["b2"]))


def model_loss(params, X, T):  # noqa: N803
    """The cross-entropy loss and its gradient with respect to every parameter."""
    loss = crossentropy(model(params, X), T)
    return loss, dlgradient(loss, params)


def ir_preview(text: str, limit: int = IR_PREVIEW_LINES) -> str:
    lines = text.splitlines()
    if len(lines) <= limit:
        return text
    return "\n".join(lines[:limit] + [f"  ... {len(lines) - limit} more lines "
                                      f"({len(lines)} in all)"])


def accuracy(params, X, labels, classes) -> float:  # noqa: N803
    scores = dlfeval(model, params, X)
    return float(np.mean(onehotdecode(scores, classes, 0) == labels))


def plot_loss(losses: list[float], path: str) -> None:
    # The object API renders with Agg without touching pyplot's global backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (crossentropy)")
    ax.set_title("lgc demo: MLP 64-32-10 on digits, SGD")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def run_demo(steps: int = DEFAULT_STEPS, out_dir: str = "lgc-output",
             stream: TextIO | None = None) -> DemoResult:
    """Train for `steps` mini-batch SGD iterations and write ir.txt and loss.png to out_dir."""
    out = stream or sys.stdout
    say = lambda *a: print(*a, file=out, flush=True)  # noqa: E731
    start = time.perf_counter()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise NotADirectoryError(f"the output path {out_dir!r} exists and is not a folder")
    os.makedirs(out_dir, exist_ok=True)

    x_train, y_train, x_test, y_test = load_digits_split()
    classes = np.arange(SIZES[-1])
    t_train = onehotencode(y_train, 0, ClassNames=classes)
    xs_test = dlarray(x_test, "CB")
    params = init_params(seed=0)
    n_train = y_train.size
    per_epoch = n_train // BATCH  # the last partial batch is dropped: one traced signature
    say(f"lgc demo: MLP {'-'.join(map(str, SIZES))} on scikit-learn digits "
        f"({n_train} train / {y_test.size} test images, 8x8), batch {BATCH}, "
        f"SGD lr {LEARN_RATE}, {steps} steps")

    x0 = dlarray(x_train[:, :BATCH], "CB")
    t0 = dlarray(t_train[:, :BATCH], "CB")
    ir_text = str(trace(model_loss, params, x0, t0))
    say("\nTraced forward + gradient IR of model_loss (lgc.trace):")
    say(ir_preview(ir_text))
    say("")

    rng = np.random.default_rng(0)
    order = rng.permutation(n_train)
    losses: list[float] = []
    for step in range(steps):
        k = step % per_epoch
        if k == 0 and step:
            order = rng.permutation(n_train)
        idx = order[k * BATCH:(k + 1) * BATCH]
        xb = dlarray(x_train[:, idx], "CB")
        tb = dlarray(t_train[:, idx], "CB")
        loss, grads = dlfeval(model_loss, params, xb, tb)
        params = {name: p - LEARN_RATE * grads[name] for name, p in params.items()}
        losses.append(float(loss))
        if k == per_epoch - 1 or step == steps - 1:
            epoch = step // per_epoch + 1
            acc = accuracy(params, xs_test, y_test, classes)
            recent = np.mean(losses[-(k + 1):])
            say(f"epoch {epoch:3d}  step {step + 1:5d}  loss {recent:.4f}  "
                f"test accuracy {100 * acc:5.1f}%")

    acc = accuracy(params, xs_test, y_test, classes)
    files = [os.path.join(out_dir, "ir.txt"), os.path.join(out_dir, "loss.png")]
    with open(files[0], "w") as f:
        f.write(ir_text + "\n")
    plot_loss(losses, files[1])
    seconds = time.perf_counter() - start
    say(f"\nFinal test accuracy: {100 * acc:.1f}% after {steps} steps ({seconds:.1f} s)")
    say(f"Wrote to {os.path.abspath(out_dir)}:")
    for path in files:
        say(f"  {os.path.basename(path)}")
    return DemoResult(steps, losses, acc, out_dir, files, seconds)
