"""The MATLAB deep learning functions on dlarrays (API.md §2): activations, fullyconnect,
softmax, losses, one-hot coding, dropout.

Each validates its arguments in user vocabulary (the function, the argument, the shapes), then
builds IR through `apply`; none computes numbers itself.
"""

from __future__ import annotations

import numpy as np

from .dlarray import (
    DLArray,
    apply,
    canonical_order,
    dims,
    dlarray,
    finddim,
    log,
    maximum,
    minimum,
    provenance,
    reshape,
    stripdims,
)
from .dlarray import sum as _sum
from .errors import DTypeError, FormatError, ShapeError, TraceError
from .ir.types import dtype_name, is_float


def _as_dlarray(fn: str, arg: str, x) -> DLArray:
    """`x` as a DLArray; an unsupported dtype raises DTypeError naming the function."""
    if isinstance(x, DLArray):
        return x
    arr = np.asarray(x)
    dtype_name(arr.dtype, f"{fn}: {arg} of shape {arr.shape}")
    return dlarray(arr)


def _formatted(fn: str, x, DataFormat):  # noqa: N803
    """X as a formatted DLArray, plus whether the caller passed unformatted data."""
    x = _as_dlarray(fn, "X", x)
    if x.fmt:
        if DataFormat:
            raise FormatError(f"{fn}: X is already formatted ({x.fmt}); DataFormat applies only "
                              f"to unformatted input")
        return x, False
    if not DataFormat:
        raise FormatError(f"{fn}: X is unformatted {x.shape}; pass a formatted dlarray or "
                          f"DataFormat=")
    return _with_format(fn, "X", x, DataFormat), True


def _with_format(fn: str, arg: str, x, DataFormat: str) -> DLArray:  # noqa: N803
    try:
        return dlarray(x, DataFormat)
    except FormatError as e:
        raise FormatError(f"{fn}: DataFormat does not fit {arg} of shape {np.shape(x)}: "
                          f"{e}") from None


def _unformatted_like(y: DLArray, in_shape: tuple[int, ...], DataFormat: str):  # noqa: N803
    """The unformatted result for DataFormat= input. A result in the input's format comes back
    in the caller's dimension order and shape (MATLAB keeps the input's layout); any other
    result (fullyconnect's "CB") just loses its labels."""
    perm = canonical_order(DataFormat)
    if y.fmt != "".join(DataFormat[p] for p in perm)[:y.ndim]:
        return stripdims(y)
    y = reshape(y, [y.shape[i] if i < y.ndim else 1 for i in range(len(perm))])
    inv = [perm.index(i) for i in range(len(perm))]
    if inv != list(range(len(perm))):
        y = apply("transpose", y, perm=inv)
    return reshape(y, in_shape)


def _check_batch(fn: str, x: DLArray, arg: str = "X") -> None:
    for d in finddim(x, "B"):
        if x.shape[d] == 0:
            raise ShapeError(f"{fn}: the batch dimension of {arg} {x.shape} ({x.fmt}) is empty")


def _check_float(fn: str, arg: str, x) -> None:
    dt = x._type.dtype if isinstance(x, DLArray) else None
    if dt is not None and not is_float(dt):
        raise DTypeError(f"{fn}: {arg} must be a float32 or float64 array, got {dt} {x.shape}")


def _as_column(fn: str, arg: str, v, n: int):
    """A parameter vector given in any shape with `n` elements (or one element, shared by all
    rows as MATLAB allows for a scalar bias), as an (n, 1) or (1, 1) array."""
    size = v.size if isinstance(v, DLArray) else np.size(v)
    if size not in (n, 1):
        raise ShapeError(f"{fn}: {arg} must have {n} elements (or 1), got shape {np.shape(v)}")
    return reshape(v, (size, 1))


# --- activations ------------------------------------------------------------------------------


def _activation(op, fn, x, DataFormat=None, **attrs):  # noqa: N803
    with provenance(fn):
        x = _as_dlarray(fn, "X", x)
        _check_float(fn, "X", x)
        # elementwise: DataFormat only validates, the caller's layout is kept as it is
        _check_batch(fn, _formatted(fn, x, DataFormat)[0] if DataFormat else x)
        return apply(op, x, **attrs)


def relu(X, DataFormat=None):  # noqa: N803
    """relu(X) — max(X, 0), format kept."""
    return _activation("relu", "relu", X, DataFormat)


def leakyrelu(X, scaleFactor=0.01, DataFormat=None):  # noqa: N803
    """leakyrelu(X, scaleFactor) — X where X > 0, else scaleFactor·X (default 0.01)."""
    if isinstance(scaleFactor, DLArray) or np.ndim(scaleFactor) != 0 or \
            not np.isreal(scaleFactor) or isinstance(scaleFactor, str | bool):
        raise ShapeError(f"leakyrelu: scaleFactor must be a real scalar, got "
                         f"{type(scaleFactor).__name__} of shape {np.shape(scaleFactor)}")
    return _activation("leakyrelu", "leakyrelu", X, DataFormat, scale=float(scaleFactor))


def sigmoid(X, DataFormat=None):  # noqa: N803
    """sigmoid(X) — 1 / (1 + exp(−X)), format kept."""
    return _activation("sigmoid", "sigmoid", X, DataFormat)


def tanh(X, DataFormat=None):  # noqa: N803
    """tanh(X) — hyperbolic tangent, format kept."""
    return _activation("tanh", "tanh", X, DataFormat)


def softmax(X, DataFormat=None):  # noqa: N803
    """softmax(X) — softmax over the channel dimension C, numerically stable.

    Example: `Y = softmax(dlarray(scores, "CB"))`.
    """
    with provenance("softmax"):
        x, strip = _formatted("softmax", X, DataFormat)
        _check_float("softmax", "X", x)
        (c,) = finddim(x, "C") or (None,)
        if c is None:
            raise FormatError(f"softmax: X ({x.fmt} {x.shape}) has no channel dimension C")
        _check_batch("softmax", x)
        y = apply("softmax", x, axis=c)
        return _unformatted_like(y, np.shape(X), DataFormat) if strip else y


# --- fullyconnect -----------------------------------------------------------------------------


def fullyconnect(X, weights, bias=None, DataFormat=None):  # noqa: N803
    """fullyconnect(X, weights, bias) — weights · (features of each observation) + bias.

    Args:
        X: formatted dlarray (or unformatted with DataFormat=). The features of an observation
           are its S, C and U dimensions, flattened as MATLAB does (first S fastest, C slowest);
           with a T dimension, each time step is connected separately.
        weights: (outputSize, inputSize).
        bias: outputSize elements in any shape, or None.
    Returns:
        A dlarray formatted "CB" (or "CBT" with time).
    """
    with provenance("fullyconnect"):
        x, strip = _formatted("fullyconnect", X, DataFormat)
        _check_float("fullyconnect", "X", x)
        _check_batch("fullyconnect", x)
        w = weights if isinstance(weights, DLArray) else np.asarray(weights)
        if w.ndim != 2:
            raise ShapeError(f"fullyconnect: weights must be 2-D (outputSize, inputSize), got "
                             f"shape {w.shape}")
        feat = [i for i, c in enumerate(x.fmt) if c in "SCU"]
        bdim, tdim = finddim(x, "B"), finddim(x, "T")
        nfeat = int(np.prod([x.shape[i] for i in feat], dtype=np.int64))
        if w.shape[1] != nfeat:
            raise ShapeError(f"fullyconnect: weights {w.shape} expect {w.shape[1]} input "
                             f"features but X ({x.fmt} {x.shape}) has {nfeat} per observation")
        # MATLAB flattens column-major (first S fastest): row-major over the reversed dims.
        perm = feat[::-1] + list(bdim) + list(tdim)
        xt = stripdims(x)
        if perm != list(range(x.ndim)):
            xt = apply("transpose", xt, perm=perm)
        n = x.shape[bdim[0]] if bdim else 1
        t = x.shape[tdim[0]] if tdim else 1
        y = apply("matmul", stripdims(w) if isinstance(w, DLArray) else w,
                  reshape(xt, (nfeat, n * t)))
        if bias is not None:
            y = y + _as_column("fullyconnect", "bias", bias, w.shape[0])
        if tdim:
            y = dlarray(reshape(y, (w.shape[0], n, t)), "CBT")
        else:
            y = dlarray(y, "CB")
        return stripdims(y) if strip else y


# --- losses -----------------------------------------------------------------------------------


def _canonical(fn: str, arg: str, v, DataFormat):  # noqa: N803
    """An unformatted operand given in the caller's DataFormat layout, in canonical layout."""
    if not DataFormat or v is None or dims(v):
        return v
    if np.ndim(v) > len(DataFormat):
        raise FormatError(f"{fn}: DataFormat {DataFormat!r} has {len(DataFormat)} labels but "
                          f"{arg} has shape {np.shape(v)}")
    return stripdims(_with_format(fn, arg, v, DataFormat))


def _pair(fn: str, Y, T, DataFormat=None):  # noqa: N803
    if DataFormat:
        Y, _ = _formatted(fn, Y, DataFormat)
        T = _canonical(fn, "T", T, DataFormat)
    y = _as_dlarray(fn, "Y", Y)
    _check_float(fn, "Y", y)
    if isinstance(T, DLArray):
        t = T
    else:
        t = np.asarray(T)
        t = t.astype(y.dtype) if t.dtype.kind in "biu" else t
    if tuple(np.shape(t)) != y.shape:
        raise ShapeError(f"{fn}: Y {y.shape} ({y.fmt or 'unformatted'}) and T {np.shape(t)} "
                         f"({dims(t) or 'unformatted'}) must have the same size")
    if dims(t) and y.fmt and dims(t) != y.fmt:
        raise FormatError(f"{fn}: Y is {y.fmt} but T is {dims(t)}")
    if isinstance(t, DLArray) and t.fmt != y.fmt:
        t = apply("relabel", t, fmt=y.fmt)
    if isinstance(t, DLArray) and not is_float(t._type.dtype):
        t = t.astype(y.dtype)
    _check_batch(fn, y, "Y")
    return y, t


def _masked(fn: str, y: DLArray, terms, Mask, DataFormat):  # noqa: N803
    if Mask is None:
        return terms
    Mask = _canonical(fn, "Mask", Mask, DataFormat)
    if np.shape(Mask) != y.shape:
        raise ShapeError(f"{fn}: Mask {np.shape(Mask)} must have the size of Y {y.shape}")
    return terms * (Mask if isinstance(Mask, DLArray) else np.asarray(Mask, y.dtype))


def _batch_size(y: DLArray) -> int:
    b = finddim(y, "B")
    return y.shape[b[0]] if b else 1


def _normalizer(fn: str, y: DLArray, factor: str) -> float:
    if factor == "batch-size":
        return float(_batch_size(y))
    if factor == "all-elements":
        return float(y.size)
    if factor == "none":
        return 1.0
    raise ShapeError(f"{fn}: NormalizationFactor must be 'batch-size', 'all-elements' or "
                     f"'none', got {factor!r}")


def _class_weights(fn: str, y: DLArray, weights, DataFormat=None):  # noqa: N803
    """Weights with one element per class, shaped to broadcast along C; or elementwise."""
    if weights is None:
        return None
    if np.size(weights) == y.size and np.ndim(weights) == len(DataFormat or y.fmt or "x" * y.ndim):
        return _canonical(fn, "Weights", weights, DataFormat)
    c = finddim(y, "C")
    if not c or np.size(weights) != y.shape[c[0]]:
        raise ShapeError(f"{fn}: Weights {np.shape(weights)} must have one element per class "
                         f"(size of C in Y {y.fmt} {y.shape}) or the size of Y")
    shape = [1] * y.ndim
    shape[c[0]] = y.shape[c[0]]
    return reshape(weights, shape)


def crossentropy(Y, T, ClassificationMode="single-label",  # noqa: N803
                 NormalizationFactor="batch-size", Mask=None, Weights=None, DataFormat=None):
    """crossentropy(Y, T) — cross-entropy loss between probabilities Y and targets T.

    single-label: −Σ T·log Y / N; multilabel: −Σ [T log Y + (1−T) log(1−Y)] / N, where N is
    the size of B ("batch-size"), the number of elements ("all-elements") or 1 ("none"). Y is
    clamped to [eps, 1−eps] of its dtype before the log. Mask multiplies each element; Weights
    has one element per class (or Y's size). Returns an unformatted scalar dlarray.
    """
    with provenance("crossentropy"):
        y, t = _pair("crossentropy", Y, T, DataFormat)
        n = _normalizer("crossentropy", y, NormalizationFactor)
        eps = float(np.finfo(y.dtype).eps)
        yc = maximum(minimum(y, 1.0 - eps), eps)
        if ClassificationMode == "single-label":
            terms = t * log(yc)
        elif ClassificationMode == "multilabel":
            terms = t * log(yc) + (1.0 - t) * log(1.0 - yc)
        else:
            raise ShapeError(f"crossentropy: ClassificationMode must be 'single-label' or "
                             f"'multilabel', got {ClassificationMode!r}")
        w = _class_weights("crossentropy", y, Weights, DataFormat)
        if w is not None:
            terms = terms * w
        terms = _masked("crossentropy", y, terms, Mask, DataFormat)
        return _sum(terms) * (-1.0 / n)


def mse(Y, T, DataFormat=None):  # noqa: N803
    """mse(Y, T) — HALF mean squared error Σ (Y−T)² / (2N), N = size of B (1 when none).

    MATLAB difference: none; note N counts observations, not elements.
    """
    with provenance("mse"):
        y, t = _pair("mse", Y, T, DataFormat)
        d = y - t
        return _sum(d * d) * (0.5 / _batch_size(y))


def l2loss(Y, T, NormalizationFactor="batch-size", Mask=None, Weights=None,  # noqa: N803
           DataFormat=None):
    """l2loss(Y, T) — Σ (Y−T)² / N (not halved); N as in crossentropy."""
    with provenance("l2loss"):
        y, t = _pair("l2loss", Y, T, DataFormat)
        n = _normalizer("l2loss", y, NormalizationFactor)
        d = y - t
        terms = d * d
        w = _class_weights("l2loss", y, Weights, DataFormat)
        if w is not None:
            terms = terms * w
        terms = _masked("l2loss", y, terms, Mask, DataFormat)
        return _sum(terms) * (1.0 / n)


# --- one-hot coding ---------------------------------------------------------------------------


def onehotencode(labels, featureDim, ClassNames=None):  # noqa: N803
    """onehotencode(labels, featureDim) — one-hot encode along a new dimension `featureDim`.

    N labels with featureDim=0 give a (K, N) float32 array; the classes are `ClassNames`,
    default the sorted unique labels. When labels already have a size-1 dimension at
    featureDim (an (N, 1) column with featureDim=1) it is replaced, as in MATLAB, giving (N, K).
    MATLAB difference: 0-based featureDim.
    """
    if isinstance(labels, DLArray) and labels.is_traced:
        raise TraceError("onehotencode: labels must be concrete; encode them before dlfeval")
    lab = np.asarray(labels)
    classes = np.unique(lab) if ClassNames is None else np.asarray(ClassNames)
    if isinstance(featureDim, bool) or not isinstance(featureDim, int | np.integer) or \
            not 0 <= featureDim <= lab.ndim:
        raise ShapeError(f"onehotencode: featureDim {featureDim} is out of range for labels of "
                         f"shape {lab.shape}")
    missing = np.setdiff1d(np.unique(lab), classes)
    if missing.size:
        raise ShapeError(f"onehotencode: labels {missing[:5].tolist()} are not in ClassNames "
                         f"{classes.tolist()[:10]} (labels of shape {lab.shape})")
    if featureDim < lab.ndim and lab.shape[featureDim] == 1:
        lab = np.squeeze(lab, featureDim)  # MATLAB: a singleton featureDim is replaced
    hot = (lab[..., None] == classes).astype(np.float32)
    return np.moveaxis(hot, -1, featureDim)


def onehotdecode(B, classes, featureDim):  # noqa: N803
    """onehotdecode(B, classes, featureDim) — the class of the largest entry along featureDim.

    Returns a NumPy array of values from `classes`. MATLAB difference: 0-based featureDim.
    """
    if isinstance(B, DLArray) and B.is_traced:
        raise TraceError("onehotdecode: needs concrete scores; call it on dlfeval's outputs")
    b = np.asarray(B)
    classes = np.asarray(classes)
    if isinstance(featureDim, bool) or not isinstance(featureDim, int | np.integer) or \
            not 0 <= featureDim < b.ndim:
        raise ShapeError(f"onehotdecode: featureDim {featureDim} is out of range for B of "
                         f"shape {b.shape}")
    if b.shape[featureDim] != classes.size:
        raise ShapeError(f"onehotdecode: B of shape {b.shape} has {b.shape[featureDim]} entries "
                         f"along dimension {featureDim} but there are {classes.size} classes")
    return classes[np.argmax(b, axis=featureDim)]


# --- dropout ----------------------------------------------------------------------------------


def dropout(X, p=0.5, DataFormat=None):  # noqa: N803
    """dropout(X, p) — zero each element with probability p and scale survivors by 1/(1−p).

    Training behaviour only; a fresh mask is drawn on every call (seed with `lgc.rng`).
    """
    if isinstance(p, bool) or not isinstance(p, int | float | np.number) or not 0 <= p < 1:
        raise ShapeError(f"dropout: probability p must be a number in [0, 1), got {p!r}")
    with provenance("dropout"):
        x = _as_dlarray("dropout", "X", X)
        _check_float("dropout", "X", x)
        _check_batch("dropout", _formatted("dropout", x, DataFormat)[0] if DataFormat else x)
        if p == 0:
            return x
        attrs = dict(dtype=x._type.dtype, shape=x.shape, fmt=x.fmt)
        if x.is_traced:
            u = DLArray._symbolic(x._trace.builder.emit("random_uniform", **attrs), x._trace)
        else:
            u = apply("random_uniform", **attrs)
        return apply("where", u >= p, x * (1.0 / (1.0 - p)), 0.0)
