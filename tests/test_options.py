"""trainingOptions: MATLAB's defaults per solver, validation naming the option, repr."""

import math

import numpy as np
import pytest

import lgc
from lgc import LgcError, trainingOptions


def test_solver_defaults_are_matlabs():
    s = trainingOptions("sgdm")
    assert (s.InitialLearnRate, s.Momentum) == (0.01, 0.9)
    a = trainingOptions("adam")
    assert (a.InitialLearnRate, a.GradientDecayFactor, a.SquaredGradientDecayFactor,
            a.Epsilon) == (0.001, 0.9, 0.999, 1e-8)
    r = trainingOptions("rmsprop")
    assert (r.InitialLearnRate, r.SquaredGradientDecayFactor, r.Epsilon) == (0.001, 0.9, 1e-8)
    assert not hasattr(r, "Momentum") and not hasattr(a, "Momentum")


def test_common_defaults_are_matlabs():
    o = trainingOptions("sgdm")
    assert o.MaxEpochs == 30 and o.MiniBatchSize == 128 and o.Shuffle == "once"
    assert o.LearnRateSchedule == "none" and o.LearnRateDropFactor == 0.1
    assert o.LearnRateDropPeriod == 10 and o.L2Regularization == 1e-4
    assert math.isinf(o.GradientThreshold) and o.GradientThresholdMethod == "l2norm"
    assert o.ValidationData is None and o.ValidationFrequency == 50
    assert o.Verbose is True and o.VerboseFrequency == 50 and o.Plots == "none"
    assert o.CheckpointPath == "" and o.OutputFcn is None and o.SolverName == "sgdm"


def test_values_are_kept_and_case_of_choices_is_normalized():
    o = trainingOptions("ADAM", MaxEpochs=3, Shuffle="Every-Epoch", Plots="training-progress",
                        GradientThreshold=2, GradientThresholdMethod="global-l2norm",
                        ValidationData=(np.zeros((2, 4)), np.zeros(4)))
    assert o.SolverName == "adam" and o.MaxEpochs == 3 and o.Shuffle == "every-epoch"
    assert o.GradientThreshold == 2.0 and o.GradientThresholdMethod == "global-l2norm"
    assert isinstance(o.ValidationData, tuple)


@pytest.mark.parametrize("name, value", [
    ("MaxEpochs", 0), ("MaxEpochs", 2.5), ("MiniBatchSize", -1), ("MiniBatchSize", True),
    ("InitialLearnRate", 0), ("InitialLearnRate", math.nan), ("Momentum", 1.5),
    ("LearnRateDropFactor", -0.1), ("LearnRateDropPeriod", 0), ("L2Regularization", -1e-4),
    ("GradientThreshold", 0), ("GradientThreshold", -math.inf),
    ("GradientThresholdMethod", "l1"), ("Shuffle", "sometimes"), ("LearnRateSchedule", "cos"),
    ("Plots", "yes"), ("Verbose", "loud"), ("ValidationFrequency", 0),
    ("VerboseFrequency", 0.5), ("ValidationData", np.zeros(3)), ("OutputFcn", 3),
    ("CheckpointPath", 7),
])
def test_bad_values_name_the_option(name, value):
    with pytest.raises(LgcError, match=f"trainingOptions: {name} must be"):
        trainingOptions("sgdm", **{name: value})


@pytest.mark.parametrize("solver, name, value", [
    ("adam", "GradientDecayFactor", 1.0), ("adam", "SquaredGradientDecayFactor", -0.5),
    ("rmsprop", "Epsilon", 0), ("adam", "Epsilon", math.inf)])
def test_bad_solver_values(solver, name, value):
    with pytest.raises(LgcError, match=name):
        trainingOptions(solver, **{name: value})


def test_unknown_option_and_option_of_another_solver():
    with pytest.raises(LgcError, match="unknown option 'MaxEpoch'"):
        trainingOptions("adam", MaxEpoch=3)
    with pytest.raises(LgcError, match="option of sgdm"):
        trainingOptions("adam", Momentum=0.5)
    with pytest.raises(LgcError, match="solverName must be one of"):
        trainingOptions("lbfgs")


def test_assignment_is_validated():
    o = trainingOptions("sgdm")
    o.MaxEpochs = 4
    assert o.MaxEpochs == 4
    with pytest.raises(LgcError, match="MaxEpochs"):
        o.MaxEpochs = 0
    with pytest.raises(LgcError, match="unknown option"):
        o.Nonsense = 1


def test_checkpoint_path_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LgcError, match="CheckpointPath must be a folder"):
        trainingOptions("sgdm", CheckpointPath=f)
    with pytest.raises(LgcError, match="ResumeFrom must be an existing checkpoint"):
        trainingOptions("sgdm", ResumeFrom=tmp_path / "missing")


def test_repr_lists_every_option():
    o = trainingOptions("adam", MaxEpochs=5, ValidationData=(lgc.dlarray(np.zeros((3, 4)), "CB"),
                                                             np.zeros(4)))
    text = repr(o)
    assert text.startswith("TrainingOptionsADAM with properties:")
    for name in ("InitialLearnRate", "MaxEpochs: 5", "GradientDecayFactor", "Shuffle: 'once'",
                 "ValidationData: (3x4 DLArray CB, 4 ndarray)"):
        assert name in text


def test_training_hash_ignores_display_and_epochs():
    a = trainingOptions("adam", MaxEpochs=3, Verbose=False)
    b = trainingOptions("adam", MaxEpochs=9, Verbose=True, Plots="training-progress")
    c = trainingOptions("adam", MaxEpochs=3, InitialLearnRate=0.01)
    assert a.training_hash() == b.training_hash() != c.training_hash()
