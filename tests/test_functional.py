"""The MATLAB functions of API.md §2 that live in lgc.functional, each against a NumPy
implementation of its formula, eagerly and inside dlfeval."""

import numpy as np
import pytest

import lgc
from lgc import dlarray, dlfeval, extractdata


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def probs(c, n, seed=0, dtype=np.float32):
    e = np.exp(rand(c, n, seed=seed, dtype=np.float64))
    return (e / e.sum(0)).astype(dtype)


def onehot(c, n, seed=1, dtype=np.float32):
    idx = np.random.default_rng(seed).integers(0, c, n)
    return np.eye(c, dtype=dtype)[:, idx]


def both(fn, *args):
    """fn(*args) eagerly and inside dlfeval; asserts they agree and returns the eager result."""
    eager = fn(*args)
    traced = dlfeval(fn, *args)
    assert isinstance(traced, lgc.DLArray) and not traced.is_traced
    assert traced.fmt == eager.fmt and traced.shape == eager.shape
    np.testing.assert_allclose(extractdata(traced), extractdata(eager), rtol=1e-5, atol=1e-6)
    return eager


# --- activations ------------------------------------------------------------------------------


@pytest.mark.parametrize("name,ref", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
    ("leakyrelu", lambda x: np.where(x > 0, x, 0.01 * x)),
])
def test_activations(name, ref):
    x = rand(3, 4, 2)
    X = dlarray(x, "CBT")
    Y = both(getattr(lgc, name), X)
    assert Y.fmt == "CBT" and Y.dtype == np.float32
    np.testing.assert_allclose(extractdata(Y), ref(x), rtol=1e-6, atol=1e-7)
    U = getattr(lgc, name)(dlarray(x))  # unformatted input stays unformatted
    assert U.fmt == ""
    np.testing.assert_allclose(extractdata(U), ref(x), rtol=1e-6, atol=1e-7)


def test_leakyrelu_scale_factor():
    x = rand(5, 3)
    Y = both(lambda X: lgc.leakyrelu(X, 0.2), dlarray(x, "CB"))
    np.testing.assert_allclose(extractdata(Y), np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    Y = lgc.leakyrelu(dlarray(x, "CB"), np.float64(0.3))
    np.testing.assert_allclose(extractdata(Y), np.where(x > 0, x, 0.3 * x), rtol=1e-6)


def test_sigmoid_extreme_inputs_are_finite():
    x = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]], np.float32)
    Y = extractdata(lgc.sigmoid(dlarray(x, "BC")))
    assert np.all(np.isfinite(Y))
    np.testing.assert_allclose(Y.ravel(), [0, 0, 0.5, 1, 1], atol=1e-6)


# --- softmax ----------------------------------------------------------------------------------


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_over_channels():
    x = rand(4, 3)
    Y = both(lgc.softmax, dlarray(x, "CB"))
    assert Y.fmt == "CB"
    np.testing.assert_allclose(extractdata(Y), softmax_ref(x, 0), rtol=1e-5)
    x = rand(2, 3, 4, 5)
    Y = both(lgc.softmax, dlarray(x, "SSCB"))
    np.testing.assert_allclose(extractdata(Y), softmax_ref(x, 2), rtol=1e-5)
    Y = both(lgc.softmax, dlarray(rand(5, 2, 3), "BCT"))  # CBT after canonicalization
    assert Y.fmt == "CBT"
    np.testing.assert_allclose(extractdata(Y).sum(0), 1, rtol=1e-5)


def test_softmax_stable_for_large_inputs():
    x = np.array([[1000.0, -1000.0], [1001.0, 0.0], [999.0, 1000.0]], np.float32)
    Y = extractdata(both(lgc.softmax, dlarray(x, "CB")))
    assert np.all(np.isfinite(Y))
    np.testing.assert_allclose(Y, softmax_ref(x.astype(np.float64), 0), rtol=1e-5, atol=1e-30)


def test_softmax_dataformat_for_unformatted():
    x = rand(3, 4)
    Y = lgc.softmax(dlarray(x), DataFormat="CB")
    assert Y.fmt == ""
    np.testing.assert_allclose(extractdata(Y), softmax_ref(x, 0), rtol=1e-5)
    Y = lgc.softmax(dlarray(x), DataFormat="BC")
    np.testing.assert_allclose(extractdata(Y), softmax_ref(x, 1), rtol=1e-5)


# --- fullyconnect -----------------------------------------------------------------------------


def test_fullyconnect_flattens_first_s_fastest_c_slowest():
    H, W, C, N, O = 2, 3, 4, 2, 5
    x, w, b = rand(H, W, C, N, seed=1), rand(O, H * W * C, seed=2), rand(O, seed=3)
    Y = both(lgc.fullyconnect, dlarray(x, "SSCB"), w, b)
    assert Y.fmt == "CB" and Y.shape == (O, N)
    want = np.zeros((O, N))
    for n in range(N):
        for o in range(O):
            acc = b[o]
            for h in range(H):
                for wi in range(W):
                    for c in range(C):
                        acc += w[o, h + H * wi + H * W * c] * x[h, wi, c, n]
            want[o, n] = acc
    np.testing.assert_allclose(extractdata(Y), want, rtol=1e-4, atol=1e-5)
    # the same as a Fortran-order flatten of each observation
    xf = x.reshape(H * W * C, N, order="F")
    np.testing.assert_allclose(extractdata(Y), w @ xf + b[:, None], rtol=1e-4, atol=1e-5)


def test_fullyconnect_from_nchw_input():
    N, C, H, W, O = 2, 3, 2, 2, 4
    x, w = rand(N, C, H, W, seed=4), rand(O, C * H * W, seed=5)
    Y = both(lambda X: lgc.fullyconnect(X, w, np.zeros(O, np.float32)), dlarray(x, "BCSS"))
    canon = x.transpose(2, 3, 1, 0)  # (H, W, C, N)
    np.testing.assert_allclose(extractdata(Y), w @ canon.reshape(-1, N, order="F"), rtol=1e-4)


def test_fullyconnect_cb_and_per_time_step():
    C, N, T, O = 3, 2, 4, 5
    x, w, b = rand(C, N, T, seed=6), rand(O, C, seed=7), rand(O, 1, seed=8)
    Y = both(lgc.fullyconnect, dlarray(x, "CBT"), w, b)
    assert Y.fmt == "CBT" and Y.shape == (O, N, T)
    want = np.einsum("oc,cnt->ont", w, x) + b[:, :, None]
    np.testing.assert_allclose(extractdata(Y), want, rtol=1e-4, atol=1e-5)
    Y = both(lgc.fullyconnect, dlarray(x[:, :, 0], "CB"), w, b)
    assert Y.fmt == "CB"
    np.testing.assert_allclose(extractdata(Y), want[:, :, 0], rtol=1e-4, atol=1e-5)


def test_fullyconnect_spatial_sequence():
    S, C, N, T, O = 2, 3, 2, 3, 4
    x, w = rand(S, C, N, T, seed=9), rand(O, S * C, seed=10)
    Y = both(lambda X: lgc.fullyconnect(X, w, None), dlarray(x, "SCBT"))
    assert Y.fmt == "CBT" and Y.shape == (O, N, T)
    want = np.einsum("of,fnt->ont", w, x.reshape(S * C, N, T, order="F"))
    np.testing.assert_allclose(extractdata(Y), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bshape", [(4,), (4, 1), (1, 4), (1, 1, 4), ()])
def test_fullyconnect_bias_any_shape(bshape):
    x, w = rand(3, 2, seed=11), rand(4, 3, seed=12)
    b = rand(*bshape, seed=13) if bshape else np.float32(0.5)
    Y = lgc.fullyconnect(dlarray(x, "CB"), w, b)
    np.testing.assert_allclose(extractdata(Y), w @ x + np.reshape(b, (-1, 1)), rtol=1e-5)

    def loss(B):
        return lgc.dlgradient(lgc.sum(lgc.fullyconnect(dlarray(x, "CB"), w, B)), B)

    g = dlfeval(loss, dlarray(b))
    assert g.shape == np.shape(b)  # the gradient comes back in the shape that was passed
    want = 2.0 if np.size(b) == 4 else 8.0  # N per output, or summed over all 4 outputs
    np.testing.assert_allclose(extractdata(g), np.full(np.shape(b), want))


def test_fullyconnect_dataformat_for_unformatted():
    x, w = rand(3, 2, seed=14), rand(4, 3, seed=15)
    Y = lgc.fullyconnect(dlarray(x), w, np.zeros(4), DataFormat="CB")
    assert Y.fmt == "" and Y.shape == (4, 2)
    np.testing.assert_allclose(extractdata(Y), w @ x, rtol=1e-5)


# --- losses -----------------------------------------------------------------------------------


def ce_ref(y, t, mode="single-label", nf="batch-size", mask=None, weights=None, n=None):
    eps = np.finfo(y.dtype).eps
    yc = np.clip(y.astype(np.float64), eps, 1 - eps)
    terms = t * np.log(yc) if mode == "single-label" else \
        t * np.log(yc) + (1 - t) * np.log(1 - yc)
    if weights is not None:
        terms = terms * np.reshape(weights, (-1,) + (1,) * (y.ndim - 1))
    if mask is not None:
        terms = terms * mask
    div = {"batch-size": n, "all-elements": y.size, "none": 1}[nf]
    return -terms.sum() / div


@pytest.mark.parametrize("nf", ["batch-size", "all-elements", "none"])
def test_crossentropy_single_label(nf):
    y, t = probs(4, 5), onehot(4, 5)
    L = both(lambda Y, T: lgc.crossentropy(Y, T, NormalizationFactor=nf), dlarray(y, "CB"), t)
    assert L.shape == () and L.fmt == ""
    np.testing.assert_allclose(float(L), ce_ref(y, t, nf=nf, n=5), rtol=1e-5)


@pytest.mark.parametrize("nf", ["batch-size", "all-elements", "none"])
def test_crossentropy_multilabel(nf):
    y = 1 / (1 + np.exp(-rand(3, 4, seed=2)))
    t = (rand(3, 4, seed=3) > 0).astype(np.float32)
    L = both(lambda Y, T: lgc.crossentropy(Y, T, ClassificationMode="multilabel",
                                           NormalizationFactor=nf),
             dlarray(y, "CB"), dlarray(t, "CB"))
    np.testing.assert_allclose(float(L), ce_ref(y, t, "multilabel", nf, n=4), rtol=1e-5)


def test_crossentropy_mask_and_class_weights():
    y, t = probs(4, 6, seed=4), onehot(4, 6, seed=5)
    mask = (rand(4, 6, seed=6) > 0).astype(np.float32)
    w = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    for wshape in [(4,), (4, 1), (1, 4)]:
        L = both(lambda Y, W: lgc.crossentropy(Y, t, Mask=mask, Weights=W),
                 dlarray(y, "CB"), w.reshape(wshape))
        np.testing.assert_allclose(float(L), ce_ref(y, t, mask=mask, weights=w, n=6), rtol=1e-5)


def test_crossentropy_sequence_divides_by_batch_size():
    y = probs(3, 8, seed=7).reshape(3, 2, 4)
    t = onehot(3, 8, seed=8).reshape(3, 2, 4)
    L = both(lgc.crossentropy, dlarray(y, "CBT"), dlarray(t, "CBT"))
    np.testing.assert_allclose(float(L), -np.sum(t * np.log(y)) / 2, rtol=1e-5)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_crossentropy_clamps_by_dtype_eps(dt):
    y = np.array([[0.0, 1.0], [1.0, 0.0]], dt)
    t = np.array([[1.0, 0.0], [0.0, 1.0]], dt)
    L = both(lgc.crossentropy, dlarray(y, "CB"), t)
    assert np.isfinite(float(L))
    np.testing.assert_allclose(float(L), -np.log(np.finfo(dt).eps), rtol=1e-5)
    L = lgc.crossentropy(dlarray(y, "CB"), t, ClassificationMode="multilabel")
    assert np.isfinite(float(L))


def test_crossentropy_integer_targets():
    y, t = probs(3, 4, seed=9), onehot(3, 4, seed=10).astype(np.int64)
    L = lgc.crossentropy(dlarray(y, "CB"), t)
    np.testing.assert_allclose(float(L), ce_ref(y, t.astype(np.float32), n=4), rtol=1e-5)


def test_mse_is_half_and_divides_by_batch_size():
    y, t = rand(3, 4, 5, seed=11), rand(3, 4, 5, seed=12)
    L = both(lgc.mse, dlarray(y, "SCB"), t)
    assert L.shape == () and L.fmt == ""
    np.testing.assert_allclose(float(L), np.sum((y - t) ** 2) / (2 * 5), rtol=1e-5)
    L = both(lgc.mse, dlarray(y, "SCB"), dlarray(t, "SCB"))
    np.testing.assert_allclose(float(L), np.sum((y - t) ** 2) / 10, rtol=1e-5)


def test_mse_without_batch_divides_by_one():
    y, t = rand(3, 4, seed=13), rand(3, 4, seed=14)
    for Y in (dlarray(y), dlarray(y, "SC")):
        np.testing.assert_allclose(float(lgc.mse(Y, t)), np.sum((y - t) ** 2) / 2, rtol=1e-5)


@pytest.mark.parametrize("nf,div", [("batch-size", 4), ("all-elements", 12), ("none", 1)])
def test_l2loss_not_halved(nf, div):
    y, t = rand(3, 4, seed=15), rand(3, 4, seed=16)
    L = both(lambda Y, T: lgc.l2loss(Y, T, NormalizationFactor=nf), dlarray(y, "CB"), t)
    np.testing.assert_allclose(float(L), np.sum((y - t) ** 2) / div, rtol=1e-5)
    assert lgc.l2loss(dlarray(y, "CB"), t).shape == ()


# --- one-hot coding ---------------------------------------------------------------------------


def test_onehotencode_default_classes_sorted_unique():
    labels = np.array([3, 1, 2, 3, 1])
    E = lgc.onehotencode(labels, 0)
    assert E.shape == (3, 5)
    np.testing.assert_array_equal(E, np.array([[0, 1, 0, 0, 1], [0, 0, 1, 0, 0],
                                               [1, 0, 0, 1, 0]]))
    assert lgc.onehotencode(labels, 1).shape == (5, 3)
    np.testing.assert_array_equal(lgc.onehotencode(labels, 1), E.T)


def test_onehotencode_class_names_and_strings():
    labels = ["cat", "dog", "cat"]
    E = lgc.onehotencode(labels, 0, ClassNames=["dog", "cat", "bird"])
    np.testing.assert_array_equal(E, [[0, 1, 0], [1, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(lgc.onehotencode(labels, 0), [[1, 0, 1], [0, 1, 0]])


def test_onehotdecode_inverts_onehotencode():
    labels = np.array([2, 0, 1, 2, 2])
    E = lgc.onehotencode(labels, 0)
    D = lgc.onehotdecode(E, [0, 1, 2], 0)
    assert isinstance(D, np.ndarray)
    np.testing.assert_array_equal(D, labels)
    scores = dlarray(probs(3, 4, seed=17), "CB")
    D = lgc.onehotdecode(scores, ["a", "b", "c"], 0)
    want = np.array(["a", "b", "c"])[np.argmax(extractdata(scores), 0)]
    np.testing.assert_array_equal(D, want)
    np.testing.assert_array_equal(lgc.onehotdecode(E.T, [5, 6, 7], 1), labels + 5)


# --- dropout ----------------------------------------------------------------------------------


def test_dropout_scales_survivors_and_drops_about_p():
    x = np.abs(rand(20, 50, seed=18)) + 0.1
    Y = extractdata(lgc.dropout(dlarray(x, "CB"), 0.3))
    kept = Y != 0
    np.testing.assert_allclose(Y[kept], x[kept] / 0.7, rtol=1e-6)
    assert 0.2 < 1 - kept.mean() < 0.4
    assert lgc.dropout(dlarray(x, "CB")).fmt == "CB"


def test_dropout_p0_identity():
    x = rand(3, 4, seed=19)
    np.testing.assert_array_equal(extractdata(lgc.dropout(dlarray(x, "CB"), 0)), x)
    np.testing.assert_array_equal(extractdata(dlfeval(lambda X: lgc.dropout(X, 0.0),
                                                      dlarray(x, "CB"))), x)


def test_dropout_mask_changes_and_reproducible_with_rng():
    X = dlarray(np.ones((10, 20), np.float32), "CB")
    f = lambda X: lgc.dropout(X, 0.5)  # noqa: E731
    lgc.rng(7)
    a, b = extractdata(lgc.dropout(X)), extractdata(lgc.dropout(X))
    assert not np.array_equal(a, b)
    lgc.rng(7)
    np.testing.assert_array_equal(extractdata(lgc.dropout(X)), a)
    lgc.rng(3)
    ta, tb = extractdata(dlfeval(f, X)), extractdata(dlfeval(f, X))  # compiled, cached
    assert not np.array_equal(ta, tb)
    lgc.rng(3)
    np.testing.assert_array_equal(extractdata(dlfeval(f, X)), ta)
    assert set(np.unique(ta)) <= {0.0, 2.0}


# --- empty batches ----------------------------------------------------------------------------


EMPTY = dlarray(np.zeros((3, 0), np.float32), "CB")


@pytest.mark.parametrize("call", [
    lambda: lgc.relu(EMPTY), lambda: lgc.sigmoid(EMPTY), lambda: lgc.tanh(EMPTY),
    lambda: lgc.leakyrelu(EMPTY), lambda: lgc.softmax(EMPTY), lambda: lgc.dropout(EMPTY),
    lambda: lgc.fullyconnect(EMPTY, np.ones((2, 3)), np.zeros(2)),
    lambda: lgc.crossentropy(EMPTY, np.zeros((3, 0))), lambda: lgc.mse(EMPTY, np.zeros((3, 0))),
    lambda: lgc.l2loss(EMPTY, np.zeros((3, 0))),
], ids=["relu", "sigmoid", "tanh", "leakyrelu", "softmax", "dropout", "fullyconnect",
        "crossentropy", "mse", "l2loss"])
def test_empty_batch_is_shape_error(call):
    with pytest.raises(lgc.ShapeError, match=r"batch.*\(3, 0\)"):
        call()


# --- a whole model, traced versus eager -------------------------------------------------------


def test_model_loss_traced_matches_eager():
    x, t = rand(2, 2, 3, 4, seed=20), onehot(5, 4, seed=21)
    w1, b1 = rand(6, 12, seed=22) * 0.3, rand(6, seed=23)
    w2, b2 = rand(5, 6, seed=24) * 0.3, rand(5, 1, seed=25)

    def model(X, T, p):
        h = lgc.leakyrelu(lgc.fullyconnect(X, p["w1"], p["b1"]), 0.1)
        h = lgc.sigmoid(h) * lgc.tanh(h) + lgc.relu(h)
        Y = lgc.softmax(lgc.fullyconnect(h, p["w2"], p["b2"]))
        return (lgc.crossentropy(Y, T) + lgc.mse(Y, T) + lgc.l2loss(Y, T)
                + lgc.crossentropy(Y, T, ClassificationMode="multilabel"))

    params = {"w1": dlarray(w1), "b1": dlarray(b1), "w2": dlarray(w2), "b2": dlarray(b2)}
    both(model, dlarray(x, "SSCB"), dlarray(t, "CB"), params)


def test_onehotencode_replaces_singleton_feature_dim():
    col = np.array([[2], [0], [1]])
    E = lgc.onehotencode(col, 1)
    assert E.shape == (3, 3)
    np.testing.assert_array_equal(E, np.eye(3)[[2, 0, 1]])
    assert lgc.onehotencode(col.T, 0).shape == (3, 3)


def test_dataformat_for_unformatted_losses_and_activations():
    y, t = probs(4, 3, seed=26), onehot(4, 3, seed=27)  # (C, N) canonical
    want = float(lgc.crossentropy(dlarray(y, "CB"), t))
    got = lgc.crossentropy(dlarray(y.T), t.T, DataFormat="BC")  # caller's layout (N, C)
    assert got.shape == () and float(got) == pytest.approx(want, rel=1e-6)
    mask = np.ones((4, 3), np.float32)
    mask[:, 0] = 0
    want = float(lgc.l2loss(dlarray(y, "CB"), t, Mask=mask))
    got = lgc.l2loss(dlarray(y.T), t.T, Mask=mask.T, DataFormat="BC")
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert float(lgc.mse(y.T, t.T, DataFormat="BC")) == pytest.approx(
        float(lgc.mse(dlarray(y, "CB"), t)), rel=1e-6)
    R = lgc.relu(dlarray(y.T - 0.3), DataFormat="BC")
    assert R.fmt == "" and R.shape == (3, 4)
    np.testing.assert_allclose(extractdata(R), np.maximum(y.T - 0.3, 0), rtol=1e-6)
