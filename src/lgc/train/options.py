"""trainingOptions: MATLAB's training options (solver, schedule, regularization, validation,
display, checkpoints) with MATLAB's names and defaults, validated when they are made."""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np

from ..errors import LgcError

SOLVER_DEFAULTS = {
    "sgdm": {"InitialLearnRate": 0.01, "Momentum": 0.9},
    "adam": {"InitialLearnRate": 0.001, "GradientDecayFactor": 0.9,
             "SquaredGradientDecayFactor": 0.999, "Epsilon": 1e-8},
    "rmsprop": {"InitialLearnRate": 0.001, "SquaredGradientDecayFactor": 0.9, "Epsilon": 1e-8},
}

COMMON_DEFAULTS = {
    "MaxEpochs": 30,
    "MiniBatchSize": 128,
    "Shuffle": "once",
    "LearnRateSchedule": "none",
    "LearnRateDropFactor": 0.1,
    "LearnRateDropPeriod": 10,
    "L2Regularization": 1e-4,
    "GradientThreshold": math.inf,
    "GradientThresholdMethod": "l2norm",
    "ValidationData": None,
    "ValidationFrequency": 50,
    "Verbose": True,
    "VerboseFrequency": 50,
    "Plots": "none",
    "CheckpointPath": "",
    "ResumeFrom": "",
    "PlotPath": "",
    "OutputFcn": None,
}

CHOICES = {
    "Shuffle": ("once", "never", "every-epoch"),
    "LearnRateSchedule": ("none", "piecewise"),
    "GradientThresholdMethod": ("l2norm", "global-l2norm", "absolute-value"),
    "Plots": ("none", "training-progress"),
}

# options that change the arithmetic of training: a checkpoint may only be resumed with the same
OPTIONS_THAT_SHAPE_TRAINING = ("SolverName", "InitialLearnRate", "Momentum",
                               "GradientDecayFactor", "SquaredGradientDecayFactor", "Epsilon",
                               "MiniBatchSize", "Shuffle", "LearnRateSchedule",
                               "LearnRateDropFactor", "LearnRateDropPeriod", "L2Regularization",
                               "GradientThreshold", "GradientThresholdMethod")


def _fail(name: str, expected: str, got) -> LgcError:
    return LgcError(f"trainingOptions: {name} must be {expected}, got {got!r}")


def _is_number(v) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)


def _positive_int(name, v):
    if not _is_number(v) or v != int(v) or v < 1:
        raise _fail(name, "a positive integer", v)
    return int(v)


def _real(name, v, ok, expected: str, allow_inf=False):
    if not _is_number(v) or math.isnan(v) or (math.isinf(v) and not allow_inf) or not ok(v):
        raise _fail(name, expected, v)
    return float(v)


def _validate(name: str, v):
    if name in CHOICES:
        if not isinstance(v, str) or v.lower() not in CHOICES[name]:
            raise _fail(name, f"one of {CHOICES[name]}", v)
        return v.lower()
    if name in ("MaxEpochs", "MiniBatchSize", "LearnRateDropPeriod", "ValidationFrequency",
                "VerboseFrequency"):
        return _positive_int(name, v)
    if name == "InitialLearnRate":
        return _real(name, v, lambda x: x > 0, "a finite number > 0")
    if name in ("Momentum", "LearnRateDropFactor"):
        return _real(name, v, lambda x: 0 <= x <= 1, "a number in [0, 1]")
    if name in ("GradientDecayFactor", "SquaredGradientDecayFactor"):
        return _real(name, v, lambda x: 0 <= x < 1, "a number in [0, 1)")
    if name == "Epsilon":
        return _real(name, v, lambda x: x > 0, "a finite number > 0")
    if name == "L2Regularization":
        return _real(name, v, lambda x: x >= 0, "a finite number >= 0")
    if name == "GradientThreshold":
        return _real(name, v, lambda x: x > 0, "a number > 0 (inf: no clipping)", True)
    if name == "Verbose":
        if not isinstance(v, bool | np.bool_) and v not in (0, 1):
            raise _fail(name, "True or False", v)
        return bool(v)
    if name in ("CheckpointPath", "ResumeFrom", "PlotPath"):
        if not isinstance(v, str | os.PathLike):
            raise _fail(name, "a path (str or os.PathLike)", v)
        path = os.fspath(v)
        if name == "CheckpointPath" and path and os.path.exists(path) and \
                not os.path.isdir(path):
            raise _fail(name, "a folder", path)
        if name == "ResumeFrom" and path and not os.path.isfile(path):
            raise _fail(name, "an existing checkpoint file", path)
        return path
    if name == "OutputFcn":
        if v is not None and not callable(v):
            raise _fail(name, "a function info -> stop (bool) or None", v)
        return v
    if name == "ValidationData":
        if v is None:
            return None
        if not isinstance(v, tuple | list) or len(v) != 2:
            raise _fail(name, "a tuple (X, T) of inputs and targets", type(v).__name__)
        return tuple(v)
    raise AssertionError(name)


class TrainingOptions:
    """The options of `trainingOptions` (attributes spelled as in MATLAB). Re-validated on
    assignment: `opts.MaxEpochs = 0` raises."""

    def __init__(self, solver_name: str, options: dict):
        object.__setattr__(self, "SolverName", solver_name)
        self._names = list(SOLVER_DEFAULTS[solver_name]) + list(COMMON_DEFAULTS)
        for k, v in {**SOLVER_DEFAULTS[solver_name], **COMMON_DEFAULTS, **options}.items():
            setattr(self, k, v)

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if name not in self._names:
            raise LgcError(_unknown(self.SolverName, name))
        object.__setattr__(self, name, _validate(name, value))

    def as_dict(self) -> dict:
        return {"SolverName": self.SolverName, **{k: getattr(self, k) for k in self._names}}

    def training_hash(self) -> str:
        """SHA-256 over the options that change the arithmetic of training (checkpoints refuse
        to resume under different ones)."""
        d = self.as_dict()
        shaped = {k: repr(d[k]) for k in OPTIONS_THAT_SHAPE_TRAINING if k in d}
        return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()

    def __repr__(self) -> str:
        rows = []
        for k, v in self.as_dict().items():
            if k == "ValidationData" and v is not None:
                v = f"({_describe(v[0])}, {_describe(v[1])})"
            elif callable(v):
                v = getattr(v, "__name__", "function")
            else:
                v = repr(v)
            rows.append((k, v))
        w = max(len(k) for k, _ in rows)
        return "\n".join([f"TrainingOptions{self.SolverName.upper()} with properties:", ""] +
                         [f"  {k:>{w}}: {v}" for k, v in rows])


def _describe(x) -> str:
    shape = "x".join(str(s) for s in np.shape(x))
    fmt = getattr(x, "fmt", "")
    return f"{shape} {type(x).__name__}" + (f" {fmt}" if fmt else "")


def _unknown(solver: str, name: str) -> str:
    known = sorted(set(SOLVER_DEFAULTS[solver]) | set(COMMON_DEFAULTS))
    other = [s for s, d in SOLVER_DEFAULTS.items() if name in d]
    hint = f" (it is an option of {', '.join(other)})" if other else ""
    return (f"trainingOptions: unknown option {name!r} for solver {solver!r}{hint}; the options "
            f"are {', '.join(known)}")


def trainingOptions(solverName: str, **options) -> TrainingOptions:  # noqa: N802,N803
    """options = trainingOptions(solverName, Name=Value, ...) — MATLAB's training options.

    solverName: "sgdm" (InitialLearnRate 0.01, Momentum 0.9), "adam" (InitialLearnRate 0.001,
    GradientDecayFactor 0.9, SquaredGradientDecayFactor 0.999, Epsilon 1e-8) or "rmsprop"
    (InitialLearnRate 0.001, SquaredGradientDecayFactor 0.9, Epsilon 1e-8). Common options and
    defaults: MaxEpochs 30, MiniBatchSize 128, Shuffle "once" ("never", "every-epoch"),
    LearnRateSchedule "none" ("piecewise": multiply by LearnRateDropFactor 0.1 every
    LearnRateDropPeriod 10 epochs), L2Regularization 1e-4, GradientThreshold inf,
    GradientThresholdMethod "l2norm" ("global-l2norm", "absolute-value"), ValidationData
    (X, T), ValidationFrequency 50 (iterations), Verbose True, VerboseFrequency 50, Plots
    "none" ("training-progress"), CheckpointPath "" (a folder: a checkpoint each epoch),
    ResumeFrom "" (a checkpoint file to continue from; lgc only), PlotPath "" (the PNG of
    Plots="training-progress"; lgc only, default CheckpointPath/training-progress.png or a
    file in the temp folder), OutputFcn None (called with the info of each iteration;
    returning True stops training). Example::

        opts = trainingOptions("adam", MaxEpochs=5, MiniBatchSize=64, Verbose=False)
    """
    if not isinstance(solverName, str) or solverName.lower() not in SOLVER_DEFAULTS:
        raise LgcError(f"trainingOptions: solverName must be one of {sorted(SOLVER_DEFAULTS)}, "
                       f"got {solverName!r}")
    solver = solverName.lower()
    for k in options:
        if k not in SOLVER_DEFAULTS[solver] and k not in COMMON_DEFAULTS:
            raise LgcError(_unknown(solver, k))
    return TrainingOptions(solver, options)
