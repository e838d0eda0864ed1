"""compile_train_step: one compiled call per step that agrees with the dlfeval + update loop."""

import numpy as np
import pytest

import lgc
from lgc import LgcError
from lgc.dlnetwork import dlnetwork, forward
from lgc.layers import (
    batchNormalizationLayer,
    convolution2dLayer,
    fullyConnectedLayer,
    imageInputLayer,
    reluLayer,
    softmaxLayer,
)
from lgc.train import compile_train_step


def _mlp_problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W1": lgc.dlarray(rng.normal(size=(8, 5)).astype(np.float32) * 0.5),
              "b1": lgc.dlarray(np.zeros((8, 1), np.float32)),
              "W2": lgc.dlarray(rng.normal(size=(3, 8)).astype(np.float32) * 0.5),
              "b2": lgc.dlarray(np.zeros((3, 1), np.float32))}
    X = lgc.dlarray(rng.normal(size=(5, 16)).astype(np.float32), "CB")
    T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 3, 16), 0, ClassNames=range(3)), "CB")
    return params, X, T


def mlp_loss(p, X, T):
    h = lgc.relu(lgc.fullyconnect(X, p["W1"], p["b1"]))
    return lgc.crossentropy(lgc.softmax(lgc.fullyconnect(h, p["W2"], p["b2"])), T)


def _reference_loop(solver, params, X, T, steps, **opts):
    def model_loss(p, X, T):
        loss = mlp_loss(p, X, T)
        return loss, lgc.dlgradient(loss, p)

    losses, state = [], [None, None]
    for it in range(1, steps + 1):
        loss, g = lgc.dlfeval(model_loss, params, X, T)
        losses.append(float(loss))
        if solver == "adam":
            params, state[0], state[1] = lgc.adamupdate(params, g, state[0], state[1], it,
                                                        opts["learnRate"])
        elif solver == "sgdm":
            params, state[0] = lgc.sgdmupdate(params, g, state[0], opts["learnRate"])
        else:
            params, state[0] = lgc.rmspropupdate(params, g, state[0], opts["learnRate"])
    return losses, params


@pytest.mark.parametrize("solver", ["adam", "sgdm", "rmsprop"])
def test_train_step_agrees_with_dlfeval_and_update_loop(backend, solver):
    params, X, T = _mlp_problem()
    step = compile_train_step(mlp_loss, params, solver, learnRate=0.05)
    losses = [step(X, T) for _ in range(6)]
    ref_losses, ref_params = _reference_loop(solver, params, X, T, 6, learnRate=0.05)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(np.asarray(step.params[k]), np.asarray(ref_params[k]),
                                   rtol=1e-4, atol=1e-6)
    assert step.iteration == 6
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backend", ["numba"], indirect=True)
def test_parameter_and_state_buffers_are_pinned_so_their_calls_are_built_once(backend):
    """On the Numba backend a train step fixes its parameter views, flat buffers, optimizer
    state and hyperparameters (0-d arrays written in place) to its executable: the steps on
    them are built once (fewer calls than steps; the update's call prepared), and the update
    still lands in the step's own buffers."""
    params, X, T = _mlp_problem()
    step = compile_train_step(mlp_loss, params, "adam", learnRate=0.05)
    step(X, T)
    (compiled,) = step._programs.values()
    exe, packed = compiled.exe, step._packed
    fixed = [*packed.param_views, *(g.theta for g in packed.groups),
             *(s for g in packed.groups for s in g.state), *step._hyper_arrays]
    assert all(exe._pinned[k] is a for k, a in enumerate(fixed))
    assert exe.stats["steps_per_call"] < len(exe._steps)
    assert [c is not None for s, c in exe._bound if s.node.op.name == "adam_update"] == [True]
    before = packed.groups[0].theta.copy()
    step(X, T)
    assert not np.array_equal(packed.groups[0].theta, before)


def test_learn_rate_is_settable_without_retracing():
    params, X, T = _mlp_problem()
    step = compile_train_step(mlp_loss, params, "sgdm", learnRate=0.1)
    step(X, T)
    before = np.asarray(step.params["W1"]).copy()
    step.learn_rate = 0.0
    step(X, T)  # momentum still moves the parameters...
    step._packed.groups[0].state[0][...] = 0  # ...so clear the velocity and check lr = 0
    after = np.asarray(step.params["W1"]).copy()
    step(X, T)
    np.testing.assert_array_equal(np.asarray(step.params["W1"]), after)
    assert not np.array_equal(before, after)
    assert len(step._programs) == 1


def test_aux_outputs_are_returned():
    params, X, T = _mlp_problem()

    def loss_with_aux(p, X, T):
        loss = mlp_loss(p, X, T)
        return loss, lgc.sum(p["W1"] * p["W1"])

    step = compile_train_step(loss_with_aux, params, "adam")
    loss, norm = step(X, T)
    assert isinstance(loss, float)
    np.testing.assert_allclose(float(norm), np.sum(np.asarray(params["W1"]) ** 2), rtol=1e-5)


def test_user_parameters_are_not_modified():
    params, X, T = _mlp_problem()
    before = np.asarray(params["W2"]).copy()
    step = compile_train_step(mlp_loss, params, "adam", learnRate=0.1)
    step(X, T)
    np.testing.assert_array_equal(np.asarray(params["W2"]), before)


def _cnn():
    lgc.rng(0)
    layers = [imageInputLayer([6, 6, 1], Normalization="none"),
              convolution2dLayer(3, 4, Padding="same"), batchNormalizationLayer(), reluLayer(),
              fullyConnectedLayer(3), softmaxLayer()]
    return dlnetwork(layers)


def net_loss(net, X, T):
    Y, state = forward(net, X)
    return lgc.crossentropy(Y, T), state


def test_network_state_is_carried_and_matches_the_manual_loop(backend):
    net = _cnn()
    rng = np.random.default_rng(1)
    X = lgc.dlarray(rng.normal(size=(6, 6, 1, 8)).astype(np.float32), "SSCB")
    T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 3, 8), 0, ClassNames=range(3)), "CB")
    step = compile_train_step(net_loss, net, "sgdm", learnRate=0.05)
    losses = [step(X, T) for _ in range(3)]

    def model_loss(net, X, T):
        loss, state = net_loss(net, X, T)
        return loss, lgc.dlgradient(loss, net.Learnables), state

    ref, vel = net, None
    ref_losses = []
    for _ in range(3):
        loss, g, state = lgc.dlfeval(model_loss, ref, X, T)
        ref.State = state
        ref, vel = lgc.sgdmupdate(ref, g, vel, 0.05)
        ref_losses.append(float(loss))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    trained = step.net
    mean = trained.State["batchnorm_1", "TrainedMean"]
    np.testing.assert_allclose(np.asarray(mean), np.asarray(ref.State["batchnorm_1",
                                                                      "TrainedMean"]),
                               rtol=1e-5, atol=1e-7)
    assert np.any(np.asarray(mean) != 0)
    for a, b in zip(trained.Learnables.Value, ref.Learnables.Value):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [({"solver": "lbfgs"}, "solver"),
                                           ({"solver": "sgdm", "gradDecay": 0.9}, "unknown")])
def test_bad_solver_or_option(kwargs, match):
    params, _, _ = _mlp_problem()
    with pytest.raises(LgcError, match=match):
        compile_train_step(mlp_loss, params, **kwargs)


def test_non_finite_loss_stops_with_the_iteration():
    params, X, T = _mlp_problem()
    step = compile_train_step(lambda p, X, T: lgc.sum(lgc.log(p["b1"] * 0.0)), params)
    with pytest.raises(LgcError, match="iteration 1"):
        step(X, T)
