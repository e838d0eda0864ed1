"""lstm, gru and embed against NumPy versions of their recurrences, MATLAB's conventions pinned
by hand-computed cases (GRU's reset-gate placement, 0-based embed), gradients against finite
differences, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest

import lgc
from lgc import FormatError, ShapeError, dlarray, dlfeval, dlgradient
from lgc.recurrent import embed, gru, lstm
from test_norm import fd_check

RESET_MODES = ["after-multiplication", "before-multiplication",
               "recurrent-bias-after-multiplication"]


def sig(z):
    return 1 / (1 + np.exp(-z))


def hard_sig(z):
    return np.clip(0.2 * z + 0.5, 0, 1)


STATE = {"tanh": np.tanh, "softsign": lambda z: z / (1 + np.abs(z)),
         "relu": lambda z: np.maximum(z, 0)}
GATE = {"sigmoid": sig, "hard-sigmoid": hard_sig}


def np_lstm(x, h, c, W, R, b, state="tanh", gate="sigmoid"):
    """x (F, N, T) -> Y (H, N, T), h, c."""
    H = R.shape[1]
    sa, ga = STATE[state], GATE[gate]
    ys = []
    for t in range(x.shape[2]):
        z = W @ x[:, :, t] + R @ h + b.reshape(-1, 1)
        i, f, g, o = ga(z[:H]), ga(z[H:2 * H]), sa(z[2 * H:3 * H]), ga(z[3 * H:])
        c = f * c + i * g
        h = o * sa(c)
        ys.append(h)
    return np.stack(ys, axis=2), h, c


def np_gru(x, h, W, R, b, mode="after-multiplication", state="tanh", gate="sigmoid"):
    H = R.shape[1]
    sa, ga = STATE[state], GATE[gate]
    b = b.reshape(-1, 1)
    bw, br = (b[:3 * H], b[3 * H:]) if len(b) == 6 * H else (b, np.zeros((3 * H, 1)))
    ys = []
    for t in range(x.shape[2]):
        xw = W @ x[:, :, t] + bw
        r = ga(xw[:H] + R[:H] @ h + br[:H])
        z = ga(xw[H:2 * H] + R[H:2 * H] @ h + br[H:2 * H])
        if mode == "before-multiplication":
            cand = sa(xw[2 * H:] + R[2 * H:] @ (r * h))
        else:
            cand = sa(xw[2 * H:] + r * (R[2 * H:] @ h + br[2 * H:]))
        h = (1 - z) * cand + z * h
        ys.append(h)
    return np.stack(ys, axis=2), h


def _params(rng, gates, F, H, N, bias_rows=None):
    W = rng.normal(size=(gates * H, F)) * 0.7
    R = rng.normal(size=(gates * H, H)) * 0.7
    b = rng.normal(size=(bias_rows or gates * H, 1)) * 0.5
    h0 = rng.normal(size=(H, N)) * 0.5
    return W, R, b, h0


# --- lstm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("state,gate", [("tanh", "sigmoid"), ("softsign", "hard-sigmoid"),
                                        ("relu", "sigmoid")])
def test_lstm_matches_numpy(state, gate):
    rng = np.random.default_rng(0)
    F, H, N, T = 3, 2, 4, 5
    x = rng.normal(size=(F, N, T))
    W, R, b, h0 = _params(rng, 4, F, H, N)
    c0 = rng.normal(size=(H, N))
    Y, Hn, Cn = lstm(dlarray(x, "CBT"), h0, c0, W, R, b, StateActivationFunction=state,
                     GateActivationFunction=gate)
    y_ref, h_ref, c_ref = np_lstm(x, h0, c0, W, R, b, state, gate)
    assert Y.fmt == "CBT" and Y.shape == (H, N, T)
    assert Hn.fmt == "CB" and Cn.fmt == "CB" and Hn.shape == (H, N)
    np.testing.assert_allclose(np.asarray(Y), y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Hn), h_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Cn), c_ref, rtol=1e-12, atol=1e-14)


def test_lstm_gate_order_is_i_f_g_o():
    # one unit, zero input: z = bias. i = σ(0) = 0.5, f = σ(-50) ≈ 0, g = tanh(1), o = σ(50) ≈ 1
    b = np.array([0.0, -50.0, 1.0, 50.0])
    zero = np.zeros((4, 1))
    _, h, c = lstm(dlarray(np.zeros((1, 1)), "CB"), 0.0, 3.0, zero, zero, b)
    np.testing.assert_allclose(np.asarray(c), [[0.5 * np.tanh(1.0)]], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(h), np.tanh(np.asarray(c)), rtol=1e-12)


def test_lstm_flattens_s_into_features_and_drops_s_from_the_format():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 2, 4))  # SCBT: S=2, C=3 -> 6 features, first S fastest
    W, R, b, _ = _params(rng, 4, 6, 2, 2)
    Y, _, _ = lstm(dlarray(x, "SCBT"), np.zeros(2), np.zeros(2), W, R, b)
    assert Y.fmt == "CBT" and Y.shape == (2, 2, 4)
    flat = np.transpose(x, (1, 0, 2, 3)).reshape(6, 2, 4)  # MATLAB (column-major) order
    y_ref, _, _ = np_lstm(flat, np.zeros((2, 1)), np.zeros((2, 1)), W, R, b)
    np.testing.assert_allclose(np.asarray(Y), y_ref, rtol=1e-12)


def test_lstm_single_step_and_shared_initial_state():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 4))
    W, R, b, _ = _params(rng, 4, 3, 2, 4)
    h0, c0 = rng.normal(size=2), rng.normal(size=(2, 1))
    Y, Hn, Cn = lstm(dlarray(x, "CB"), h0, c0, W, R, b)
    y_ref, h_ref, c_ref = np_lstm(x[:, :, None], h0[:, None], c0, W, R, b)
    assert Y.fmt == "CB" and Y.shape == (2, 4) and Cn.shape == (2, 4)
    np.testing.assert_allclose(np.asarray(Y), y_ref[:, :, 0], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(Cn), c_ref, rtol=1e-12)


def test_lstm_dataformat_returns_the_callers_layout():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 2, 3))  # T, B, C
    W, R, b, _ = _params(rng, 4, 3, 2, 2)
    Y, Hn, _ = lstm(x, np.zeros(2), np.zeros(2), W, R, b, DataFormat="TBC")
    assert Y.fmt == "" and Y.shape == (5, 2, 2) and Hn.fmt == "" and Hn.shape == (2, 2)
    y_ref, _, _ = np_lstm(np.transpose(x, (2, 1, 0)), np.zeros((2, 1)), np.zeros((2, 1)),
                          W, R, b)
    np.testing.assert_allclose(np.asarray(Y), np.transpose(y_ref, (2, 1, 0)), rtol=1e-12)


def test_lstm_gradients_match_finite_differences():
    rng = np.random.default_rng(4)
    F, H, N, T = 2, 2, 2, 3
    x = dlarray(rng.normal(size=(F, N, T)), "CBT")
    W, R, b, h0 = _params(rng, 4, F, H, N)
    c0 = rng.normal(size=(H, N))
    u, v = rng.normal(size=(H, N, T)), rng.normal(size=(H, N))

    def loss(x, h0, c0, W, R, b):
        Y, Hn, Cn = lstm(x, h0, c0, W, R, b, StateActivationFunction="softsign")
        return lgc.sum(Y * u) + lgc.sum(Cn * v)

    fd_check(loss, [x, h0, c0, W, R, b], [0, 1, 2, 3, 4, 5])


def test_lstm_errors():
    x = dlarray(np.ones((3, 2, 4)), "CBT")
    W, R, b = np.ones((8, 3)), np.ones((8, 2)), np.ones(8)
    with pytest.raises(ShapeError, match=r"lstm: weights must be a 2-D array of size \(8, 3\)"):
        lstm(x, np.zeros(2), np.zeros(2), np.ones((8, 4)), R, b)
    with pytest.raises(ShapeError, match=r"lstm: recurrentWeights must be \(4H, H\)"):
        lstm(x, np.zeros(2), np.zeros(2), W, np.ones((6, 2)), b)
    with pytest.raises(ShapeError, match="lstm: bias must have 8 elements"):
        lstm(x, np.zeros(2), np.zeros(2), W, R, np.ones(6))
    with pytest.raises(ShapeError, match="lstm: H0 must have 2 elements"):
        lstm(x, np.zeros(3), np.zeros(2), W, R, b)
    with pytest.raises(ShapeError, match="StateActivationFunction"):
        lstm(x, np.zeros(2), np.zeros(2), W, R, b, StateActivationFunction="sigmoid")
    with pytest.raises(ShapeError, match="GateActivationFunction"):
        lstm(x, np.zeros(2), np.zeros(2), W, R, b, GateActivationFunction="tanh")
    with pytest.raises(FormatError, match="lstm: X must have a C dimension"):
        lstm(dlarray(np.ones((2, 4)), "BT"), np.zeros(2), np.zeros(2), W, R, b)


# --- gru --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", RESET_MODES)
@pytest.mark.parametrize("state,gate", [("tanh", "sigmoid"), ("softsign", "hard-sigmoid")])
def test_gru_matches_numpy(mode, state, gate):
    rng = np.random.default_rng(5)
    F, H, N, T = 3, 2, 3, 4
    x = rng.normal(size=(F, N, T))
    W, R, b, h0 = _params(rng, 3, F, H, N, 6 * H if mode.startswith("recurrent") else None)
    Y, Hn = gru(dlarray(x, "CBT"), h0, W, R, b, ResetGateMode=mode,
                StateActivationFunction=state, GateActivationFunction=gate)
    y_ref, h_ref = np_gru(x, h0, W, R, b, mode, state, gate)
    assert Y.fmt == "CBT" and Hn.fmt == "CB"
    np.testing.assert_allclose(np.asarray(Y), y_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Hn), h_ref, rtol=1e-12, atol=1e-14)


def test_gru_reset_gate_placement_hand_computed():
    # r = [1, 0] and z = 0 (saturated biases), no input, R_h swaps the two units, h0 = [1, 2]
    big = 50.0
    W = np.zeros((6, 1))
    R = np.zeros((6, 2))
    R[4:6] = [[0.0, 1.0], [1.0, 0.0]]
    b = np.array([big, -big, -big, -big, 0.0, 0.0])
    x, h0 = dlarray(np.zeros((1, 1)), "CB"), np.array([1.0, 2.0])
    # default "after-multiplication": h̃ = tanh(r ⊙ (R_h h)) = tanh([1·2, 0·1])
    _, h = gru(x, h0, W, R, b)
    np.testing.assert_allclose(np.asarray(h).ravel(), [np.tanh(2.0), 0.0], atol=1e-15)
    # "before-multiplication": h̃ = tanh(R_h (r ⊙ h)) = tanh(R_h [1, 0]) = tanh([0, 1])
    _, h = gru(x, h0, W, R, b, ResetGateMode="before-multiplication")
    np.testing.assert_allclose(np.asarray(h).ravel(), [0.0, np.tanh(1.0)], atol=1e-15)
    # recurrent bias inside the reset product: h̃ = tanh(r ⊙ (R_h h + b_rh))
    b6 = np.concatenate([b, [0.0, 0.0, 0.0, 0.0, 0.5, 0.5]])
    _, h = gru(x, h0, W, R, b6, ResetGateMode="recurrent-bias-after-multiplication")
    np.testing.assert_allclose(np.asarray(h).ravel(), [np.tanh(2.5), 0.0], atol=1e-15)


def test_gru_update_gate_keeps_the_previous_state():
    # z = 1 (saturated): h = (1 − z)⊙h̃ + z⊙h_prev = h_prev
    b = np.array([0.0, 50.0, 0.3])
    _, h = gru(dlarray(np.ones((1, 2)), "CB"), np.array([0.7]), np.ones((3, 1)),
               np.ones((3, 1)), b)
    np.testing.assert_allclose(np.asarray(h), [[0.7, 0.7]], atol=1e-15)


@pytest.mark.parametrize("mode", RESET_MODES)
def test_gru_gradients_match_finite_differences(mode):
    rng = np.random.default_rng(6)
    F, H, N, T = 2, 2, 2, 3
    x = dlarray(rng.normal(size=(F, N, T)), "CBT")
    W, R, b, h0 = _params(rng, 3, F, H, N, 6 * H if mode.startswith("recurrent") else None)
    u, v = rng.normal(size=(H, N, T)), rng.normal(size=(H, N))

    def loss(x, h0, W, R, b):
        Y, Hn = gru(x, h0, W, R, b, ResetGateMode=mode)
        return lgc.sum(Y * u) + lgc.sum(Hn * v)

    fd_check(loss, [x, h0, W, R, b], [0, 1, 2, 3, 4])


def test_gru_errors():
    x = dlarray(np.ones((3, 2, 4)), "CBT")
    W, R, b = np.ones((6, 3)), np.ones((6, 2)), np.ones(6)
    with pytest.raises(ShapeError, match="gru: ResetGateMode must be one of"):
        gru(x, np.zeros(2), W, R, b, ResetGateMode="after")
    with pytest.raises(ShapeError, match="gru: bias must have 12 elements"):
        gru(x, np.zeros(2), W, R, b, ResetGateMode="recurrent-bias-after-multiplication")
    with pytest.raises(ShapeError, match="gru: weights must be a 2-D array"):
        gru(x, np.zeros(2), np.ones((6, 3, 1)), R, b)
    with pytest.raises(ShapeError, match=r"gru: recurrentWeights must be \(3H, H\)"):
        gru(x, np.zeros(2), W, np.ones((8, 2)), b)


# --- embed ------------------------------------------------------------------------------------


def test_embed_indices_are_zero_based_and_c_appears():
    weights = np.arange(12.0).reshape(3, 4)  # dim 3, numWords 4
    y = embed(dlarray(np.array([0, 3, 1]), "B"), weights)
    assert y.fmt == "CB" and y.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(y), weights[:, [0, 3, 1]])
    # a singleton C becomes the embedding dimension; "BT" indices give "CBT" vectors
    y = embed(dlarray(np.array([[2, 0]]), "CB"), weights)
    np.testing.assert_array_equal(np.asarray(y), weights[:, [2, 0]])
    idx = np.array([[0, 1, 2], [3, 3, 0]])  # B=2, T=3
    y = embed(dlarray(idx, "BT"), weights)
    assert y.fmt == "CBT" and y.shape == (3, 2, 3)
    np.testing.assert_array_equal(np.asarray(y)[:, 1, 0], weights[:, 3])
    # float arrays holding integers are accepted
    y = embed(dlarray(np.array([1.0, 2.0]), "B"), weights)
    np.testing.assert_array_equal(np.asarray(y), weights[:, [1, 2]])


def test_embed_gradient_accumulates_repeated_indices():
    weights = np.random.default_rng(7).normal(size=(2, 4))
    idx = dlarray(np.array([[1, 1, 3], [0, 1, 3]]), "BT")

    def loss(w):
        return lgc.sum(embed(idx, w))

    g = dlfeval(lambda w: dlgradient(loss(w), w), weights)
    np.testing.assert_array_equal(np.asarray(g), [[1, 3, 0, 2], [1, 3, 0, 2]])
    u = np.random.default_rng(8).normal(size=(2, 2, 3))
    fd_check(lambda w: lgc.sum(embed(idx, w) * u), [weights], [0])


def test_embed_errors():
    weights = np.ones((3, 4))
    with pytest.raises(ShapeError, match=r"embed: indices must be in \[0, 4\)"):
        embed(dlarray(np.array([0, 4]), "B"), weights)
    with pytest.raises(ShapeError, match=r"embed: indices must be in \[0, 4\)"):
        embed(dlarray(np.array([-1, 0]), "B"), weights)
    with pytest.raises(ShapeError, match="embed: the C dimension of X"):
        embed(dlarray(np.zeros((2, 3), dtype=np.int64), "CB"), weights)
    with pytest.raises(ShapeError, match="embed: weights must be a 2-D array"):
        embed(dlarray(np.array([0, 1]), "B"), np.ones(4))
    with pytest.raises(ShapeError, match="integer indices"):
        embed(dlarray(np.array([0.5, 1.0]), "B"), weights)


def test_embed_traced_indices_are_checked_when_run():
    weights = np.ones((3, 4))
    with pytest.raises(ShapeError, match=r"embed: indices must be in \[0, 4\)"):
        dlfeval(lambda x: embed(x, weights), dlarray(np.array([[1, 7]]), "CB"))


# --- tracing ----------------------------------------------------------------------------------


def test_traced_lstm_matches_eager():
    rng = np.random.default_rng(9)
    F, H, N, T = 3, 4, 2, 6
    x = dlarray(rng.normal(size=(F, N, T)), "CBT")
    W, R, b, h0 = _params(rng, 4, F, H, N)

    def model(x):
        return lstm(x, h0, np.zeros(H), W, R, b)

    eager = model(x)
    traced = dlfeval(model, x)
    for e, t in zip(eager, traced):
        assert e.fmt == t.fmt
        np.testing.assert_allclose(np.asarray(t), np.asarray(e), rtol=1e-12)
    program = lgc.trace(model, x)
    ops = [n.op.name for n in program.graph.nodes]
    # the recurrence is one op, every step's input projection included
    assert ops.count("matmul") == 0 and ops.count("lstm_seq") == 1


@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
def test_lstm_gradient_program_does_not_grow_with_the_steps(gate):
    # the backward recurrence is one op too, which makes the weight gradients over all steps;
    # the input's gradient is one GEMM: the program is the same size for 3 steps and for 9
    rng = np.random.default_rng(10)
    F, H, N = 2, 3, 2
    W, R, b, h0 = _params(rng, 4, F, H, N)

    def loss_and_grad(x, W, R, b):
        Y, _, _ = lstm(x, h0, h0, W, R, b, GateActivationFunction=gate)
        loss = lgc.sum(Y * Y)
        return loss, dlgradient(loss, x, W, R, b)

    sizes = []
    for T in (3, 9):
        program = lgc.trace(loss_and_grad, dlarray(rng.normal(size=(F, N, T)), "CBT"), W, R, b)
        ops = [n.op.name for n in program.graph.nodes]
        assert ops.count("lstm_seq") == 1 and ops.count("lstm_seq_backward") == 1
        assert ops.count("matmul") == 1  # x's gradient: W^T dZ
        sizes.append(len(ops))
    assert sizes[0] == sizes[1]
