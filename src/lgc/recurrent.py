"""The MATLAB sequence functions on dlarrays (API.md §2): lstm, gru, embed.

The recurrences are unrolled over the time steps while tracing: one matmul projects the input
of every step at once, then each step costs one matmul for the recurrent part (two for GRU's
"before-multiplication"), a few slices and elementwise ops. Gradients come from those ops.
"""

from __future__ import annotations

import numpy as np

from .dlarray import (
    DLArray,
    apply,
    dlarray,
    finddim,
    maximum,
    minimum,
    provenance,
    reshape,
    stripdims,
)
from .dlarray import abs as _abs
from .errors import FormatError, ShapeError
from .functional import _check_batch, _check_float, _formatted
from .ir import trace as _trace
from .ir.types import dtype_name, is_float

# --- activations ------------------------------------------------------------------------------


def _hard_sigmoid(z):
    # MATLAB's hard-sigmoid: 0.2·z + 0.5 clipped to [0, 1]
    return maximum(minimum(z * 0.2 + 0.5, 1.0), 0.0)


_STATE = {"tanh": lambda z: apply("tanh", z), "softsign": lambda z: z / (_abs(z) + 1.0),
          "relu": lambda z: apply("relu", z)}
_GATE = {"sigmoid": lambda z: apply("sigmoid", z), "hard-sigmoid": _hard_sigmoid}


def _activations(fn: str, state: str, gate: str):
    if state not in _STATE:
        raise ShapeError(f"{fn}: StateActivationFunction must be one of {sorted(_STATE)}, got "
                         f"{state!r}")
    if gate not in _GATE:
        raise ShapeError(f"{fn}: GateActivationFunction must be one of {sorted(_GATE)}, got "
                         f"{gate!r}")
    return _STATE[state], _GATE[gate]


# --- argument handling ------------------------------------------------------------------------


def _matrix(fn: str, arg: str, w, rows: int | None, cols: int | None):
    """A 2-D weight matrix (unformatted) of the expected size (None: any)."""
    shape = tuple(np.shape(w))
    if len(shape) != 2 or (rows is not None and shape[0] != rows) or (
            cols is not None and shape[1] != cols):
        want = f"({rows if rows is not None else '*'}, {cols if cols is not None else '*'})"
        raise ShapeError(f"{fn}: {arg} must be a 2-D array of size {want}, got shape {shape}")
    return stripdims(w) if isinstance(w, DLArray) else np.asarray(w)


def _column(fn: str, arg: str, v, n: int):
    size = v.size if isinstance(v, DLArray) else np.size(v)
    if size != n:
        raise ShapeError(f"{fn}: {arg} must have {n} elements, got shape {np.shape(v)}")
    return reshape(v, (n, 1))


def _state(fn: str, arg: str, v, h: int, n: int):
    """An initial state: H elements (shared by every observation) or (H, N)."""
    shape = tuple(np.shape(v))
    if shape == (h, n):
        return stripdims(v) if isinstance(v, DLArray) else np.asarray(v)
    size = v.size if isinstance(v, DLArray) else np.size(v)
    if size != h:
        raise ShapeError(f"{fn}: {arg} must have {h} elements or size ({h}, {n}) (hidden size, "
                         f"observations), got shape {shape}")
    return reshape(v, (h, 1))


def _hidden0(fn: str, H0, h: int, n: int):  # noqa: N803
    """The initial hidden state as (H, N): every step's R·h then has one shape, so the sum of
    the steps' recurrent-weight gradients becomes one GEMM (ops/elementwise.py)."""
    hs = _lift(_state(fn, "H0", H0, h, n))
    return hs if hs.shape == (h, n) else apply("broadcast_to", hs, shape=(h, n), fmt="")


def _sequence(fn: str, X, DataFormat):  # noqa: N803
    """X as (F, T·N) columns ordered time-major, plus what is needed to shape the output."""
    x, strip = _formatted(fn, X, DataFormat)
    _check_float(fn, "X", x)
    if "U" in x.fmt or "C" not in x.fmt:
        raise FormatError(f"{fn}: X must have a C dimension and only S, C, B, T labels, got "
                          f"{x.fmt} {x.shape}")
    _check_batch(fn, x)
    feat = [i for i, lab in enumerate(x.fmt) if lab in "SC"]
    bdim, tdim = finddim(x, "B"), finddim(x, "T")
    nfeat = int(np.prod([x.shape[i] for i in feat], dtype=np.int64))
    n = x.shape[bdim[0]] if bdim else 1
    t = x.shape[tdim[0]] if tdim else 1
    if t == 0:
        raise ShapeError(f"{fn}: X {x.fmt} {x.shape} has no time steps")
    # MATLAB flattens the features column-major (first S fastest): row-major over reversed dims
    perm = feat[::-1] + list(tdim) + list(bdim)
    xt = stripdims(x)
    if perm != list(range(x.ndim)):
        xt = apply("transpose", xt, perm=perm)
    out_fmt = "".join(lab for lab in x.fmt if lab != "S")
    return reshape(xt, (nfeat, t * n)), nfeat, n, t, out_fmt, strip


def _stack_steps(hs, h: int, n: int, t: int, out_fmt: str):
    """Per-step (H, N) states as the output sequence in `out_fmt` (C, then B, then T)."""
    if t == 1:
        y = hs[0]
    else:
        y = apply("concatenate", *hs, axis=0)  # (T·H, N)
        y = apply("transpose", reshape(y, (t, h, n)), perm=(1, 2, 0))
    shape = (h,) + ((n,) if "B" in out_fmt else ()) + ((t,) if "T" in out_fmt else ())
    return dlarray(reshape(y, shape), out_fmt)


def _columns_to_sequence(y, h: int, n: int, t: int, out_fmt: str):
    """(H, T·N) states, time-major columns, as the output sequence in `out_fmt` (C, B, T)."""
    y = apply("transpose", reshape(y, (h, t, n)), perm=(0, 2, 1))
    shape = (h,) + ((n,) if "B" in out_fmt else ()) + ((t,) if "T" in out_fmt else ())
    return dlarray(reshape(y, shape), out_fmt)


def _dtype(v) -> np.dtype:
    return np.dtype(v.dtype) if isinstance(v, DLArray) else np.asarray(v).dtype


def _as(v, dtype: np.dtype):
    """v in `dtype` (a cast op when traced)."""
    return v if _dtype(v) == dtype else v.astype(dtype)


def _full_state(v, h: int, n: int):
    """An initial state, (H, N) or shared (H, 1), as (H, N)."""
    v = _lift(v)
    return v if np.shape(v) == (h, n) else apply("broadcast_to", v, shape=(h, n), fmt="")


def _split(v, axis: int, sizes) -> list:
    """Consecutive sections of v along axis; one `split` op, whose VJP is one concatenate."""
    if len(sizes) == 1:
        return [v]
    return list(apply("split", v, axis=axis, sizes=tuple(sizes)))


def _restore_layout(y, DataFormat):  # noqa: N803
    """An unformatted result in the dimension order of the caller's DataFormat (MATLAB keeps
    the input's layout), its labels dropped."""
    order = [i for i, lab in enumerate(y.fmt) if lab not in DataFormat]  # added dims first
    for lab in DataFormat:
        order += [i for i, m in enumerate(y.fmt) if m == lab and i not in order][:1]
    if order != list(range(y.ndim)):
        y = apply("transpose", y, perm=order)
    return stripdims(y)


def _outputs(DataFormat, y, *states):  # noqa: N803
    states = tuple(dlarray(s, "CB") for s in states)
    if DataFormat:
        return (_restore_layout(y, DataFormat), *(stripdims(s) for s in states))
    return (y, *states)


def _lift(v):
    """Inside a trace, a concrete array becomes one traced value up front, so the unrolled
    steps share it instead of each capturing a copy."""
    tr = _trace.current()
    if tr is None or (isinstance(v, DLArray) and v.is_traced):
        return v
    return DLArray._symbolic(tr.lift(np.asarray(v)), tr)


# --- lstm -------------------------------------------------------------------------------------


def lstm(X, H0, C0, weights, recurrentWeights, bias, *,  # noqa: N803
         StateActivationFunction="tanh", GateActivationFunction="sigmoid",  # noqa: N803
         DataFormat=None):  # noqa: N803
    """Y, H, C = lstm(X, H0, C0, weights, recurrentWeights, bias) — long short-term memory.

    Args:
        X: formatted dlarray with C (and optionally S, B, T); S dims are flattened into the
           features with C (first S fastest, as MATLAB).
        H0, C0: initial hidden and cell state, H elements or (H, N).
        weights (4H, F), recurrentWeights (4H, H), bias (4H elements): gates stacked in the
           order input i, forget f, cell candidate g, output o.
        StateActivationFunction: "tanh" (default), "softsign" or "relu" (for g and the cell
            output). GateActivationFunction: "sigmoid" (default) or "hard-sigmoid".
    Returns:
        Y: every time step's hidden state, format = X's without S ("CBT" for "CBT").
        H, C: the final hidden and cell state, "CB".

    Each step: c = f⊙c + i⊙g, h = o⊙σ_s(c).
    Example: `Y, H, C = lstm(dlarray(x, "CBT"), h0, c0, W, R, b)`.
    """
    fn = "lstm"
    with provenance(fn):
        _activations(fn, StateActivationFunction, GateActivationFunction)  # checks the names
        xs, nfeat, n, t, out_fmt, strip = _sequence(fn, X, DataFormat)
        r = _matrix(fn, "recurrentWeights", recurrentWeights, None, None)
        h = r.shape[1]
        if r.shape[0] != 4 * h:
            raise ShapeError(f"{fn}: recurrentWeights must be (4H, H), got {r.shape}")
        w = _matrix(fn, "weights", weights, 4 * h, nfeat)
        b = _column(fn, "bias", bias, 4 * h)
        h0, c0 = _state(fn, "H0", H0, h, n), _state(fn, "C0", C0, h, n)
        dtype = np.result_type(*(_dtype(v) for v in (xs, w, r, b, h0, c0)))
        xs, w, r, b = (_as(v, dtype) for v in (xs, w, r, b))
        h0, c0 = (_full_state(_as(v, dtype), h, n) for v in (h0, c0))
        # the recurrence is one op (ops/lstm.py), input projection included, its states as
        # (H, N) blocks of columns, step after step
        s, c, _ = apply("lstm_seq", xs, w, r, b, h0, c0, state=StateActivationFunction,
                        gate=GateActivationFunction)
        y = _columns_to_sequence(_split(s, 1, [n, t * n])[1], h, n, t, out_fmt)
        # the last step's block by itself (a split would also copy the T·N columns before it)
        hn, cn = (apply("slice", v, starts=(0, t * n), stops=(h, t * n + n), steps=(1, 1))
                  for v in (s, c))
        return _outputs(strip and DataFormat, y, hn, cn)


# --- gru --------------------------------------------------------------------------------------

_RESET_MODES = ("after-multiplication", "before-multiplication",
                "recurrent-bias-after-multiplication")


def gru(X, H0, weights, recurrentWeights, bias, *,  # noqa: N803
        ResetGateMode="after-multiplication", StateActivationFunction="tanh",  # noqa: N803
        GateActivationFunction="sigmoid", DataFormat=None):  # noqa: N803
    """Y, H = gru(X, H0, weights, recurrentWeights, bias) — gated recurrent unit.

    Args:
        X: formatted dlarray with C (and optionally S, B, T), as for lstm.
        H0: initial hidden state, H elements or (H, N).
        weights (3H, F), recurrentWeights (3H, H): rows stacked reset r, update z,
           candidate h̃. bias: 3H elements, or 6H for "recurrent-bias-after-multiplication"
           (the input biases r, z, h̃, then the recurrent biases r, z, h̃).
        ResetGateMode:
            "after-multiplication" (default): h̃ = σ_s(W_h x + b_h + r⊙(R_h h));
            "before-multiplication": h̃ = σ_s(W_h x + b_h + R_h (r⊙h));
            "recurrent-bias-after-multiplication": h̃ = σ_s(W_h x + b_wh + r⊙(R_h h + b_rh)),
            and r, z also add their recurrent biases.
        StateActivationFunction, GateActivationFunction: as for lstm.
    Returns:
        Y: every time step's hidden state (format = X's without S); H: the final state, "CB".

    Each step: r, z = σ_g(W x + b + R h), h = (1−z)⊙h̃ + z⊙h_prev.
    """
    fn = "gru"
    with provenance(fn):
        if ResetGateMode not in _RESET_MODES:
            raise ShapeError(f"{fn}: ResetGateMode must be one of {_RESET_MODES}, got "
                             f"{ResetGateMode!r}")
        state_fn, gate_fn = _activations(fn, StateActivationFunction, GateActivationFunction)
        xs, nfeat, n, t, out_fmt, strip = _sequence(fn, X, DataFormat)
        r = _matrix(fn, "recurrentWeights", recurrentWeights, None, None)
        h = r.shape[1]
        if r.shape[0] != 3 * h:
            raise ShapeError(f"{fn}: recurrentWeights must be (3H, H), got {r.shape}")
        w = _matrix(fn, "weights", weights, 3 * h, nfeat)
        rb = ResetGateMode == "recurrent-bias-after-multiplication"
        b = _column(fn, "bias", bias, (6 if rb else 3) * h)
        b_in, b_rec = _split(b, 0, [3 * h, 3 * h]) if rb else (b, None)
        b_rec = _lift(b_rec) if rb else None
        r, hs_ = _lift(r), _hidden0(fn, H0, h, n)
        xp = apply("matmul", w, xs) + b_in
        before = ResetGateMode == "before-multiplication"
        if before:
            r_rz, r_h = _split(r, 0, [2 * h, h])
        outs = []
        for xk in _split(xp, 1, [n] * t):
            x_rz, x_h = _split(xk, 0, [2 * h, h])
            if before:
                rg, zg = _split(gate_fn(x_rz + apply("matmul", r_rz, hs_)), 0, [h, h])
                cand = state_fn(x_h + apply("matmul", r_h, rg * hs_))
            else:
                rh = apply("matmul", r, hs_)
                if rb:
                    rh = rh + b_rec
                rh_rz, rh_h = _split(rh, 0, [2 * h, h])
                rg, zg = _split(gate_fn(x_rz + rh_rz), 0, [h, h])
                cand = state_fn(x_h + rg * rh_h)
            # (1−z)⊙h̃ + z⊙h_prev, written with one multiply
            hs_ = cand + zg * (hs_ - cand)
            outs.append(hs_)
        y = _stack_steps(outs, h, n, t, out_fmt)
        return _outputs(strip and DataFormat, y, hs_)


# --- embed ------------------------------------------------------------------------------------


def embed(X, weights, *, DataFormat=None):  # noqa: N803
    """embed(X, weights) — map integer indices to the columns of weights.

    Args:
        X: formatted dlarray of 0-based indices (integers, or floats holding integers). A
           singleton C dimension becomes the embedding dimension; without C one is added
           ("BT" indices give "CBT" vectors).
        weights: (dim, numWords).
    Returns:
        Y with Y[:, ...] = weights[:, X[...]], C of size dim.

    MATLAB difference: indices are 0-based (MATLAB's are 1-based).
    """
    fn = "embed"
    with provenance(fn):
        x, strip = _formatted(fn, X, DataFormat)
        w = _matrix(fn, "weights", weights, None, None)
        if not is_float(dtype_name(w.dtype, "embed weights")):
            raise ShapeError(f"{fn}: weights must be float32 or float64, got {w.dtype}")
        if "C" in x.fmt:
            c = x.fmt.index("C")
            if x.shape[c] != 1:
                raise ShapeError(f"{fn}: the C dimension of X ({x.fmt} {x.shape}) must be a "
                                 f"singleton holding the indices, got size {x.shape[c]}")
        else:
            c = len([lab for lab in x.fmt if lab == "S"])
            fmt = x.fmt[:c] + "C" + x.fmt[c:]
            x = apply("relabel", reshape(x, x.shape[:c] + (1,) + x.shape[c:]), fmt=fmt)
        x = _indices(fn, x, w.shape[1])
        y = apply("embed", x, w, axis=c)
        return _restore_layout(y, DataFormat) if strip else y


def _indices(fn: str, x: DLArray, num_words: int) -> DLArray:
    """Indices as int64; concrete ones are checked against [0, numWords) here."""
    dt = x._type.dtype
    if dt == "bool":
        raise ShapeError(f"{fn}: X must hold integer indices, got bool {x.shape}")
    if not x.is_traced:
        data = np.asarray(x)
        if is_float(dt) and not np.all(data == np.round(data)):
            raise ShapeError(f"{fn}: X must hold integer indices, got non-integer values")
        if data.size and (data.min() < 0 or data.max() >= num_words):
            bad = data[(data < 0) | (data >= num_words)]
            raise ShapeError(f"{fn}: indices must be in [0, {num_words}) (0-based, numWords = "
                             f"size(weights, 2) = {num_words}), got {bad[:5].tolist()}")
    return x if dt in ("i64", "i32") else x.astype(np.int64)
