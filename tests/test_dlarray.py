"""dlarray (API.md §1): formats and canonical order, dtypes, arithmetic, reductions, reshape,
indexing, matmul and NumPy interop, eager and inside dlfeval."""

import numpy as np
import pytest

import lgc
from lgc import dlarray, dlfeval, extractdata


def rand(*shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# --- formats and canonical order --------------------------------------------------------------


def test_bcss_becomes_sscb_with_data_permuted():
    x = rand(2, 3, 4, 5)  # N, C, H, W
    X = dlarray(x, "BCSS")
    assert X.shape == (4, 5, 3, 2) and X.fmt == "SSCB"
    np.testing.assert_array_equal(extractdata(X), x.transpose(2, 3, 1, 0))
    assert X.dtype == np.float32 and X.ndim == 4 and X.size == x.size


def test_tcb_becomes_cbt():
    x = rand(4, 3, 2)
    X = dlarray(x, "TCB")
    assert X.fmt == "CBT" and X.shape == (3, 2, 4)
    np.testing.assert_array_equal(extractdata(X), x.transpose(1, 2, 0))


@pytest.mark.parametrize("fmt", ["SSCB", "CSBS", "USCU", "BUSU", "TUCS", "SUSB"])
def test_repeated_labels_keep_relative_order(fmt):
    order = "SCBTU"
    expect_perm = tuple(sorted(range(len(fmt)), key=lambda i: order.index(fmt[i])))
    x = rand(2, 3, 4, 5)
    X = dlarray(x, fmt)
    assert X.fmt == "".join(fmt[p] for p in expect_perm)
    np.testing.assert_array_equal(extractdata(X), x.transpose(expect_perm))


def test_canonical_order_table():
    x = rand(2, 3, 4, 5)
    assert dlarray(x, "SSCB").fmt == "SSCB"
    X = dlarray(x, "USCU")  # S C U U: the first U (size 2) before the second (size 5)
    assert X.fmt == "SCUU" and X.shape == (3, 4, 2, 5)
    X = dlarray(x, "BUSU")
    assert X.fmt == "SBUU" and X.shape == (4, 2, 3, 5)


@pytest.mark.parametrize("fmt", ["CC", "BB", "TT", "SCBB", "CTCB"])
def test_c_b_t_at_most_once(fmt):
    with pytest.raises(lgc.FormatError, match="at most once"):
        dlarray(np.zeros((1,) * len(fmt), np.float32), fmt)


def test_fewer_labels_than_dims_is_format_error():
    with pytest.raises(lgc.FormatError, match=r"dlarray.*'CB'.*3"):
        dlarray(np.zeros((2, 3, 4), np.float32), "CB")


def test_invalid_label_is_format_error():
    with pytest.raises(lgc.FormatError, match="X"):
        dlarray(np.zeros((2, 3), np.float32), "CX")


def test_extra_labels_add_trailing_singletons():
    X = dlarray(rand(4, 3), "SSCB")
    assert X.shape == (4, 3, 1, 1) and X.fmt == "SSCB"
    X = dlarray(rand(5), "CB")
    assert X.shape == (5, 1) and X.fmt == "CB"
    X = dlarray(rand(5), "BC")
    assert X.shape == (1, 5) and X.fmt == "CB"


def test_trailing_singleton_u_dropped_after_second_dim():
    X = dlarray(rand(4, 3, 1, 1), "SUUU")
    assert X.shape == (4, 3) and X.fmt == "SU"
    X = dlarray(rand(4, 1, 1), "UUU")
    assert X.shape == (4, 1) and X.fmt == "UU"
    X = dlarray(rand(4, 3, 2, 1), "SUUU")
    assert X.shape == (4, 3, 2) and X.fmt == "SUU"
    X = dlarray(rand(4, 1), "CU")  # within the first two dims: kept
    assert X.shape == (4, 1) and X.fmt == "CU"


def test_unformatted_and_reformatting():
    x = rand(3, 2)
    X = dlarray(x)
    assert X.fmt == "" and lgc.dims(X) == "" and X.shape == (3, 2)
    Y = dlarray(X, "BC")
    assert Y.fmt == "CB" and Y.shape == (2, 3)
    assert dlarray(Y) is Y  # no format given: unchanged
    Z = lgc.stripdims(Y)
    assert Z.fmt == "" and Z.shape == (2, 3)
    np.testing.assert_array_equal(extractdata(Z), x.T)


def test_dims_and_finddim():
    X = dlarray(rand(2, 3, 4, 5), "SSCB")
    assert lgc.dims(X) == "SSCB" == X.fmt
    assert lgc.finddim(X, "S") == (0, 1)
    assert lgc.finddim(X, "C") == (2,)
    assert lgc.finddim(X, "B") == (3,)
    assert lgc.finddim(X, "T") == ()
    with pytest.raises(lgc.FormatError, match="finddim"):
        lgc.finddim(X, "Q")


def test_inputs_python_scalar_list_and_dlarray():
    assert dlarray(2.5).shape == () and float(dlarray(2.5)) == 2.5
    X = dlarray([[1.0, 2.0], [3.0, 4.0]], "CB")
    assert X.shape == (2, 2) and X.dtype == np.float64
    np.testing.assert_array_equal(extractdata(X), [[1, 2], [3, 4]])


# --- dtypes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_float_dtypes_kept(dt):
    X = dlarray(np.ones((2, 3), dt), "CB")
    assert X.dtype == dt and extractdata(X).dtype == dt
    assert (X * 2).dtype == dt and (X + 1.5).dtype == dt and lgc.exp(X).dtype == dt
    assert X.sum().dtype == dt and X.mean(0).dtype == dt


@pytest.mark.parametrize("dt", [np.int64, np.int32, np.int16, np.uint8])
def test_integer_arrays_allowed_and_consistent(dt):
    X = dlarray(np.arange(6, dtype=dt).reshape(2, 3))
    assert X.dtype.kind == "i"
    assert extractdata(X).dtype == X.dtype  # the data really has the advertised dtype
    np.testing.assert_array_equal(extractdata(X), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("bad", [np.zeros(3, np.complex64), np.zeros(3, np.complex128),
                                 np.array([object(), 1]), np.zeros(3, np.float16),
                                 np.array(["a", "b"])])
def test_unsupported_dtype_is_dtype_error(bad):
    with pytest.raises(lgc.DTypeError, match=str(bad.dtype)) as info:
        dlarray(bad)
    assert isinstance(info.value, TypeError) and isinstance(info.value, lgc.LgcError)


# --- arithmetic and math ----------------------------------------------------------------------


def test_arithmetic_matches_numpy_and_keeps_format():
    a, b = rand(3, 4, seed=1), np.abs(rand(3, 4, seed=2)) + 0.5
    A, B = dlarray(a, "CB"), dlarray(b, "CB")
    cases = [(A + B, a + b), (A - B, a - b), (A * B, a * b), (A / B, a / b),
             (B ** A, b ** a), (-A, -a), (A + 2, a + 2), (2 - A, 2 - a), (3 * A, 3 * a),
             (1 / B, 1 / b), (B ** 2, b ** 2), (2 ** A, 2 ** a), (abs(A), np.abs(a))]
    for got, want in cases:
        assert got.fmt == "CB" and got.shape == (3, 4)
        np.testing.assert_allclose(extractdata(got), want, rtol=1e-6)


def test_comparisons_give_boolean_dlarrays():
    a = rand(3, 4)
    A = dlarray(a, "CB")
    for got, want in [(A > 0, a > 0), (A >= 0, a >= 0), (A < 0.1, a < 0.1),
                      (A <= 0.1, a <= 0.1), (A == A, a == a), (A != 0, a != 0)]:
        assert got.fmt == "CB" and got.dtype == np.bool_
        np.testing.assert_array_equal(extractdata(got), want)


@pytest.mark.parametrize("name", ["abs", "exp", "log", "sqrt", "tanh", "sin", "cos"])
def test_math_functions_and_methods(name):
    x = np.abs(rand(2, 3, 4)) + 0.1
    X = dlarray(x, "SCB")
    want = getattr(np, name)(x)
    for got in (getattr(lgc, name)(X), getattr(X, name)()):
        assert got.fmt == "SCB" and got.dtype == np.float32
        np.testing.assert_allclose(extractdata(got), want, rtol=1e-6)


def test_formatted_with_different_formats_is_format_error():
    A = dlarray(rand(3, 4), "CB")
    with pytest.raises(lgc.FormatError, match=r"add.*CB.*CT"):
        A + dlarray(rand(3, 4), "CT")
    with pytest.raises(lgc.FormatError, match=r"mul.*SSCB.*CB"):
        dlarray(rand(2, 2, 3, 4), "SSCB") * A  # even though the shapes broadcast
    with pytest.raises(lgc.FormatError):
        lgc.maximum(A, dlarray(rand(3, 4), "SB"))


def test_unformatted_broadcasts_on_canonical_layout():
    x = rand(2, 3, 4, 5)
    X = dlarray(x, "BCSS")  # (4, 5, 3, 2) SSCB
    bias = rand(1, 1, 3, 1, seed=3)
    for Y in (X + dlarray(bias), X + bias, bias + X, X * dlarray(rand(3, 1, seed=4))):
        assert Y.fmt == "SSCB" and Y.shape == (4, 5, 3, 2)
    np.testing.assert_allclose(extractdata(X + bias), x.transpose(2, 3, 1, 0) + bias)


def test_broadcast_mismatch_is_shape_error():
    with pytest.raises(lgc.ShapeError, match=r"add.*\(3, 4\).*\(5,\)"):
        dlarray(rand(3, 4), "CB") + rand(5)


# --- reductions -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dim", [0, 2, -1, (0, 1), (1, 3)])
def test_partial_reductions_keep_dims_and_format(name, dim):
    x = rand(2, 3, 4, 5)
    X = dlarray(x, "SSCB")
    want = getattr(np, name)(x, axis=dim, keepdims=True)
    for got in (getattr(lgc, name)(X, dim), getattr(X, name)(dim)):
        assert got.fmt == "SSCB" and got.shape == want.shape
        np.testing.assert_allclose(extractdata(got), want, rtol=1e-5)


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("dim", [None, "all"])
def test_full_reductions_give_unformatted_scalar(name, dim):
    x = rand(2, 3, 4)
    X = dlarray(x, "SCB")
    got = getattr(lgc, name)(X) if dim is None else getattr(lgc, name)(X, dim)
    assert got.shape == () and got.fmt == ""
    np.testing.assert_allclose(float(got), getattr(np, name)(x), rtol=1e-5)
    assert getattr(X, name)(dim).shape == ()


# --- reshape and indexing ---------------------------------------------------------------------


def test_reshape_is_row_major_and_unformatted():
    x = rand(2, 3, 4)
    X = dlarray(x, "SCB")
    for got in (lgc.reshape(X, (4, 6)), X.reshape((4, 6)), X.reshape(4, 6), X.reshape(-1, 6),
                X.reshape((4, -1))):
        assert got.fmt == "" and got.shape == (4, 6)
        np.testing.assert_array_equal(extractdata(got), x.reshape(4, 6))
    assert X.reshape(-1).shape == (24,)
    assert X.reshape(2, 3, 4).fmt == ""  # same shape: still unformatted


def test_reshape_incompatible_is_shape_error():
    X = dlarray(rand(2, 3), "CB")
    with pytest.raises(lgc.ShapeError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        X.reshape(4, 2)
    with pytest.raises(lgc.ShapeError, match="reshape"):
        X.reshape(-1, 4)


def test_indexing_keeps_format():
    x = rand(4, 5, 3, 2)
    X = dlarray(x, "SSCB")
    cases = [(X[1:3], x[1:3], "SSCB"), (X[:, ::2], x[:, ::2], "SSCB"),
             (X[..., :1], x[..., :1], "SSCB"), (X[0], x[0], "SCB"),
             (X[:, :, 1, :], x[:, :, 1, :], "SSB"), (X[-1, 2], x[-1, 2], "CB"),
             (X[..., 1], x[..., 1], "SSC")]
    for got, want, fmt in cases:
        assert got.fmt == fmt and got.shape == want.shape
        np.testing.assert_array_equal(extractdata(got), want)


def test_indexing_out_of_range_is_shape_error():
    X = dlarray(rand(2, 3), "CB")
    with pytest.raises(lgc.ShapeError, match=r"index.*5.*size 2"):
        X[5]
    with pytest.raises(lgc.ShapeError, match=r"index.*\(2, 3\)"):
        X[0, 0, 0]


# --- matmul -----------------------------------------------------------------------------------


def test_matmul_unformatted_2d():
    a, b = rand(3, 4, seed=1), rand(4, 2, seed=2)
    for got in (dlarray(a) @ dlarray(b), dlarray(a) @ b, a @ dlarray(b),
                lgc.matmul(dlarray(a), b)):
        assert isinstance(got, lgc.DLArray) and got.fmt == "" and got.shape == (3, 2)
        np.testing.assert_allclose(extractdata(got), a @ b, rtol=1e-5)


def test_matmul_formatted_is_format_error():
    with pytest.raises(lgc.FormatError, match=r"matmul.*CB.*fullyconnect"):
        dlarray(rand(3, 4), "CB") @ dlarray(rand(4, 2))


def test_matmul_shape_mismatch_is_shape_error():
    with pytest.raises(lgc.ShapeError, match=r"matmul.*\(3, 4\).*\(3, 2\)"):
        dlarray(rand(3, 4)) @ dlarray(rand(3, 2))


# --- NumPy interop ----------------------------------------------------------------------------


def test_numpy_interop():
    x = rand(3, 4)
    X = dlarray(x, "CB")
    np.testing.assert_array_equal(np.asarray(X), extractdata(X))
    assert np.asarray(X, dtype=np.float64).dtype == np.float64
    for got in (X + x, x + X, x * X, X - x, x - X):
        assert isinstance(got, lgc.DLArray) and got.fmt == "CB"
    np.testing.assert_allclose(extractdata(x - X), np.zeros_like(x))
    E = np.exp(X)
    assert isinstance(E, lgc.DLArray) and E.fmt == "CB"
    np.testing.assert_allclose(extractdata(E), np.exp(x), rtol=1e-6)
    assert isinstance(np.maximum(X, 0), lgc.DLArray)
    assert np.allclose(np.sum(np.asarray(X)), x.sum())
    assert float(dlarray(3.0)) == 3.0 and int(dlarray(np.int64(4))) == 4
    assert len(X) == 3


def test_extractdata_of_numpy_array_is_identity():
    x = rand(2)
    np.testing.assert_array_equal(extractdata(x), x)


# --- the same inside dlfeval ------------------------------------------------------------------


def test_operations_traced_match_eager():
    x, bias = rand(2, 3, 4, 5), rand(1, 1, 4, 1, seed=5)

    def f(X):
        Y = (X * 2 - 1) / 3 + bias
        Y = lgc.exp(lgc.tanh(Y)) + abs(lgc.sin(X)) ** 2 + abs(lgc.cos(X)).sqrt()
        parts = (Y.sum(2), lgc.mean(Y, (0, 1)), lgc.max(Y, 3), Y.min(), Y[0, 1:],
                 lgc.reshape(Y, (-1, 5)), dlarray(lgc.stripdims(Y), "SSCB"), Y > 2)
        return parts

    X = dlarray(x, "SSCB")
    eager = f(X)
    traced = dlfeval(f, X)
    for e, t in zip(eager, traced):
        assert isinstance(t, lgc.DLArray) and not t.is_traced
        assert t.fmt == e.fmt and t.shape == e.shape and t.dtype == e.dtype
        np.testing.assert_allclose(extractdata(t), extractdata(e), rtol=1e-5, atol=1e-6)


def test_canonicalization_inside_dlfeval():
    x = rand(2, 3, 4, 5)
    out = dlfeval(lambda X: dlarray(lgc.stripdims(X), "BCSS"), dlarray(x))
    assert out.fmt == "SSCB" and out.shape == (4, 5, 3, 2)
    np.testing.assert_array_equal(extractdata(out), x.transpose(2, 3, 1, 0))
