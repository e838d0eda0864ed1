"""dlconv and dltranspconv against direct loop references, MATLAB's conventions pinned by hand
("same" padding with the odd extra at the end, PaddingValue modes, dltranspconv's swapped weight
dims and cropping), gradients through dlfeval against finite differences (first order and a
gradient penalty), and argument errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lgc
from lgc.convolution import dlconv, dltranspconv
from lgc.errors import DTypeError, FormatError, ShapeError

RNG = np.random.default_rng(7)

# --- independent references -------------------------------------------------------------------


def _source(i: int, n: int, mode: str) -> int:
    """The input index a padded position i (relative to the first real element) copies."""
    if 0 <= i < n:
        return i
    if mode == "replicate":
        return min(max(i, 0), n - 1)
    if mode == "symmetric-include-edge":
        return -i - 1 if i < 0 else 2 * n - 1 - i
    if mode == "symmetric-exclude-edge":
        return -i if i < 0 else 2 * n - 2 - i
    if mode == "circular":
        return i % n
    return -1  # constant


def pad_ref(x, pads, mode="constant", value=0.0):
    """x padded on its leading len(pads) axes, position by position."""
    d = len(pads)
    shape = [n + a + b for n, (a, b) in zip(x.shape[:d], pads)] + list(x.shape[d:])
    out = np.empty(shape)
    for pos in np.ndindex(*shape[:d]):
        src = [_source(p - a, n, mode) for p, (a, _), n in zip(pos, pads, x.shape[:d])]
        out[pos] = value if min(src) < 0 else x[tuple(src)]
    return out


def conv_loop(x, w, stride, dil, pads, mode="constant", value=0.0):
    """Direct cross-correlation. x (S..., C, N), w (k..., Cin/g, Cout/g, g)."""
    d = w.ndim - 3
    xp = pad_ref(x, pads, mode, value)
    k, (ci, co, g) = w.shape[:d], w.shape[d:]
    outs = [(xp.shape[i] - dil[i] * (k[i] - 1) - 1) // stride[i] + 1 for i in range(d)]
    y = np.zeros(outs + [co * g, x.shape[d + 1]])
    for o in np.ndindex(*outs):
        for grp, c in itertools.product(range(g), range(co)):
            for kk in np.ndindex(*k):
                pos = tuple(o[i] * stride[i] + kk[i] * dil[i] for i in range(d))
                y[o + (grp * co + c,)] += w[kk][:, c, grp] @ xp[pos][grp * ci:(grp + 1) * ci]
    return y


def transpconv_loop(x, w, stride, dil, crop):
    """Direct transposed convolution by scattering. x (S..., Cin, N),
    w (k..., Cout/g, Cin/g, g); each input element spreads over a dilated kernel window."""
    d = w.ndim - 3
    k, (co, ci, g) = w.shape[:d], w.shape[d:]
    full = [stride[i] * (x.shape[i] - 1) + dil[i] * (k[i] - 1) + 1 for i in range(d)]
    y = np.zeros(full + [co * g, x.shape[d + 1]])
    for p in np.ndindex(*x.shape[:d]):
        for grp, c in itertools.product(range(g), range(co)):
            for kk in np.ndindex(*k):
                pos = tuple(p[i] * stride[i] + kk[i] * dil[i] for i in range(d))
                y[pos + (grp * co + c,)] += w[kk][c, :, grp] @ x[p][grp * ci:(grp + 1) * ci]
    return y[tuple(slice(a, f - b) for (a, b), f in zip(crop, full))]


def _w5(w, d):
    """Weights with the group dim made explicit."""
    return w if w.ndim == d + 3 else w.reshape(w.shape + (1,) * (d + 3 - w.ndim))


def _fmt(d):
    return "S" * d + "CB"


# --- forward against the loop references --------------------------------------------------------

CONV_CASES = [
    # (x shape, w shape, options, expected pads)
    ((7, 2, 2), (3, 2, 3), {}, ((0, 0),)),
    ((7, 2, 2), (3, 2, 3), {"Stride": 2, "Padding": 1}, ((1, 1),)),
    ((8, 2, 1), (2, 2, 2), {"DilationFactor": 3, "Padding": [1, 2]}, ((1, 2),)),
    ((8, 4, 2), (3, 2, 3, 2), {"Stride": 2, "Padding": "same"}, ((0, 1),)),  # grouped 1-D
    ((5, 6, 3, 2), (3, 2, 3, 4), {"Stride": [2, 1], "Padding": [1, 0]}, ((1, 1), (0, 0))),
    ((5, 6, 3, 1), (2, 3, 3, 2), {"DilationFactor": [2, 1], "Padding": np.array([[1, 0], [0, 2]])},
     ((1, 0), (0, 2))),
    ((5, 6, 4, 2), (3, 3, 2, 3, 2), {"Stride": 2, "Padding": "same"}, ((1, 1), (0, 1))),
    ((6, 5, 6, 1), (2, 2, 2, 2, 3), {"DilationFactor": 2, "Padding": "same"},
     ((1, 1), (1, 1))),
    ((4, 3, 5, 2, 2), (2, 2, 3, 2, 3), {"Stride": [1, 2, 2], "Padding": "same"},
     ((0, 1), (0, 1), (1, 1))),
    ((4, 4, 4, 1, 1), (3, 2, 2, 1, 2), {"DilationFactor": [1, 2, 1], "Padding": 1},
     ((1, 1),) * 3),
]


@pytest.mark.parametrize("xs, ws, opts, pads", CONV_CASES)
def test_dlconv_matches_direct_loops(xs, ws, opts, pads):
    d = len(xs) - 2
    x, w = RNG.normal(size=xs), RNG.normal(size=ws)
    g = ws[-1] if len(ws) == d + 3 else 1
    bias = RNG.normal(size=(ws[d + 1] * g,))
    y = dlconv(lgc.dlarray(x, _fmt(d)), w, bias, **opts)
    stride = np.broadcast_to(opts.get("Stride", 1), (d,))
    dil = np.broadcast_to(opts.get("DilationFactor", 1), (d,))
    expected = conv_loop(x, _w5(w, d), stride, dil, pads)
    expected += bias.reshape((1,) * d + (-1, 1))
    assert y.fmt == _fmt(d)
    np.testing.assert_allclose(lgc.extractdata(y), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["replicate", "symmetric-include-edge",
                                  "symmetric-exclude-edge", "circular", 0.5])
def test_dlconv_padding_values_match_direct_loops(mode):
    x, w = RNG.normal(size=(4, 5, 2, 2)), RNG.normal(size=(3, 2, 2, 3))
    y = dlconv(lgc.dlarray(x, "SSCB"), w, None, Padding=np.array([[2, 1], [1, 1]]),
               PaddingValue=mode, Stride=[1, 2])
    kw = {"value": mode} if isinstance(mode, float) else {"mode": mode}
    expected = conv_loop(x, _w5(w, 2), (1, 2), (1, 1), ((2, 1), (1, 1)), **kw)
    np.testing.assert_allclose(lgc.extractdata(y), expected, rtol=1e-12, atol=1e-12)


# --- MATLAB conventions, by hand ------------------------------------------------------------------


def _conv1(x, k, **opts):
    """1-D dlconv of a single-channel signal with a single filter, as a flat list."""
    X = lgc.dlarray(np.asarray(x, float).reshape(-1, 1, 1), "SCB")
    return lgc.extractdata(dlconv(X, np.asarray(k, float).reshape(-1, 1, 1), None,
                                  **opts)).ravel()


def test_same_padding_puts_the_odd_extra_at_the_end():
    # total padding 1: nothing before, one zero after
    np.testing.assert_allclose(_conv1([1, 2, 3, 4], [1, 10], Padding="same"),
                               [21, 32, 43, 4])
    # stride 2, in 4 -> out ceil(4/2) = 2; total padding (2-1)*2 + 3 - 4 = 1, at the end
    np.testing.assert_allclose(_conv1([1, 2, 3, 4], [1, 10, 100], Padding="same", Stride=2),
                               [321, 43])
    # even total: split evenly
    np.testing.assert_allclose(_conv1([1, 2, 3], [1, 10, 100], Padding="same"),
                               [210, 321, 32])


def test_padding_given_as_before_after_rows():
    x = np.arange(1.0, 10.0).reshape(3, 3, 1, 1)
    y = dlconv(lgc.dlarray(x, "SSCB"), np.ones((1, 1, 1, 1)), None,
               Padding=np.array([[1, 0], [0, 2]]))  # [top left; bottom right]
    out = lgc.extractdata(y)[:, :, 0, 0]
    expected = np.zeros((4, 5))
    expected[1:, :3] = x[:, :, 0, 0]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("mode, padded", [
    ("replicate", [1, 1, 1, 2, 3, 3, 3]),
    ("symmetric-include-edge", [2, 1, 1, 2, 3, 3, 2]),
    ("symmetric-exclude-edge", [3, 2, 1, 2, 3, 2, 1]),
    ("circular", [2, 3, 1, 2, 3, 1, 2]),
    (5, [5, 5, 1, 2, 3, 5, 5]),
    (0, [0, 0, 1, 2, 3, 0, 0]),
])
def test_padding_value_modes_by_hand(mode, padded):
    # a 1x1 identity filter shows the padded signal itself
    np.testing.assert_array_equal(_conv1([1, 2, 3], [1], Padding=2, PaddingValue=mode), padded)


def test_cross_correlation_does_not_flip_the_kernel():
    np.testing.assert_array_equal(_conv1([1, 0, 0], [1, 2, 3]), [1])
    np.testing.assert_array_equal(_conv1([0, 0, 1], [1, 2, 3]), [3])


def test_grouped_channels_and_bias_are_group_major():
    # 2 groups, 1 in / 2 out channels each: output channel 2g+c sees only input channel g
    x = np.array([1.0, 10.0]).reshape(1, 1, 2, 1)
    w = np.zeros((1, 1, 1, 2, 2))
    w[0, 0, 0, :, 0] = [1, 2]
    w[0, 0, 0, :, 1] = [3, 4]
    y = dlconv(lgc.dlarray(x, "SSCB"), w, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(lgc.extractdata(y).ravel(), [1.1, 2.2, 30.3, 40.4])


def test_dltranspconv_weights_have_output_channels_third():
    # weights (k, Cout, Cin) = (2, 2, 1); one input channel becomes two output channels
    w = np.zeros((2, 2, 1))
    w[:, 0, 0] = [1, 2]
    w[:, 1, 0] = [3, 4]
    X = lgc.dlarray(np.array([1.0, 10.0]).reshape(2, 1, 1), "SCB")
    y = lgc.extractdata(dltranspconv(X, w, None))
    np.testing.assert_array_equal(y[:, 0, 0], [1, 12, 20])
    np.testing.assert_array_equal(y[:, 1, 0], [3, 34, 40])
    with pytest.raises(ShapeError, match="dltranspconv.*input channels"):
        dltranspconv(X, np.zeros((2, 1, 2)), None)  # dlconv's (k, Cin, Cout) layout


def test_dltranspconv_same_cropping_removes_the_odd_extra_at_the_end():
    # full output [1, 2, 3+10, 20, 30] (size 2·(2−1)+3 = 5); "same" → 2·2 = 4 keeps the start
    X = lgc.dlarray(np.array([1.0, 10.0]).reshape(2, 1, 1), "SCB")
    w = np.array([1.0, 2.0, 3.0]).reshape(3, 1, 1)
    y = dltranspconv(X, w, None, Stride=2, Cropping="same")
    np.testing.assert_array_equal(lgc.extractdata(y).ravel(), [1, 2, 13, 20])
    y = dltranspconv(X, w, None, Stride=2, Cropping=[1, 0])
    np.testing.assert_array_equal(lgc.extractdata(y).ravel(), [2, 13, 20, 30])


TRANSP_CASES = [
    ((3, 2, 2), (3, 4, 2), {}, ((0, 0),)),
    ((3, 2, 2), (3, 4, 2), {"Stride": 2, "Cropping": 1}, ((1, 1),)),
    ((4, 2, 1), (2, 1, 2), {"Stride": 3, "DilationFactor": 2, "Cropping": "same"}, ((0, 0),)),
    ((3, 4, 2, 2), (3, 2, 3, 2), {"Stride": [2, 1], "Cropping": "same"}, ((0, 1), (0, 1))),
    ((3, 3, 4, 1), (2, 3, 3, 2, 2), {"Stride": 2, "Cropping": np.array([[1, 0], [0, 1]])},
     ((1, 0), (0, 1))),
    ((2, 3, 2, 2, 1), (2, 2, 2, 3, 2), {"Stride": [1, 2, 2], "DilationFactor": [2, 1, 1]},
     ((0, 0),) * 3),
]


@pytest.mark.parametrize("xs, ws, opts, crop", TRANSP_CASES)
def test_dltranspconv_matches_direct_loops(xs, ws, opts, crop):
    d = len(xs) - 2
    x, w = RNG.normal(size=xs), RNG.normal(size=ws)
    g = ws[-1] if len(ws) == d + 3 else 1
    bias = RNG.normal(size=(1, 1, ws[d] * g))
    y = dltranspconv(lgc.dlarray(x, _fmt(d)), w, bias, **opts)
    stride = np.broadcast_to(opts.get("Stride", 1), (d,))
    dil = np.broadcast_to(opts.get("DilationFactor", 1), (d,))
    expected = transpconv_loop(x, _w5(w, d), stride, dil, crop)
    expected += bias.reshape((1,) * d + (-1, 1))
    if isinstance(opts.get("Cropping"), str):
        assert y.shape[:d] == tuple(n * s for n, s in zip(xs, stride))
    np.testing.assert_allclose(lgc.extractdata(y), expected, rtol=1e-12, atol=1e-12)


def test_dltranspconv_is_the_adjoint_of_dlconv():
    x, w = RNG.normal(size=(7, 6, 4, 2)), RNG.normal(size=(3, 2, 2, 3, 2))
    opts = {"Stride": [2, 1], "DilationFactor": [1, 2]}
    y = lgc.extractdata(dlconv(lgc.dlarray(x, "SSCB"), w, None, Padding=[1, 2], **opts))
    u = RNG.normal(size=y.shape)
    xt = lgc.extractdata(dltranspconv(lgc.dlarray(u, "SSCB"), w, None, Cropping=[1, 2], **opts))
    assert xt.shape == x.shape
    np.testing.assert_allclose(np.sum(y * u), np.sum(x * xt), rtol=1e-12)


# --- layouts --------------------------------------------------------------------------------------


def test_dataformat_input_comes_back_in_the_callers_layout():
    x, w = RNG.normal(size=(2, 3, 5, 6)), RNG.normal(size=(3, 3, 3, 4))  # BCSS
    y = dlconv(x, w, None, Padding="same", Stride=2, DataFormat="BCSS")
    ref = dlconv(lgc.dlarray(x, "BCSS"), w, None, Padding="same", Stride=2)
    assert y.fmt == "" and y.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(lgc.extractdata(y),
                               lgc.extractdata(ref).transpose(3, 2, 0, 1), rtol=1e-12)


def test_time_is_the_spatial_dimension_of_cbt_data():
    x, w = RNG.normal(size=(3, 2, 6)), RNG.normal(size=(2, 3, 4))  # C B T
    y = dlconv(lgc.dlarray(x, "CBT"), w, None, Padding="same")
    ref = dlconv(lgc.dlarray(x.transpose(2, 0, 1), "SCB"), w, None, Padding="same")
    assert y.fmt == "CBT"
    np.testing.assert_allclose(lgc.extractdata(y), lgc.extractdata(ref).transpose(1, 2, 0))


def test_missing_batch_dimension_and_scalar_bias():
    x, w = RNG.normal(size=(5, 5, 2)), RNG.normal(size=(3, 3, 2, 3))
    y = dlconv(lgc.dlarray(x, "SSC"), w, 0.5)
    ref = dlconv(lgc.dlarray(x[..., None], "SSCB"), w, 0)
    assert y.fmt == "SSC" and y.shape == (3, 3, 3)
    np.testing.assert_allclose(lgc.extractdata(y), lgc.extractdata(ref)[..., 0] + 0.5)


def test_traced_equals_eager():
    x, w = RNG.normal(size=(5, 4, 2, 2)), RNG.normal(size=(2, 3, 2, 3))
    X = lgc.dlarray(x, "SSCB")
    # the same weights read as (k, Cout, Cin) by dltranspconv map the 3 channels back to 2
    fn = lambda X, w: dltranspconv(dlconv(X, w, None, Padding="same", PaddingValue="circular"),
                                   w, None, Stride=2)
    eager = fn(X, lgc.dlarray(w))
    traced = lgc.dlfeval(fn, X, lgc.dlarray(w))
    np.testing.assert_allclose(lgc.extractdata(traced), lgc.extractdata(eager), rtol=1e-12)


# --- gradients ------------------------------------------------------------------------------------


def _fd(f, args, i, eps=1e-6):
    g = np.zeros(args[i].shape)
    for j in np.ndindex(args[i].shape):
        hi, lo = [a.copy() for a in args], [a.copy() for a in args]
        hi[i][j] += eps
        lo[i][j] -= eps
        g[j] = (f(*hi) - f(*lo)) / (2 * eps)
    return g


GRAD_CASES = [
    (dlconv, (6, 2, 2), (3, 2, 2), {"Stride": 2, "Padding": "same"}),
    (dlconv, (5, 4, 4, 1), (2, 3, 2, 1, 2), {"DilationFactor": [2, 1], "Padding": 1,
                                             "PaddingValue": "symmetric-exclude-edge"}),
    (dlconv, (4, 4, 2, 1), (3, 2, 2, 2), {"Padding": [2, 1], "PaddingValue": "replicate",
                                          "Stride": [1, 2]}),
    (dlconv, (3, 4, 3, 1, 1), (2, 2, 2, 1, 2), {"Padding": "same", "PaddingValue": "circular"}),
    (dltranspconv, (3, 3, 2, 1), (3, 2, 2, 2), {"Stride": 2, "Cropping": "same"}),
    (dltranspconv, (4, 4, 1), (2, 2, 2, 2), {"Stride": 2, "DilationFactor": 2, "Cropping": 1}),
]


@pytest.mark.parametrize("fn, xs, ws, opts", GRAD_CASES)
def test_gradients_match_finite_differences(fn, xs, ws, opts):
    d = len(xs) - 2
    fmt = _fmt(d)
    x, w = RNG.normal(size=xs), RNG.normal(size=ws)
    g = ws[-1] if len(ws) == d + 3 else 1
    n_out = ws[d + 1 if fn is dlconv else d] * g
    b = RNG.normal(size=(n_out, 1))
    u = None

    def loss(X, W, B):
        return lgc.sum(lgc.tanh(fn(X, W, B, **opts)) * u)

    def model(X, W, B):
        L = loss(X, W, B)
        return L, lgc.dlgradient(L, X, W, B)

    u = RNG.normal(size=fn(lgc.dlarray(x, fmt), w, b, **opts).shape)
    _, (gx, gw, gb) = lgc.dlfeval(model, lgc.dlarray(x, fmt), lgc.dlarray(w), lgc.dlarray(b))
    assert gx.fmt == fmt and gw.shape == w.shape and gb.shape == b.shape
    f = lambda x, w, b: float(loss(lgc.dlarray(x, fmt), w, b))
    for i, got in enumerate((gx, gw, gb)):
        np.testing.assert_allclose(lgc.extractdata(got), _fd(f, [x, w, b], i),
                                   rtol=1e-6, atol=1e-8)


def test_gradient_penalty_through_dlconv_matches_finite_differences():
    """d/dw |d loss / dX|², with the inner gradient built by EnableHigherDerivatives."""
    x, w = RNG.normal(size=(4, 4, 2, 2)), 0.5 * RNG.normal(size=(2, 2, 2, 3))
    opts = {"Stride": [2, 1], "Padding": "same", "PaddingValue": "replicate"}

    def penalty(X, W):
        y = lgc.tanh(dlconv(X, W, None, **opts))
        gx = lgc.dlgradient(lgc.sum(y * y), X, EnableHigherDerivatives=True)
        return lgc.sum(gx * gx)

    def model(X, W):
        p = penalty(X, W)
        return p, lgc.dlgradient(p, W)

    X = lgc.dlarray(x, "SSCB")
    p, gw = lgc.dlfeval(model, X, lgc.dlarray(w))
    f = lambda w: float(lgc.dlfeval(penalty, X, lgc.dlarray(w)))
    assert float(p) == pytest.approx(f(w), rel=1e-12)
    np.testing.assert_allclose(lgc.extractdata(gw), _fd(lambda w: f(w), [w], 0),
                               rtol=1e-6, atol=1e-8)


# --- errors ---------------------------------------------------------------------------------------


def _X(shape=(5, 5, 2, 1), fmt="SSCB"):
    return lgc.dlarray(RNG.normal(size=shape), fmt)


@pytest.mark.parametrize("call, err, pattern", [
    (lambda: dlconv(_X(), np.zeros((3, 3, 3, 4)), None), ShapeError,
     r"dlconv: weights \(3, 3, 3, 4\) expect 3 input channels.*has 2"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 2, 2, 1, 1)), None), ShapeError,
     r"dlconv: weights for a 2-D convolution must be"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, Stride=0), ShapeError,
     r"dlconv: Stride must be a positive integer.*got 0"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, DilationFactor=[1, 2, 3]), ShapeError,
     r"dlconv: DilationFactor"),
    (lambda: dlconv(_X(), np.zeros((7, 3, 2, 4)), None), ShapeError,
     r"dlconv: the filter .* larger than the padded input \(5, 5\)"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, DilationFactor=3), ShapeError,
     r"span \(7, 7\)"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, Padding="valid"), ShapeError,
     r"dlconv: Padding"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, Padding=-1), ShapeError,
     r"dlconv: Padding"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), None, Padding=1, PaddingValue="reflect"),
     ShapeError, r"dlconv: PaddingValue"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4)), np.zeros(3)), ShapeError,
     r"dlconv: bias must have one element per output channel \(4\)"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 1, 2, 3)), None), ShapeError,
     r"expect 3 input channels \(3 group\(s\) of 1\)"),
    (lambda: dlconv(_X(), np.zeros((3, 3, 2, 4), dtype=int), None), DTypeError,
     r"dlconv: weights must be float"),
    (lambda: dlconv(RNG.normal(size=(5, 5, 2, 1)), np.zeros((3, 3, 2, 4)), None), FormatError,
     r"dlconv: X is unformatted"),
    (lambda: dlconv(_X((5, 2, 1), "SBU"), np.zeros((3, 2, 4)), None), FormatError,
     r"dlconv"),
    (lambda: dlconv(_X((5, 2), "SB"), np.zeros((3, 2, 4)), None), FormatError,
     r"dlconv: X \(SB \(5, 2\)\) has no channel dimension C"),
    (lambda: dlconv(_X((2, 2, 2, 2, 2, 1), "SSSSCB"), np.zeros((1,) * 6), None), FormatError,
     r"dlconv: X .* must have 1 to 3 spatial"),
    (lambda: dlconv(_X((5, 5, 2, 0)), np.zeros((3, 3, 2, 4)), None), ShapeError,
     r"dlconv: the batch dimension"),
    (lambda: dltranspconv(_X(), np.zeros((3, 3, 4, 3)), None), ShapeError,
     r"dltranspconv: weights .* expect 3 input channels"),
    (lambda: dltranspconv(_X(), np.zeros((3, 3, 4, 2)), None, Cropping=8), ShapeError,
     r"dltranspconv: Cropping"),
    (lambda: dltranspconv(_X(), np.zeros((1, 1, 4, 2)), None, Stride=2, Cropping="same"),
     ShapeError, r"dltranspconv: Cropping \"same\" needs filters"),
    (lambda: dltranspconv(_X(), np.zeros((3, 3, 4, 2)), None, Stride=[1, -1]), ShapeError,
     r"dltranspconv: Stride"),
])
def test_errors_name_the_function_argument_and_shapes(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


def test_errors_are_raised_while_tracing():
    def bad(X, W):
        return dlconv(X, W, None)

    with pytest.raises(ShapeError, match="dlconv: weights"):
        lgc.dlfeval(bad, _X(), lgc.dlarray(np.zeros((3, 3, 5, 4))))


def test_conv_op_infer_names_the_op():
    from lgc.ir.types import TensorType
    from lgc.ops import get_op

    op = get_op("conv")
    x, w = TensorType("f64", (5, 5, 2, 1)), TensorType("f64", (3, 3, 3, 4, 1))
    attrs = op.normalize_attrs({"stride": (1, 1), "dilation": (1, 1),
                                "padding": ((0, 0), (0, 0))})
    with pytest.raises(ShapeError, match=r"conv: weights \(3, 3, 3, 4, 1\) expect 3 input"):
        op.infer([x, w], **attrs)
