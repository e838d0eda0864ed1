"""compile_train_step on the CUDA backend: a small MLP (Adam, learn-rate factors) and a tiny
CNN dlnetwork (conv, batch norm, pooling; SGDM) equal the reference backend over a few steps;
parameters and optimizer state stay on the device between steps (host copy on `.params`)."""

from __future__ import annotations

import os

import pytest

if not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.environ.get("LGC_CUDA_TESTS")):
    pytest.skip("CUDA suite: run by tests/test_cuda.py in a simulator subprocess, or with "
                "LGC_CUDA_TESTS=1 on a GPU", allow_module_level=True)

import numpy as np  # noqa: E402

import lgc  # noqa: E402
from conftest import TOLERANCE  # noqa: E402
from lgc.backend.cuda import runtime  # noqa: E402
from lgc.dlnetwork import dlnetwork, forward  # noqa: E402
from lgc.layers import (  # noqa: E402
    batchNormalizationLayer,
    convolution2dLayer,
    fullyConnectedLayer,
    imageInputLayer,
    maxPooling2dLayer,
    reluLayer,
    softmaxLayer,
)
from lgc.train import compile_train_step  # noqa: E402

F32 = TOLERANCE["f32"]


def _on(backend, make_step, batches):
    old = lgc.get_backend()
    lgc.set_backend(backend)
    try:
        step = make_step()
        return step, [step(*b) for b in batches]
    finally:
        lgc.set_backend(old)


def _mlp(seed=0):
    rng = np.random.default_rng(seed)
    params = {"W1": lgc.dlarray(rng.normal(size=(6, 4)).astype(np.float32) * 0.5),
              "b1": lgc.dlarray(np.zeros((6, 1), np.float32)),
              "W2": lgc.dlarray(rng.normal(size=(3, 6)).astype(np.float32) * 0.5),
              "b2": lgc.dlarray(np.zeros((3, 1), np.float32))}

    def batch(n):
        X = lgc.dlarray(rng.normal(size=(4, n)).astype(np.float32), "CB")
        T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 3, n), 0, ClassNames=range(3)), "CB")
        return X, T
    return params, [batch(8), batch(8), batch(5), batch(8)]


def mlp_loss(p, X, T):
    h = lgc.relu(lgc.fullyconnect(X, p["W1"], p["b1"]))
    return lgc.crossentropy(lgc.softmax(lgc.fullyconnect(h, p["W2"], p["b2"])), T)


@pytest.mark.parametrize("solver", ["adam", "rmsprop", "sgdm"])
def test_mlp_train_step_matches_reference(solver):
    params, batches = _mlp()
    make = lambda: compile_train_step(mlp_loss, params, solver, learnRate=0.05)  # noqa: E731
    cuda_step, losses = _on("cuda", make, batches)
    ref_step, ref_losses = _on("reference", make, batches)
    np.testing.assert_allclose(losses, ref_losses, **F32)
    for k in params:
        np.testing.assert_allclose(np.asarray(cuda_step.params[k]),
                                   np.asarray(ref_step.params[k]), **F32)


def test_parameters_stay_on_the_device_between_steps():
    params, batches = _mlp(1)
    old = lgc.get_backend()
    lgc.set_backend("cuda")
    try:
        step = compile_train_step(mlp_loss, params, "adam", learnRate=0.05)
        step(*batches[0])
        theta = step._packed.groups[0].theta
        before = theta.copy()
        mirror = runtime.MIRRORS[id(theta)]
        step(*batches[1])
        step(*batches[2])  # a new batch size: a second executable shares the same mirror
        assert runtime.MIRRORS[id(theta)] is mirror and mirror.dirty
        np.testing.assert_array_equal(theta, before)  # the host copy was not touched
        exes = [c.exe for c in step._programs.values()]
        assert len(exes) == 2
        # inputs uploaded per call: the batch and hyperparameters, never parameters or state
        n_up = [e.transfers["to_device"] for e in exes]
        step(*batches[3])
        assert exes[0].transfers["to_device"] - n_up[0] == len(batches[3]) + 5
        W1 = np.asarray(step.params["W1"])  # reading syncs the host copy
        assert not mirror.dirty and not np.array_equal(theta, before)
        np.testing.assert_array_equal(W1.ravel(), theta[:W1.size])
    finally:
        lgc.set_backend(old)


def test_rollback_and_restore_refresh_the_device_copy():
    params, batches = _mlp(2)
    old = lgc.get_backend()
    lgc.set_backend("cuda")
    try:
        step = compile_train_step(mlp_loss, params, "sgdm", learnRate=0.05, check_finite=True)
        step(*batches[0])
        saved = [b.copy() for b in step.buffers()]
        first = step(*batches[1])
        assert step.rollback()
        np.testing.assert_array_equal(step.buffers()[0], saved[0])
        assert step(*batches[1]) == pytest.approx(first, rel=1e-6)  # same start, same loss
        step.restore(saved, 1)
        assert step(*batches[1]) == pytest.approx(first, rel=1e-6)
    finally:
        lgc.set_backend(old)


def _cnn():
    lgc.rng(0)
    return dlnetwork([imageInputLayer([4, 4, 1], Normalization="none"),
                      convolution2dLayer(3, 2, Padding="same"), batchNormalizationLayer(),
                      reluLayer(), maxPooling2dLayer(2, Stride=2), fullyConnectedLayer(3),
                      softmaxLayer()])


def net_loss(net, X, T):
    Y, state = forward(net, X)
    return lgc.crossentropy(Y, T), state


def test_cnn_network_train_step_matches_reference():
    rng = np.random.default_rng(3)
    X = lgc.dlarray(rng.normal(size=(4, 4, 1, 3)).astype(np.float32), "SSCB")
    T = lgc.dlarray(lgc.onehotencode(rng.integers(0, 3, 3), 0, ClassNames=range(3)), "CB")
    make = lambda: compile_train_step(net_loss, _cnn(), "sgdm", learnRate=0.05)  # noqa: E731
    cuda_step, losses = _on("cuda", make, [(X, T)] * 3)
    ref_step, ref_losses = _on("reference", make, [(X, T)] * 3)
    np.testing.assert_allclose(losses, ref_losses, **F32)
    for a, b in zip(cuda_step.net.Learnables.Value, ref_step.net.Learnables.Value):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **F32)
    for a, b in zip(cuda_step.net.State.Value, ref_step.net.State.Value):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), **F32)
