"""Recurrent, embedding and function layers, learn-rate/L2 factors, and layers traced inside
dlfeval: the forward equals the eager one and gradients flow (shapes and state per API.md §5)."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from layer_helpers import close, image, rng, run, seq, type_of
from lgc import (
    FormatError,
    ShapeError,
    dlarray,
    dlfeval,
    dlgradient,
    embed,
    extractdata,
    gru,
    lstm,
    sigmoid,
    tanh,
)
from lgc import layers as ly
from lgc.ir.types import TensorType

# --- recurrent --------------------------------------------------------------------------------


def test_lstm_shapes_state_and_forward_equal_lstm():
    x = seq(c=3, n=2, t=4)
    layer = ly.lstmLayer(5)
    (y,), p, s, new = run(layer, x)
    assert {k: v.shape for k, v in p.items()} == {
        "InputWeights": (20, 3), "RecurrentWeights": (20, 5), "Bias": (20, 1)}
    assert s["HiddenState"].shape == (5, 1) and np.all(s["CellState"] == 0)
    np.testing.assert_array_equal(p["Bias"].ravel(), np.repeat([0, 1, 0, 0], 5))  # forget gate
    r = p["RecurrentWeights"].astype(np.float64)
    np.testing.assert_allclose(r.T @ r, np.eye(5), atol=1e-5)  # orthogonal
    ry, rh, rc = lstm(x, s["HiddenState"], s["CellState"], p["InputWeights"],
                      p["RecurrentWeights"], p["Bias"])
    assert y.fmt == "CBT" and y.shape == (5, 2, 4)
    close(y, ry)
    assert new["HiddenState"].shape == (5, 2) and new["CellState"].shape == (5, 2)
    close(new["HiddenState"], rh)
    close(new["CellState"], rc)
    # the returned state is the next call's initial state
    (y2,), _ = layer.forward([x], p, new, True)
    close(y2, lstm(x, rh, rc, p["InputWeights"], p["RecurrentWeights"], p["Bias"])[0])
    (last,), *_ = run(ly.lstmLayer(5, OutputMode="last"), x)
    assert last.fmt == "CB"
    close(last, rh)


def test_lstm_user_state_and_errors():
    h0 = np.arange(4.0)
    layer = ly.lstmLayer(4, HiddenState=h0, CellState=np.ones(4), Name="lstm1")
    _, s = layer.initialize([type_of(seq())], rng())
    np.testing.assert_array_equal(s["HiddenState"].ravel(), h0)
    assert s["CellState"].shape == (4, 1)
    bad = ly.lstmLayer(4, InputWeights=np.zeros((16, 5)), Name="lstm1")
    with pytest.raises(ShapeError, match=r"^lstm1 \(LSTM\): InputWeights \(16, 5\) expect 5 input "
                                         r"features but the input \(CBT \(3, 1, 1\)\) has 3"):
        bad.initialize([TensorType("f32", (3, 1, 1), "CBT")], rng())
    with pytest.raises(ShapeError, match=r"lstmLayer: RecurrentWeights must be \(16, 4\)"):
        ly.lstmLayer(4, RecurrentWeights=np.zeros((16, 3)))
    with pytest.raises(ShapeError, match="lstmLayer: OutputMode must be"):
        ly.lstmLayer(4, OutputMode="all")


def test_gru_shapes_and_forward_equal_gru():
    x = seq(c=3, n=2, t=3)
    (y,), p, s, new = run(ly.gruLayer(4), x)
    assert {k: v.shape for k, v in p.items()} == {
        "InputWeights": (12, 3), "RecurrentWeights": (12, 4), "Bias": (12, 1)}
    assert set(s) == {"HiddenState"} and s["HiddenState"].shape == (4, 1)
    assert np.all(p["Bias"] == 0)
    ry, rh = gru(x, s["HiddenState"], p["InputWeights"], p["RecurrentWeights"], p["Bias"])
    close(y, ry)
    close(new["HiddenState"], rh)
    layer = ly.gruLayer(4, ResetGateMode="recurrent-bias-after-multiplication", OutputMode="last",
                       BiasInitializer="narrow-normal")
    (y,), p, s, _ = run(layer, x)
    assert p["Bias"].shape == (24, 1) and y.fmt == "CB"
    close(y, gru(x, s["HiddenState"], p["InputWeights"], p["RecurrentWeights"], p["Bias"],
                 ResetGateMode="recurrent-bias-after-multiplication")[1])


def test_embedding_layer():
    idx = dlarray(np.array([[[0, 3, 9]], [[2, 2, 1]]], np.float32).transpose(1, 0, 2), "CBT")
    layer = ly.embeddingLayer(4, 10)
    (y,), p, *_ = run(layer, idx)
    assert p["Weights"].shape == (4, 10) and y.fmt == "CBT" and y.shape == (4, 2, 3)
    assert p["Weights"].std() < 0.05  # narrow-normal
    close(y, embed(idx, p["Weights"]))
    with pytest.raises(ShapeError, match=r"^emb \(Embedding\): embed: indices must be in"):
        ly.embeddingLayer(4, 10, Name="emb").forward([idx + 1.0], p, {}, True)


# --- function layer ---------------------------------------------------------------------------


def test_function_layer_formattable_and_not():
    x = image()
    swish = ly.functionLayer(lambda v: v * sigmoid(v))
    (y,), *_ = run(swish, x)
    close(y, extractdata(x) / (1 + np.exp(-extractdata(x))))
    seen = []
    plain = ly.functionLayer(lambda v: seen.append(v.fmt) or v * 2.0, Formattable=False)
    (y,), *_ = run(plain, x)
    assert seen == [""] and y.fmt == "SSCB"
    close(y, 2 * extractdata(x))
    two = ly.functionLayer(lambda a, b: (a + b, a - b), NumInputs=2, NumOutputs=2)
    (s, d), *_ = run(two, x, x)
    close(s, 2 * extractdata(x))
    close(d, np.zeros(x.shape))
    bad = ly.functionLayer(lambda v: np.asarray(v), Name="f")
    with pytest.raises(FormatError, match=r"^f \(Function\): the function returned an "
                                          r"unformatted array"):
        run(bad, x)
    wrong = ly.functionLayer(lambda v: v, NumOutputs=2, Name="f")
    with pytest.raises(ShapeError, match=r"^f \(Function\): the function returned 1 outputs"):
        run(wrong, x)


# --- factors ----------------------------------------------------------------------------------


def test_learn_rate_and_l2_factors():
    conv = ly.convolution2dLayer(3, 4, WeightLearnRateFactor=2, BiasL2Factor=0.5)
    assert conv.learn_rate_factor("Weights") == 2 and conv.learn_rate_factor("Bias") == 1
    assert conv.l2_factor("Weights") == 1 and conv.l2_factor("Bias") == 0.5
    fc = ly.fullyConnectedLayer(3)
    assert fc.l2_factor("Bias") == 0 and fc.learn_rate_factor("Weights") == 1
    bn = ly.batchNormalizationLayer(ScaleLearnRateFactor=0, OffsetL2Factor=3)
    assert bn.learn_rate_factor("Scale") == 0 and bn.l2_factor("Offset") == 3
    assert bn.l2_factor("Scale") == 1
    rnn = ly.lstmLayer(3, RecurrentWeightsL2Factor=0.1, InputWeightsLearnRateFactor=4)
    assert rnn.l2_factor("RecurrentWeights") == pytest.approx(0.1)
    assert rnn.learn_rate_factor("InputWeights") == 4 and rnn.l2_factor("Bias") == 0
    emb = ly.embeddingLayer(3, 5, WeightL2Factor=2)
    assert emb.l2_factor("Weights") == 2
    with pytest.raises(ShapeError, match="fullyConnectedLayer: WeightL2Factor must be a "
                                         "non-negative"):
        ly.fullyConnectedLayer(3, WeightL2Factor=-1)


# --- tracing ----------------------------------------------------------------------------------


def _chain(layers, params, states, x, training):
    new_states = []
    for layer, p, s in zip(layers, params, states):
        (x,), ns = layer.forward([x], p, s, training)
        new_states.append(ns)
    return x, new_states


def test_layers_trace_inside_dlfeval_with_gradients():
    x = image(6, 6, 2, n=3)
    layers = [ly.convolution2dLayer(3, 4, Padding="same"), ly.batchNormalizationLayer(),
              ly.reluLayer(), ly.maxPooling2dLayer(2, Stride=2), ly.fullyConnectedLayer(3),
              ly.softmaxLayer()]
    t, params, states = type_of(x), [], []
    for layer in layers:
        p, s = layer.initialize([t], rng(len(params)))
        params.append(p)
        states.append(s)
        (y,), _ = layer.forward([dlarray(np.zeros(t.shape, np.float32), t.fmt)], p, s, False)
        t = type_of(y)

    def loss_fn(params, x):
        y, new_states = _chain(layers, params, states, x, True)
        loss = lgc.sum(y * y)
        return loss, dlgradient(loss, params), new_states

    loss, grads, new_states = dlfeval(loss_fn, params, x)
    eager, eager_states = _chain(layers, params, states, x, True)
    np.testing.assert_allclose(float(extractdata(loss)),
                               float(np.sum(extractdata(eager) ** 2)), rtol=1e-5)
    assert grads[0]["Weights"].shape == (3, 3, 2, 4) and grads[1]["Scale"].shape == (1, 1, 4)
    assert np.any(extractdata(grads[4]["Weights"]) != 0)
    close(new_states[1]["TrainedMean"], eager_states[1]["TrainedMean"])


def test_lstm_traces_inside_dlfeval():
    x = seq(c=3, n=2, t=3)
    layer = ly.lstmLayer(4, OutputMode="last")
    p, s = layer.initialize([type_of(x)], rng())

    def f(p, x):
        (y,), ns = layer.forward([x], p, s, True)
        loss = lgc.sum(y)
        return loss, dlgradient(loss, p["RecurrentWeights"]), ns

    loss, g, ns = dlfeval(f, p, x)
    (y,), ens = layer.forward([x], p, s, True)
    np.testing.assert_allclose(float(extractdata(loss)), float(np.sum(extractdata(y))),
                               rtol=1e-5)
    assert g.shape == (16, 4)
    close(ns["HiddenState"], ens["HiddenState"])


TRACED_CASES = [
    ("conv", lambda: ly.convolution2dLayer(2, 3, Stride=2, Padding=1), [image()]),
    ("transposed-conv", lambda: ly.transposedConv2dLayer(2, 2, Stride=2), [image()]),
    ("fc", lambda: ly.fullyConnectedLayer(4), [image()]),
    ("batchnorm", lambda: ly.batchNormalizationLayer(), [image()]),
    ("groupnorm", lambda: ly.groupNormalizationLayer("all-channels"), [image()]),
    ("layernorm", lambda: ly.layerNormalizationLayer(), [seq()]),
    ("crossnorm", lambda: ly.crossChannelNormalizationLayer(2), [image()]),
    ("leakyrelu", lambda: ly.leakyReluLayer(), [image()]),
    ("avgpool", lambda: ly.averagePooling2dLayer(2), [image()]),
    ("gapool", lambda: ly.globalAveragePooling2dLayer(), [image()]),
    ("addition", lambda: ly.additionLayer(2), [image(seed=1), image(seed=2)]),
    ("concat", lambda: ly.concatenationLayer(0, 2), [image(seed=1), image(seed=2)]),
    ("flatten", lambda: ly.flattenLayer(), [image()]),
    ("gru", lambda: ly.gruLayer(3), [seq()]),
    ("embedding", lambda: ly.embeddingLayer(3, 5),
     [dlarray(np.array([[[0, 4], [1, 2]]], np.float32), "CBT")]),
    ("imageinput", lambda: ly.imageInputLayer([5, 4, 3], Mean=np.ones(3)), [image()]),
    ("function", lambda: ly.functionLayer(lambda a: tanh(a) * 2.0), [image()]),
]


@pytest.mark.parametrize("make, xs", [pytest.param(m, x, id=i) for i, m, x in TRACED_CASES])
def test_forward_traced_in_dlfeval_equals_eager(make, xs):
    layer = make()
    params, state = layer.initialize([type_of(x) for x in xs], rng())

    def f(params, state, *xs):
        outs, new_state = layer.forward(list(xs), params, state, True)
        loss = lgc.sum(outs[0] * outs[0])
        grads = dlgradient(loss, params) if params else {}
        return outs[0], new_state, grads

    y, new_state, grads = dlfeval(f, params, state, *xs)
    (ey,), e_state = layer.forward(list(xs), params, state, True)
    assert y.fmt == ey.fmt
    close(y, ey)
    assert set(new_state) == set(e_state)
    for k in new_state:
        close(new_state[k], e_state[k])
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in params.items()}


def test_lstm_state_from_another_batch_size_is_an_error_naming_the_layer():
    layer = ly.lstmLayer(4, Name="lstm1")
    (y,), p, s, new = run(layer, seq(n=3))
    with pytest.raises(ShapeError, match=r"^lstm1 \(LSTM\): lstm: H0 must have 4 elements or "
                                         r"size \(4, 2\)"):
        layer.forward([seq(n=2)], p, new, True)


def test_dropout_traced_in_dlfeval_draws_a_mask():
    layer = ly.dropoutLayer(0.5)
    x = dlarray(np.ones((40, 30), np.float32), "CB")
    y = dlfeval(lambda x: layer.forward([x], {}, {}, True)[0][0], x)
    v = extractdata(y)
    assert set(np.unique(v)) == {0.0, 2.0}
    yp = dlfeval(lambda x: layer.forward([x], {}, {}, False)[0][0], x)
    close(yp, x)
