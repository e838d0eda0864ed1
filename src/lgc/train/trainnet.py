"""trainnet: train a dlnetwork on in-memory data with trainingOptions, as MATLAB's trainnet does:
mini-batches, shuffling, learning-rate schedule, validation, display, checkpoints, resume."""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from ..dlarray import DLArray, dlarray
from ..dlnetwork import DLNetwork, forward, initialize, predict
from ..errors import LgcError
from ..functional import crossentropy, l2loss, onehotencode
from ..ops.creation import generator
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .options import TrainingOptions
from .progress import ProgressBar, TrainingPlot, VerboseTable, default_plot_path
from .step import NonFiniteError, TrainStep

COLUMNS = ("Iteration", "Epoch", "TrainingLoss", "TrainingAccuracy", "ValidationLoss",
           "ValidationAccuracy", "LearnRate")

LOSSES = {
    "crossentropy": crossentropy,
    "binary-crossentropy": lambda y, t: crossentropy(y, t, ClassificationMode="multilabel"),
    # MATLAB's trainnet computes "mse" with l2loss: Σ(Y−T)²/N, N = observations (not halved)
    "mse": l2loss,
    "mean-squared-error": l2loss,
}


class TrainingHistory:
    """One row per iteration: columns Iteration, Epoch, TrainingLoss, TrainingAccuracy,
    ValidationLoss, ValidationAccuracy, LearnRate (NaN where not computed; accuracies in %).
    `h.TrainingLoss` / `h["TrainingLoss"]` is a NumPy column, `h[i]` a row (dict)."""

    def __init__(self, columns: dict | None = None):
        self._cols = {c: list((columns or {}).get(c, [])) for c in COLUMNS}

    def append(self, **row) -> None:
        for c in COLUMNS:
            self._cols[c].append(float(row.get(c, math.nan)))

    def set_last(self, **values) -> None:
        for c, v in values.items():
            self._cols[c][-1] = float(v)

    def __len__(self) -> int:
        return len(self._cols["Iteration"])

    def __getattr__(self, name):
        if name in COLUMNS:
            a = np.asarray(self._cols[name])
            return a.astype(np.int64) if name in ("Iteration", "Epoch") else a
        raise AttributeError(name)

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return {c: self._cols[c][key] for c in COLUMNS}

    def to_dict(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in COLUMNS}

    def __repr__(self) -> str:
        head = "  ".join(f"{c:>18}" for c in COLUMNS)
        rows = [head] + ["  ".join(f"{self._cols[c][i]:>18.6g}" for c in COLUMNS)
                         for i in range(min(len(self), 10))]
        more = [f"... ({len(self) - 10} more rows)"] if len(self) > 10 else []
        return "\n".join([f"{len(self)}x{len(COLUMNS)} TrainingHistory"] + rows + more)


@dataclass
class TrainingInfo:
    """What trainnet returns next to the network. StopReason: "max-epochs", "output-function"
    (OutputFcn returned True) or "interrupted" (Ctrl-C / KeyboardInterrupt)."""

    History: TrainingHistory
    StopReason: str
    FinalValidationLoss: float = math.nan
    FinalValidationAccuracy: float = math.nan
    ClassNames: np.ndarray | None = None
    PlotPath: str | None = None
    CheckpointFiles: list[str] = field(default_factory=list)
    TrainingTime: float = 0.0
    Iterations: int = 0


# --- data -----------------------------------------------------------------------------------------


def _as_input(net: DLNetwork, data, what: str) -> DLArray:
    fmt = net._arch.input_fmts[0]
    if isinstance(data, DLArray):
        if data.is_traced:
            raise LgcError(f"trainnet: {what} must be concrete data, not a traced dlarray")
        x = data if data.fmt else dlarray(data._data, fmt or "")
    else:
        a = np.asarray(data)
        if fmt is None:
            raise LgcError(f"trainnet: the network's input has no input layer; give {what} as "
                           f"a formatted dlarray")
        if a.ndim != len(fmt):
            raise LgcError(f"trainnet: {what} of shape {a.shape} does not fit the input "
                           f"layer's layout {fmt} ({len(fmt)} dimensions, observations along "
                           f"B); give a formatted dlarray or an array shaped that way")
        x = dlarray(a, fmt)
    if "B" not in x.fmt:
        raise LgcError(f"trainnet: {what} ({x.fmt} {x.shape}) has no batch (B) dimension")
    if x.dtype.kind != "f":
        x = dlarray(x._data.astype(np.float32), x.fmt)
    return x


def _as_targets(targets, n: int, loss_name, classes, what: str):
    """(targets dlarray with a B dimension, class names or None)."""
    if isinstance(targets, DLArray) and targets.fmt:
        t = targets
    else:
        a = np.asarray(targets)
        if a.ndim == 2 and 1 in a.shape and a.size == n and n > 1:
            a = a.reshape(-1)
        if a.ndim == 1:
            if a.size != n:
                raise LgcError(f"trainnet: {what} has {a.size} labels but there are {n} "
                               f"observations")
            if loss_name in ("mse", "mean-squared-error"):
                t = dlarray(a.astype(np.float32)[None, :], "CB")  # one response per observation
            else:
                if classes is None:
                    classes = np.unique(a)
                t = dlarray(onehotencode(a, 0, ClassNames=classes), "CB")
        elif a.ndim == 2:
            t = dlarray(a.astype(np.float32) if a.dtype.kind != "f" else a, "CB")
        else:
            raise LgcError(f"trainnet: {what} must be a vector of labels, a (classes, N) array "
                           f"or a formatted dlarray, got shape {a.shape}")
    if "B" not in t.fmt or t.shape[t.fmt.index("B")] != n:
        raise LgcError(f"trainnet: {what} ({t.fmt} {t.shape}) must have {n} observations "
                       f"along B")
    return t, classes


def _take(x: DLArray, idx) -> DLArray:
    return dlarray(np.take(x._data, idx, axis=x.fmt.index("B")), x.fmt)


def _accuracy(y: DLArray, t: DLArray) -> float:
    if "C" not in y.fmt or y.shape != t.shape:
        return math.nan
    c = y.fmt.index("C")
    return 100.0 * float(np.mean(np.argmax(np.asarray(y), c) == np.argmax(np.asarray(t), c)))


def fit_input_normalization(net: DLNetwork, x: DLArray) -> DLNetwork:
    """MATLAB computes the input layer's missing normalization statistics (Mean,
    StandardDeviation, Min, Max) from the training data before training; this returns the
    network with them set (or `net` when nothing is missing). NormalizationDimension "auto"
    is "channel"; a zero standard deviation becomes 1 (constant inputs stay finite)."""
    from ..layers.input import _InputLayer

    arch = net._arch
    name = arch.inputs[0][0]
    layer = arch.layers[name]
    if not isinstance(layer, _InputLayer) or callable(layer.Normalization):
        return net
    need = {"zerocenter": ("Mean",), "zscore": ("Mean", "StandardDeviation"),
            "rescale-symmetric": ("Min", "Max"), "rescale-zero-one": ("Min", "Max")}
    missing = [s for s in need.get(layer.Normalization, ()) if getattr(layer, s) is None]
    if not missing:
        return net
    data = x._data
    nf = len(layer._features)
    mode = {"auto": "channel"}.get(layer.NormalizationDimension, layer.NormalizationDimension)
    keep = {"channel": (nf - 1,), "element": tuple(range(nf)), "all": ()}[mode]
    axes = tuple(a for a in range(data.ndim) if a not in keep)
    fns = {"Mean": lambda d: d.mean(axes, dtype=np.float64),
           "StandardDeviation": lambda d: d.std(axes, dtype=np.float64),
           "Min": lambda d: d.min(axes), "Max": lambda d: d.max(axes)}
    new = copy.deepcopy(layer)
    for s in missing:
        v = np.asarray(fns[s](data), np.float64)
        if s == "StandardDeviation":
            v = np.where(v > 0, v, 1.0)
        setattr(new, s, new._stat(s, v.reshape(-1)))
    g = arch.lg._copy()
    g.graph.nodes[name]["layer"] = new
    new_arch = copy.copy(arch)
    new_arch.lg, new_arch.layers = g, {**arch.layers, name: new}
    return DLNetwork(new_arch, net.Learnables, net.State, net.Initialized)


# --- Ctrl-C ---------------------------------------------------------------------------------------


class _StopOnInterrupt:
    """While training, SIGINT sets a flag read after each iteration, so an iteration is never
    cut in half; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


# --- trainnet -------------------------------------------------------------------------------------


def _solver_options(o: TrainingOptions) -> dict:
    if o.SolverName == "sgdm":
        return {"learnRate": o.InitialLearnRate, "momentum": o.Momentum}
    if o.SolverName == "adam":
        return {"learnRate": o.InitialLearnRate, "gradDecay": o.GradientDecayFactor,
                "sqGradDecay": o.SquaredGradientDecayFactor, "epsilon": o.Epsilon}
    return {"learnRate": o.InitialLearnRate, "sqGradDecay": o.SquaredGradientDecayFactor,
            "epsilon": o.Epsilon}


def learn_rate_at(o: TrainingOptions, epoch: int) -> float:
    """The base learning rate of `epoch` (1-based): piecewise drops by LearnRateDropFactor
    every LearnRateDropPeriod epochs."""
    if o.LearnRateSchedule == "piecewise":
        return o.InitialLearnRate * o.LearnRateDropFactor ** ((epoch - 1) // o.LearnRateDropPeriod)
    return o.InitialLearnRate


def _evaluate(net, x, t, loss_fn, batch: int, classification: bool) -> tuple[float, float]:
    """Loss and accuracy of `predict` over all of (x, t), in mini-batches."""
    n = x.shape[x.fmt.index("B")]
    ys = [predict(net, _take(x, np.arange(a, min(a + batch, n)))) for a in range(0, n, batch)]
    fmt = ys[0].fmt
    y = dlarray(np.concatenate([np.asarray(v) for v in ys], axis=fmt.index("B")), fmt)
    loss = float(np.asarray(loss_fn(y, t)))
    return loss, (_accuracy(y, t) if classification else math.nan)


def trainnet(X, T, net, lossFcn, options: TrainingOptions):  # noqa: N803
    """net, info = trainnet(X, T, net, lossFcn, options) — train a dlnetwork (MATLAB trainnet).

    X: a formatted dlarray with a B dimension, or a NumPy array in the input layer's layout
    (imageInputLayer: (h, w, c, N) "SSCB"; featureInputLayer: (n, N) "CB"; sequenceInputLayer:
    (n, N, T) "CBT"). T: one-hot (classes, N) "CB" targets (or any formatted dlarray with N
    observations along B), or a vector of N labels (one-hot encoded over the sorted unique
    labels, `info.ClassNames`; with "mse" a vector is one response per observation).
    lossFcn: "crossentropy", "binary-crossentropy", "mse" (l2loss) or a callable (Y, T) ->
    scalar loss. options: trainingOptions(...). Returns the trained network and a
    TrainingInfo (History, FinalValidationLoss/Accuracy, StopReason, PlotPath, ...).
    Raises LgcError naming the iteration when the loss or a gradient is NaN or Inf (the
    network at the failure is `err.net`, with the parameters before that iteration).
    """
    if not isinstance(options, TrainingOptions):
        raise LgcError(f"trainnet: options must come from trainingOptions, got "
                       f"{type(options).__name__}")
    if not isinstance(net, DLNetwork):
        raise LgcError(f"trainnet: net must be a dlnetwork, got {type(net).__name__}")
    if len(net._arch.inputs) != 1 or len(net._arch.outputs) != 1:
        raise LgcError(f"trainnet: networks with one input and one output are supported; this "
                       f"one has inputs {net.InputNames} and outputs {net.OutputNames}")
    if callable(lossFcn):
        loss_fn, loss_name = lossFcn, None
    elif isinstance(lossFcn, str) and lossFcn.lower() in LOSSES:
        loss_name = lossFcn.lower()
        loss_fn = LOSSES[loss_name]
    else:
        raise LgcError(f"trainnet: lossFcn must be one of {sorted(LOSSES)} or a function "
                       f"(Y, T) -> loss, got {lossFcn!r}")
    o = options
    x = _as_input(net, X, "X")
    n = x.shape[x.fmt.index("B")]
    t, classes = _as_targets(T, n, loss_name, None, "T")
    classification = loss_name == "crossentropy" or classes is not None
    val = None
    if o.ValidationData is not None:
        xv = _as_input(net, o.ValidationData[0], "ValidationData X")
        tv, _ = _as_targets(o.ValidationData[1], xv.shape[xv.fmt.index("B")], loss_name,
                            classes, "ValidationData T")
        val = (xv, tv)
    bs = o.MiniBatchSize
    per_epoch = n // bs  # MATLAB drops the last partial mini-batch of each epoch
    if per_epoch == 0:
        raise LgcError(f"trainnet: MiniBatchSize {bs} is larger than the number of observations "
                       f"{n}: there is no complete mini-batch")
    if not net.Initialized:
        net = initialize(net, _take(x, np.arange(1)))
    net = fit_input_normalization(net, x)

    def model_loss(net, x, t):
        y, state = forward(net, x)
        return loss_fn(y, t), state, y

    step = TrainStep(model_loss, net, o.SolverName, l2_regularization=o.L2Regularization,
                     gradient_threshold=o.GradientThreshold,
                     gradient_threshold_method=o.GradientThresholdMethod, check_finite=True,
                     **_solver_options(o))
    history, start_epoch, elapsed0 = TrainingHistory(), 1, 0.0
    order = np.arange(n)
    if o.ResumeFrom:
        ck = load_checkpoint(o.ResumeFrom)
        if ck.options_hash != o.training_hash() or ck.num_observations != n:
            raise CheckpointError(
                f"trainnet: checkpoint {o.ResumeFrom} was written by a training with other "
                f"options or data ({ck.num_observations} observations); resume with the same "
                f"data and the same options (MaxEpochs, display and validation may differ)")
        try:
            step.restore(ck.buffers, ck.iteration,
                         step.network_state.with_values([dlarray(v) for v in ck.state_values])
                         if step.network_state is not None else None)
        except LgcError as e:
            raise CheckpointError(f"trainnet: checkpoint {o.ResumeFrom} does not fit this "
                                  f"network: {e}") from None
        generator().bit_generator.state = ck.rng_state
        order, start_epoch, elapsed0 = ck.order, ck.epoch + 1, ck.elapsed
        history = TrainingHistory({k: list(v) for k, v in ck.history.items()})
    elif o.Shuffle == "once":
        order = generator().permutation(n)

    total = o.MaxEpochs * per_epoch
    bar = ProgressBar(total, min(step.iteration, total)) if o.Verbose else None
    table = VerboseTable(val is not None, classification,
                         bar.write if bar is not None else None) if o.Verbose else None
    plot = TrainingPlot(o.PlotPath or default_plot_path(o.CheckpointPath), classification) \
        if o.Plots == "training-progress" else None
    info = TrainingInfo(history, "max-epochs", ClassNames=classes,
                        PlotPath=plot.path if plot is not None else None)
    t0 = time.perf_counter()

    def call_output_fcn(state: str, epoch: int) -> bool:
        if o.OutputFcn is None:
            return False
        last = history[-1] if len(history) else {c: math.nan for c in COLUMNS}
        return bool(o.OutputFcn(SimpleNamespace(
            State=state, Epoch=epoch, Iteration=step.iteration,
            TimeSinceStart=elapsed0 + time.perf_counter() - t0,
            TrainingLoss=last["TrainingLoss"], ValidationLoss=last["ValidationLoss"],
            TrainingAccuracy=last["TrainingAccuracy"],
            ValidationAccuracy=last["ValidationAccuracy"], BaseLearnRate=step.learn_rate)))

    if table is not None:
        table.header()
    epoch = start_epoch
    try:
        with _StopOnInterrupt() as interrupt:
            stop = None
            try:
                if call_output_fcn("start", start_epoch):
                    stop = "output-function"
            except KeyboardInterrupt:
                stop = "interrupted"
            for epoch in range(start_epoch, o.MaxEpochs + 1):
                if stop:
                    break
                if o.Shuffle == "every-epoch":
                    order = generator().permutation(n)
                step.learn_rate = learn_rate_at(o, epoch)
                for j in range(per_epoch):
                    idx = order[j * bs:(j + 1) * bs]
                    xb, tb = _take(x, idx), _take(t, idx)
                    try:
                        loss, y = step(xb, tb)
                    except NonFiniteError as e:
                        err = LgcError(_non_finite_message(e, epoch))
                        err.net, err.info = step.net, info
                        raise err from None
                    except KeyboardInterrupt:  # outside the main thread: undo a half step
                        step.rollback()
                        stop = "interrupted"
                        break
                    it = step.iteration
                    row = {"Iteration": it, "Epoch": epoch, "TrainingLoss": loss,
                           "LearnRate": step.learn_rate,
                           "TrainingAccuracy": _accuracy(y, tb) if classification else math.nan}
                    if val is not None and (it == 1 or it % o.ValidationFrequency == 0
                                            or it == total):
                        row["ValidationLoss"], row["ValidationAccuracy"] = _evaluate(
                            step.net, *val, loss_fn, bs, classification)
                    history.append(**row)
                    elapsed = elapsed0 + time.perf_counter() - t0
                    if bar is not None:
                        bar.update(loss)
                    if table is not None and (it == 1 or it % o.VerboseFrequency == 0
                                              or it == total):
                        table.row(epoch, it, elapsed, history[-1])
                    if plot is not None:
                        plot.refresh(history.to_dict(), title=f"Epoch {epoch} of {o.MaxEpochs}")
                    try:
                        if call_output_fcn("iteration", epoch):
                            stop = "output-function"
                    except KeyboardInterrupt:
                        stop = "interrupted"
                    if interrupt.requested:
                        stop = "interrupted"
                    if stop:
                        break
                else:
                    if o.CheckpointPath:
                        info.CheckpointFiles.append(_checkpoint(
                            o, step, epoch, order, history, elapsed0 + time.perf_counter() - t0,
                            n))
                    if plot is not None:
                        plot.refresh(history.to_dict(), force=True,
                                     title=f"Epoch {epoch} of {o.MaxEpochs}")
            info.StopReason = stop or "max-epochs"
    finally:
        if bar is not None:
            bar.close()
    trained = step.net
    if val is not None and len(history):
        info.FinalValidationLoss, info.FinalValidationAccuracy = _evaluate(
            trained, *val, loss_fn, bs, classification)
        if not np.isfinite(history.ValidationLoss[-1]):
            history.set_last(ValidationLoss=info.FinalValidationLoss,
                             ValidationAccuracy=info.FinalValidationAccuracy)
    info.TrainingTime = elapsed0 + time.perf_counter() - t0
    info.Iterations = step.iteration
    if table is not None:
        if len(history) and history.Iteration[-1] % o.VerboseFrequency and \
                history.Iteration[-1] != total and history.Iteration[-1] != 1:
            table.row(int(history.Epoch[-1]), int(history.Iteration[-1]), info.TrainingTime,
                      history[-1])
        table.footer({"max-epochs": "Max epochs completed",
                      "output-function": "Stopped by OutputFcn",
                      "interrupted": "Training interrupted (Ctrl-C)"}[info.StopReason])
    if plot is not None and len(history):
        plot.refresh(history.to_dict(), force=True, title=f"Training finished: {info.StopReason}")
    try:
        call_output_fcn("done", epoch)
    except KeyboardInterrupt:
        pass
    return trained, info


def _non_finite_message(e: NonFiniteError, epoch: int) -> str:
    if e.parameter is None:
        what = "the training loss is NaN or Inf"
    else:
        layer, _, param = e.parameter.rpartition("/")
        what = (f"the gradient of layer {layer!r} (parameter {param}) is NaN or Inf"
                if layer else f"the gradient of parameter {e.parameter} is NaN or Inf")
    return (f"trainnet: {what} at iteration {e.iteration} (epoch {epoch}); training stopped "
            f"and the network keeps the parameters from before that iteration (err.net). Try a "
            f"smaller InitialLearnRate or a GradientThreshold")


def _checkpoint(o, step, epoch, order, history, elapsed, n) -> str:
    state = step.network_state
    ck = Checkpoint(iteration=step.iteration, epoch=epoch,
                    buffers=[b.copy() for b in step.buffers()],
                    state_values=[np.asarray(v) for v in state.Value] if state is not None
                    else [],
                    rng_state=generator().bit_generator.state, order=order,
                    options_hash=o.training_hash(), num_observations=n,
                    history=history.to_dict(), elapsed=elapsed)
    return save_checkpoint(o.CheckpointPath, ck, step.net)
