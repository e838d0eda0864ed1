"""User mistakes raise an `lgc.LgcError` subclass naming the function and the shapes (API.md §8).

One table: (callable, expected error class, substrings the message must contain). A guard test
makes sure every public function of the dlarray / functional / transforms surface has a row.
"""

import numpy as np
import pytest

import lgc
from lgc import (
    DTypeError,
    FormatError,
    LgcError,
    ShapeError,
    TraceError,
    dlarray,
    dlfeval,
    dlgradient,
)

X = dlarray(np.ones((2, 3), np.float32), "CB")  # (C=2, B=3)
X4 = dlarray(np.ones((2, 3, 4, 5), np.float32), "SSCB")
U = dlarray(np.ones((2, 3), np.float32))  # unformatted
I = dlarray(np.arange(3))  # noqa: E741  (an integer array)


def traced(fn):
    """Run `fn(X)` inside dlfeval, so the error is raised while tracing."""
    return lambda: dlfeval(fn, X)



CASES = [
    # --- dlarray and formats
    ("dlarray", lambda: dlarray(np.ones((2, 2)), "CC"), FormatError, ["dlarray", "C", "'CC'"]),
    ("dlarray", lambda: dlarray(np.ones((2, 3, 4)), "CB"), FormatError,
     ["dlarray", "'CB'", "(2, 3, 4)"]),
    ("dlarray", lambda: dlarray(np.ones(2), "CX"), FormatError, ["dlarray", "X", "'CX'"]),
    ("dlarray", lambda: dlarray(np.ones(2), 5), FormatError, ["dlarray", "5"]),
    ("dlarray", lambda: dlarray(np.ones(2, np.complex64)), DTypeError, ["dlarray", "complex64"]),
    ("dlarray", lambda: dlarray(np.array(["a"])), DTypeError, ["dlarray", "<U1"]),
    ("dims", lambda: lgc.dims(X) + lgc.finddim(X, "Z"), FormatError, ["finddim", "'Z'"]),
    ("finddim", lambda: lgc.finddim(X, "CB"), FormatError, ["finddim", "'CB'"]),
    ("extractdata", traced(lambda A: lgc.extractdata(A)), TraceError,
     ["extractdata", "f32[2,3]{CB}"]),
    ("stripdims", lambda: lgc.stripdims(np.ones(2, np.complex128)), DTypeError,
     ["dlarray", "complex128"]),
    # --- elementwise math and broadcasting
    ("exp", lambda: lgc.exp(I), DTypeError, ["exp", "i64", "(3,)"]),
    ("log", lambda: lgc.log(I), DTypeError, ["log", "i64", "(3,)"]),
    ("sqrt", lambda: lgc.sqrt(I), DTypeError, ["sqrt", "i64", "(3,)"]),
    ("abs", lambda: lgc.abs("x"), DTypeError, ["abs", "<U1"]),
    ("sin", lambda: lgc.sin(np.ones(2, np.complex128)), DTypeError, ["sin", "complex128"]),
    ("cos", lambda: lgc.cos(None), DTypeError, ["cos", "NoneType"]),
    ("tanh", lambda: lgc.tanh(I), DTypeError, ["tanh", "i64", "(3,)"]),
    ("add", lambda: X + np.ones((4, 4)), ShapeError, ["add", "(2, 3)", "(4, 4)"]),
    ("sub", lambda: X - dlarray(np.ones((2, 3), np.float32), "CT"), FormatError,
     ["sub", "CB", "CT"]),
    ("mul", lambda: X4 * X, FormatError, ["mul", "SSCB", "(2, 3, 4, 5)", "CB", "(2, 3)"]),
    ("pow", lambda: X ** 1j, DTypeError, ["pow", "complex"]),
    ("div", lambda: X / "a", DTypeError, ["div", "<U1"]),
    ("maximum", lambda: lgc.maximum(X, np.ones(4)), ShapeError, ["maximum", "(2, 3)", "(4,)"]),
    ("minimum", lambda: lgc.minimum(X, dlarray(np.ones((2, 3)), "SB")), FormatError,
     ["minimum", "CB", "SB"]),
    ("where", lambda: lgc.where(X > 0, X, np.ones(5)), ShapeError, ["where", "(2, 3)", "(5,)"]),
    ("compare", lambda: X > np.ones(4), ShapeError, ["greater", "(2, 3)", "(4,)"]),
    # --- reductions
    ("sum", lambda: lgc.sum(X, 2), ShapeError, ["sum", "2", "(2, 3)"]),
    ("sum", lambda: X.sum("rows"), ShapeError, ["sum", "'rows'"]),
    ("mean", lambda: lgc.mean(X, (0, 5)), ShapeError, ["mean", "5", "(2, 3)"]),
    ("max", lambda: lgc.max(X, -3), ShapeError, ["max", "-3", "(2, 3)"]),
    ("min", lambda: lgc.min(X, 1.5), ShapeError, ["min", "1.5"]),
    # --- shape
    ("reshape", lambda: lgc.reshape(X, (4, 2)), ShapeError, ["reshape", "(2, 3)", "(4, 2)"]),
    ("reshape", lambda: X.reshape(-1, 4), ShapeError, ["reshape", "(2, 3)", "(-1, 4)"]),
    ("reshape", lambda: X.reshape(-2, -3), ShapeError, ["reshape", "(2, 3)", "(-2, -3)"]),
    ("reshape", lambda: X.reshape(2.5, 2), ShapeError, ["reshape", "(2, 3)", "2.5"]),
    ("index", lambda: X[2], ShapeError, ["index", "2", "(2, 3)"]),
    ("index", lambda: X[0, 0, 0], ShapeError, ["index", "3", "(2, 3)"]),
    ("index", lambda: X[[0, 1]], DTypeError, ["index", "(2, 3)", "lgc.where"]),
    ("float", lambda: float(X), ShapeError, ["float()", "(2, 3)"]),
    ("bool", lambda: bool(X), ShapeError, ["branching", "(2, 3)"]),
    ("len", lambda: len(dlarray(1.0)), ShapeError, ["len()", "0-d"]),
    ("astype", lambda: X.astype(np.complex64), DTypeError, ["astype", "complex64"]),
    # --- matmul
    ("matmul", lambda: lgc.matmul(U, U), ShapeError, ["matmul", "(2, 3)"]),
    ("matmul", lambda: X @ U.reshape(3, 2), FormatError, ["matmul", "CB", "(2, 3)"]),
    ("matmul", lambda: U.reshape(1, 2, 3) @ U.reshape(3, 2), ShapeError,
     ["matmul", "(1, 2, 3)", "(3, 2)"]),
    # --- activations
    ("relu", lambda: lgc.relu(I), DTypeError, ["relu", "i64", "(3,)"]),
    ("relu", lambda: lgc.relu(np.array(["a"])), DTypeError, ["relu", "<U1"]),
    ("relu", lambda: lgc.relu(X, DataFormat="CB"), FormatError, ["relu", "CB", "DataFormat"]),
    ("sigmoid", lambda: lgc.sigmoid(dlarray(np.ones((2, 0)), "CB")), ShapeError,
     ["sigmoid", "batch", "(2, 0)"]),
    ("tanh", lambda: lgc.tanh(U, DataFormat="CC"), FormatError, ["tanh", "'CC'", "(2, 3)"]),
    ("mse", lambda: lgc.mse(U, np.ones((2, 3, 4)), DataFormat="CB"), FormatError,
     ["mse", "T", "(2, 3, 4)", "'CB'"]),
    ("leakyrelu", lambda: lgc.leakyrelu(X, np.ones(3)), ShapeError,
     ["leakyrelu", "scaleFactor", "(3,)"]),
    ("leakyrelu", lambda: lgc.leakyrelu(X, [0.1, 0.2]), ShapeError,
     ["leakyrelu", "scaleFactor", "(2,)"]),
    ("leakyrelu", lambda: lgc.leakyrelu(X, "a"), ShapeError, ["leakyrelu", "scaleFactor"]),
    # --- softmax
    ("softmax", lambda: lgc.softmax(dlarray(np.ones((3, 4)), "SB")), FormatError,
     ["softmax", "SB", "(3, 4)", "C"]),
    ("softmax", lambda: lgc.softmax(U), FormatError, ["softmax", "(2, 3)", "DataFormat"]),
    ("softmax", lambda: lgc.softmax(X, DataFormat="CB"), FormatError,
     ["softmax", "CB", "DataFormat"]),
    ("softmax", lambda: lgc.softmax(I, DataFormat="C"), DTypeError, ["softmax", "i64", "(3,)"]),
    # --- fullyconnect
    ("fullyconnect", lambda: lgc.fullyconnect(X4, np.ones((3, 5)), 0), ShapeError,
     ["fullyconnect", "weights", "(3, 5)", "(2, 3, 4, 5)", "24"]),
    ("fullyconnect", lambda: lgc.fullyconnect(X, np.ones(2), 0), ShapeError,
     ["fullyconnect", "weights", "(2,)"]),
    ("fullyconnect", lambda: lgc.fullyconnect(X, np.ones((4, 2)), np.ones(3)), ShapeError,
     ["fullyconnect", "bias", "4", "(3,)"]),
    ("fullyconnect", lambda: lgc.fullyconnect(U, np.ones((4, 2)), 0), FormatError,
     ["fullyconnect", "(2, 3)", "DataFormat"]),
    ("fullyconnect", lambda: lgc.fullyconnect(dlarray(np.ones((2, 0)), "CB"), np.ones((4, 2))),
     ShapeError, ["fullyconnect", "batch", "(2, 0)"]),
    # --- losses
    ("crossentropy", lambda: lgc.crossentropy(X, np.ones((2, 4))), ShapeError,
     ["crossentropy", "(2, 3)", "(2, 4)"]),
    ("crossentropy", lambda: lgc.crossentropy(X, X, NormalizationFactor="mean"), ShapeError,
     ["crossentropy", "NormalizationFactor", "'mean'"]),
    ("crossentropy", lambda: lgc.crossentropy(X, X, ClassificationMode="multi"), ShapeError,
     ["crossentropy", "ClassificationMode", "'multi'"]),
    ("crossentropy", lambda: lgc.crossentropy(X, dlarray(np.ones((2, 3)), "CT")), FormatError,
     ["crossentropy", "CB", "CT"]),
    ("crossentropy", lambda: lgc.crossentropy(X, X, Weights=np.ones(5)), ShapeError,
     ["crossentropy", "Weights", "(5,)", "(2, 3)"]),
    ("crossentropy", lambda: lgc.crossentropy(X, X, Mask=np.ones(3)), ShapeError,
     ["crossentropy", "Mask", "(3,)", "(2, 3)"]),
    ("crossentropy", lambda: lgc.crossentropy(dlarray(np.ones((2, 3), int), "CB"), X),
     DTypeError, ["crossentropy", "Y", "i64", "(2, 3)"]),
    ("mse", lambda: lgc.mse(X, np.ones((3, 2))), ShapeError, ["mse", "(2, 3)", "(3, 2)"]),
    ("mse", lambda: lgc.mse(dlarray(np.ones((2, 0)), "CB"), np.ones((2, 0))), ShapeError,
     ["mse", "batch", "(2, 0)"]),
    ("l2loss", lambda: lgc.l2loss(X, np.ones(6)), ShapeError, ["l2loss", "(2, 3)", "(6,)"]),
    ("l2loss", lambda: lgc.l2loss(X, X, NormalizationFactor=2), ShapeError,
     ["l2loss", "NormalizationFactor", "2"]),
    ("l2loss", lambda: lgc.l2loss(X, X, Mask=np.ones((3, 2))), ShapeError,
     ["l2loss", "Mask", "(3, 2)", "(2, 3)"]),
    # --- one-hot coding
    ("onehotencode", lambda: lgc.onehotencode(np.array([1, 2]), 2), ShapeError,
     ["onehotencode", "featureDim", "2", "(2,)"]),
    ("onehotencode", lambda: lgc.onehotencode(np.array([1, 2]), "x"), ShapeError,
     ["onehotencode", "featureDim", "(2,)"]),
    ("onehotencode", lambda: lgc.onehotencode(np.array([1, 2]), 0, ClassNames=[1]), ShapeError,
     ["onehotencode", "ClassNames", "[2]", "(2,)"]),
    ("onehotencode", traced(lambda A: lgc.onehotencode(A, 0)), TraceError, ["onehotencode"]),
    ("onehotdecode", lambda: lgc.onehotdecode(np.ones((3, 4)), ["a", "b"], 0), ShapeError,
     ["onehotdecode", "(3, 4)", "3", "2 classes"]),
    ("onehotdecode", lambda: lgc.onehotdecode(np.ones((3, 4)), [1, 2, 3], 2), ShapeError,
     ["onehotdecode", "featureDim", "(3, 4)"]),
    ("onehotdecode", traced(lambda A: lgc.onehotdecode(A, [1, 2], 0)), TraceError,
     ["onehotdecode"]),
    # --- dropout
    ("dropout", lambda: lgc.dropout(X, 1.5), ShapeError, ["dropout", "1.5"]),
    ("dropout", lambda: lgc.dropout(X, 1), ShapeError, ["dropout", "[0, 1)"]),
    ("dropout", lambda: lgc.dropout(X, -0.1), ShapeError, ["dropout", "-0.1"]),
    ("dropout", lambda: lgc.dropout(X, "half"), ShapeError, ["dropout", "'half'"]),
    ("dropout", lambda: lgc.dropout(I), DTypeError, ["dropout", "i64", "(3,)"]),
    ("dropout", lambda: lgc.dropout(dlarray(np.ones((2, 0)), "CB")), ShapeError,
     ["dropout", "batch", "(2, 0)"]),
    # --- transforms
    ("dlfeval", lambda: dlfeval(3, X), TraceError, ["dlfeval", "int"]),
    ("dlfeval", lambda: dlfeval(lambda a: a, np.ones(2, np.complex128)), DTypeError,
     ["dlfeval", "argument a", "complex128"]),
    ("dlfeval", traced(lambda A: dlfeval(lambda B: B, A)), TraceError, ["nested"]),
    ("dlfeval", traced(lambda A: float(A[0, 0])), TraceError, ["float()", "f32[]", "lgc.where"]),
    ("dlgradient", lambda: dlgradient(lgc.sum(X), X), TraceError, ["dlgradient", "dlfeval"]),
    ("dlgradient", traced(lambda A: dlgradient(A, A)), TraceError,
     ["dlgradient", "one-element", "f32[2,3]{CB}"]),
    ("dlgradient", traced(lambda A: dlgradient(lgc.sum(X), A)), TraceError,
     ["dlgradient", "traced inputs", "DLArray"]),
    ("dlgradient", traced(lambda A: dlgradient(lgc.sum(A), "A")), TraceError,
     ["dlgradient", "x1", "str"]),
    ("dlgradient", traced(lambda A: dlgradient(lgc.sum(A), {"w": X})), TraceError,
     ["dlgradient", "x1 at w", "not a traced dlarray"]),
    ("trace", lambda: lgc.trace(None, X), TraceError, ["trace", "NoneType"]),
    ("trace", lambda: lgc.trace(lambda A: bool(A.sum() > 0), X), TraceError,
     ["branching", "bool[]", "lgc.where"]),
    ("grad", lambda: lgc.grad(lambda A: lgc.sum(A), argnums=1)(X), TraceError,
     ["grad", "argnums", "1", "1 arguments"]),
    ("grad", lambda: lgc.grad(lambda A: A)(X), TraceError, ["dlgradient", "f32[2,3]{CB}"]),
    ("value_and_grad", lambda: lgc.value_and_grad(lambda A: A, argnums="0"), TraceError,
     ["value_and_grad", "argnums", "'0'"]),
    ("value_and_grad", lambda: lgc.value_and_grad(lambda A, B: lgc.sum(A), argnums=(0, 3))(X, X),
     TraceError, ["value_and_grad", "(0, 3)", "2 arguments"]),
    # --- containers, backends, random numbers
    ("Table", lambda: lgc.Table(["fc"], ["W", "b"], [X]), ShapeError, ["Table", "1, 2 and 1"]),
    ("set_backend", lambda: lgc.set_backend("fortran"), LgcError, ["fortran"]),
    ("rng", lambda: lgc.rng("abc"), DTypeError, ["rng", "'abc'"]),
    ("rng", lambda: lgc.rng(-1), DTypeError, ["rng", "-1"]),
]


@pytest.mark.parametrize("name,call,cls,parts", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_user_mistake_raises_lgc_error_naming_function_and_shapes(name, call, cls, parts):
    with pytest.raises(cls) as info:
        call()
    assert isinstance(info.value, LgcError)
    msg = str(info.value)
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_dtype_error_is_also_a_type_error():
    with pytest.raises(TypeError):
        dlarray(np.ones(2, np.complex64))
    assert issubclass(DTypeError, TypeError) and issubclass(DTypeError, LgcError)
    for cls in (lgc.GraphError, ShapeError, FormatError, TraceError, lgc.CompileError):
        assert issubclass(cls, LgcError)


OWN_MODULES = {"lgc.dlarray", "lgc.functional", "lgc.transforms", "lgc.table", "lgc.ir.trace"}
NO_USER_INPUT = {"DLArray", "Program", "get_backend"}  # classes built internally / no args


def test_every_public_function_has_an_error_case():
    covered = {c[0] for c in CASES}
    missing = [n for n in lgc.__all__
               if getattr(getattr(lgc, n), "__module__", "") in OWN_MODULES
               and n not in NO_USER_INPUT and n not in covered]
    assert not missing, f"no error case for {missing}"
