"""The LSTM recurrence as two ops: `lstm_seq` runs every time step, `lstm_seq_backward` every
step of its gradient in reverse.

Unrolled into matmul, split and elementwise ops, a 32-step LSTM and its gradient are ~330
executable steps; as two ops, each is one Numba kernel whose time loop runs one product per
step (the input and recurrent products at once, [W R]·[x_t; h]) and computes the gates in the
same pass, its threads splitting the observations, the hidden units or both (see the kernels
below). The weight gradients are not sequential: the backward kernel makes them as it goes, a
product over each chunk of steps while that chunk's gradients are still in cache.

Layout: columns are (time, observation) pairs, time-major, so a step is a block of N
columns, as in MATLAB's (features, observations) matrices; the per-step products are then
(4H, D + H) weights times a (D + H, N) block, the orientation OpenBLAS runs fastest (25 us
against 50 us for the transposed one, measured at H = 128, N = 32). `S` and `C` hold N columns
of initial state before the T steps' columns.

    x (D, T·N)     the input; W (4H, D) input weights, b (4H, 1) bias
    R  (4H, H)     recurrent weights; gate blocks i, f, g, o (MATLAB's order)
    h0, c0 (H, N)  initial states
    S, C (H, N + T·N)   hidden and cell states: initial, then after each step
    A (4H, T·N)    the activated gates, kept for the backward pass

`lstm_seq_backward` is differentiated again through the same computation written in primitive
ops (`_backward_graph`), so an LSTM has gradients of every order.
"""

from __future__ import annotations

import numpy as np

from ..backend.plan import zeros_aligned
from ..errors import DTypeError, ShapeError
from ..ir.types import TensorType, np_dtype
from .base import Lowering, OpDef, Sample, kernel_threads, register, require_float

STATES = ("tanh", "softsign", "relu")
GATES = ("sigmoid", "hard-sigmoid")


# --- the activations and their derivatives, in NumPy and in kernel source ---------------------


def _sigmoid(z):
    e = np.exp(-np.abs(z))  # the two-branch form never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


_NP = {"tanh": np.tanh, "softsign": lambda z: z / (1 + np.abs(z)),
       "relu": lambda z: np.maximum(z, 0), "sigmoid": _sigmoid,
       "hard-sigmoid": lambda z: np.clip(0.2 * z + 0.5, 0, 1).astype(z.dtype, copy=False)}
# derivatives as functions of the activation's output y (relu and hard-sigmoid: 0 at the kinks)
_NP_D = {"tanh": lambda y: 1 - y * y, "softsign": lambda y: (1 - np.abs(y)) ** 2,
         "relu": lambda y: (y > 0).astype(y.dtype), "sigmoid": lambda y: y * (1 - y),
         "hard-sigmoid": lambda y: 0.2 * ((y > 0) & (y < 1)).astype(y.dtype)}

# kernel source; ONE, ZERO, FIFTH and HALF are constants of the kernel's float type (a float64
# literal would turn float32 arithmetic into float64, at half the vector width)
_SRC = {"tanh": "fast_tanh({0})", "softsign": "{0} / (ONE + abs({0}))",
        "relu": "max({0}, ZERO)", "sigmoid": "fast_sigmoid({0})",
        "hard-sigmoid": "min(max(FIFTH * {0} + HALF, ZERO), ONE)"}
_SRC_D = {"tanh": "(ONE - {0} * {0})", "softsign": "((ONE - abs({0})) * (ONE - abs({0})))",
          "relu": "(ONE if {0} > ZERO else ZERO)", "sigmoid": "({0} - {0} * {0})",
          "hard-sigmoid": "(FIFTH if {0} > ZERO and {0} < ONE else ZERO)"}
_CONSTANTS = {"ONE": 1.0, "ZERO": 0.0, "FIFTH": 0.2, "HALF": 0.5}


def _src(template: str, node) -> str:
    """A kernel expression with its constants spelled in the node's float type."""
    cast = "np.float32" if node.outputs[0].dtype == "f32" else "np.float64"
    for name, value in _CONSTANTS.items():
        template = template.replace(name, f"{cast}({value})")
    return template


def _grid(hidden: int, batch: int, dtype, groups_first: bool) -> tuple[int, int]:
    """(G, P): the threads of a recurrence kernel as G groups of the step block's columns
    (whole registers each where the products run packed; one group otherwise) by P parts of
    the hidden units, as many in all as a kernel of one step's product flops gets
    (`kernel_threads`); groups first (they never wait for each other) or parts first."""
    want = max(1, kernel_threads(8 * hidden * hidden * batch))
    regs = -(-batch // _lanes(dtype)) if _packs(batch, dtype) else 1
    if groups_first:
        groups = min(want, regs)
        return groups, max(1, min(want // groups, hidden))
    parts = min(want, hidden)
    return max(1, min(want // parts, regs)), parts


def _panel_rows() -> int:
    from ..backend.numba.intrinsics import PANEL_ROWS

    return PANEL_ROWS


def _panels(gates: int, hidden: int, parts: int) -> int:
    """Panels of packed rows for `gates` rows a hidden unit, each of `parts` parts packed
    into whole panels of its own."""
    pr = _panel_rows()
    return sum(-(-gates * ((u + 1) * hidden // parts - u * hidden // parts) // pr)
               for u in range(parts))


def _whole_panels(n: int) -> int:
    """n rounded up to whole panels of rows."""
    return -(-n // _panel_rows()) * _panel_rows()


def _lanes(dtype) -> int:
    """Elements of dtype in one register of the panel kernels (intrinsics.VECTOR_BYTES)."""
    from ..backend.numba.intrinsics import VECTOR_BYTES

    return VECTOR_BYTES // np.dtype(dtype).itemsize


def _whole(n: int, dtype) -> int:
    """n rounded up to whole registers of dtype."""
    return -(-n // _lanes(dtype)) * _lanes(dtype)


def _packs(n: int, dtype) -> bool:
    """Whether the recurrence kernels run their per-step products through `panel_gemm`: a
    step block of N columns at least one register wide (narrower ones: BLAS)."""
    return n >= _lanes(dtype)


def _padded(n: int, dtype) -> int:
    """Columns of a step block: N, or N rounded up to whole registers where the kernels run
    their products through `panel_gemm` (the padding stays 0)."""
    return _whole(n, dtype) if _packs(n, dtype) else n


def _sync(count: int) -> np.ndarray:
    """The counters of a kernel's step barriers (`step_barrier`), one per thread: kept from
    call to call (a kernel counts its steps from where its counters stand, equal for every
    thread between calls), so a call's arguments are the same arrays every time."""
    from ..backend.numba.intrinsics import SYNC_STRIDE

    return np.zeros(count * SYNC_STRIDE, np.int64)


def _check_fns(op: str, state: str, gate: str) -> None:
    if state not in STATES:
        raise ShapeError(f"{op}: state activation must be one of {STATES}, got {state!r}")
    if gate not in GATES:
        raise ShapeError(f"{op}: gate activation must be one of {GATES}, got {gate!r}")


def _same_float(op: str, types: list[TensorType], names: tuple[str, ...]) -> str:
    for t, name in zip(types, names):
        require_float(op, t, name)
    dtypes = {t.dtype for t in types}
    if len(dtypes) > 1:
        raise DTypeError(f"{op}: inputs must share one float dtype, got " + ", ".join(
            f"{name} {t.dtype}" for t, name in zip(types, names)))
    return types[0].dtype


def _sizes(op: str, x: TensorType, w: TensorType, r: TensorType, bias: TensorType,
           h0: TensorType) -> tuple[int, int, int]:
    """(T, N, H) from the input, the weights and an initial state."""
    h = r.shape[1] if r.ndim == 2 else 0
    n = h0.shape[1] if h0.ndim == 2 else 0
    d = x.shape[0] if x.ndim == 2 else -1
    if (r.ndim != 2 or r.shape[0] != 4 * h or h0.ndim != 2 or h0.shape[0] != h or n < 1
            or x.ndim != 2 or x.shape[1] % n or not x.shape[1] or w.shape != (4 * h, d)
            or bias.shape != (4 * h, 1)):
        raise ShapeError(f"{op}: needs x (D, T·N), W (4H, D), R (4H, H), b (4H, 1) and states "
                         f"(H, N); got x {x.shape}, W {w.shape}, R {r.shape}, b {bias.shape}, "
                         f"state {h0.shape}")
    return x.shape[1] // n, n, h


# --- the forward recurrence -------------------------------------------------------------------


@register
class LstmSeq(OpDef):
    """S, C, A = every step of c = f⊙c + i⊙g, h = o⊙σ_s(c), [i f g o] = σ(W x_t + R h + b)"""

    name = "lstm_seq"
    attrs = {"state": "tanh", "gate": "sigmoid"}

    def infer(self, in_types, state, gate):
        _check_fns(self.name, state, gate)
        x, w, r, bias, h0, c0 = in_types
        dtype = _same_float(self.name, in_types, ("x", "W", "R", "b", "h0", "c0"))
        t, n, h = _sizes(self.name, x, w, r, bias, h0)
        if c0.shape != h0.shape:
            raise ShapeError(f"{self.name}: h0 {h0.shape} and c0 {c0.shape} must match")
        states = TensorType(dtype, (h, n + t * n))
        return [states, states, TensorType(dtype, (4 * h, t * n))]

    def ref(self, x, w, r, bias, h0, c0, state, gate):
        xp = w @ x + bias
        h, n = h0.shape
        fs, fg = _NP[state], _NP[gate]
        s = np.empty((h, n + xp.shape[1]), xp.dtype)
        c = np.empty_like(s)
        a = np.empty_like(xp)
        s[:, :n], c[:, :n] = h0, c0
        for k in range(0, xp.shape[1], n):
            z = xp[:, k:k + n] + r @ s[:, k:k + n]
            gates = a[:, k:k + n]
            gates[:h], gates[h:2 * h] = fg(z[:h]), fg(z[h:2 * h])
            gates[2 * h:3 * h], gates[3 * h:] = fs(z[2 * h:3 * h]), fg(z[3 * h:])
            i, f, g, o = np.split(gates, 4)
            c[:, k + n:k + 2 * n] = f * c[:, k:k + n] + i * g
            s[:, k + n:k + 2 * n] = o * fs(c[:, k + n:k + 2 * n])
        return s, c, a

    def vjp(self, b, node, cts):
        x, w, r, bias, h0, c0 = node.inputs
        s, c, a = node.outputs
        ds, dc, da = cts
        ds = ds if ds is not None else b.zeros_like(s)
        ins = [a, c, r, s, x, ds] + [v for v in (dc, da) if v is not None]
        dz, dh0, dc0, db, dr, dw = b.emit_node(
            "lstm_seq_backward", *ins, **node.attrs, has_dc=dc is not None,
            has_da=da is not None).outputs
        dx = b.emit("matmul", b.emit("transpose", w, perm=(1, 0)), dz)
        return [b.relabel(dx, x.fmt), b.relabel(dw, w.fmt), dr, b.relabel(db, bias.fmt), dh0,
                dc0]

    def lower_numba(self, node):
        gate, state = _src(_SRC[node.attrs["gate"]], node), _src(_SRC[node.attrs["state"]], node)
        pre = "(z[{0}j, q] + bl[{0}j])".format
        h, n = node.inputs[4].shape
        d = node.inputs[0].shape[0]
        dtype = np_dtype(node.outputs[0].dtype)
        weights, product = _FORWARD_PRODUCT[_packs(n, dtype)]
        weights = weights.format(first_panel=_FIRST_PANEL.format(gates=4))
        source = _FORWARD.format(
            grid=_GRID.format(buf="hx"), weights=weights, product=product,
            gate_i=gate.format(pre("")), gate_f=gate.format(pre("hs + ")),
            state_g=state.format(pre("2 * hs + ")), gate_o=gate.format(pre("3 * hs + ")),
            state_c=state.format("cc"))
        groups, parts = _grid(h, n, dtype, groups_first=False)
        # each group's [h; x] of steps k, k + 1 (the padding columns stay 0), each part's rows
        # of [R W] packed, and the barriers' counters: the lowering's own, the same arrays on
        # every call (a call built once)
        hx = zeros_aligned((groups, 2, h + d, _padded(n, dtype)), dtype)
        panels = _panels(4, h, parts) if _packs(n, dtype) else 1
        ap = zeros_aligned((panels, (h + d) * _panel_rows()), dtype)
        sync = _sync(groups * parts)
        return Lowering(source=source, threads=groups * parts, sync=sync,
                        args=lambda ins, outs: [*ins, *outs, ap, hx, sync])

    def samples(self, rng):
        def case(t, n, h, state, gate, scale=0.6, d=2):
            return Sample([rng.normal(size=(d, t * n)), rng.normal(size=(4 * h, d)) * scale,
                           rng.normal(size=(4 * h, h)) * scale, rng.normal(size=(4 * h, 1)),
                           rng.normal(size=(h, n)) * 0.5, rng.normal(size=(h, n)) * 0.5],
                          {"state": state, "gate": gate})
        # hard-sigmoid's kinks sit at |z| = 2.5: its inputs stay small. relu's kink at 0 is
        # met with probability ~0 by random samples at the differences' step size
        return [case(3, 2, 3, "tanh", "sigmoid"), case(1, 1, 2, "tanh", "sigmoid", d=1),
                case(2, 3, 2, "softsign", "sigmoid", d=3),
                case(2, 2, 2, "tanh", "hard-sigmoid", 0.3), case(2, 2, 3, "relu", "sigmoid")]


# --- its gradient -----------------------------------------------------------------------------


@register
class LstmSeqBackward(OpDef):
    """dZ, dh0, dc0, db, dR, dW = the LSTM's pre-activation, initial-state, bias and weight
    gradients (db the column sums of dZ; dR = dZ · (the states before each step: S's leading
    T·N columns)^T, dW = dZ · X^T) from dS (dC, dA). Without `has_dz` (set by dead-code
    elimination when nothing reads dZ: `prune`), dZ is (4H, 0) and never written; without
    `has_d0` (nothing reads dh0 or dc0: initial states that are constants) dh0 and dc0 are
    (H, 0), and the last step's product (Rᵀ·dZ for dh0 alone) is not made."""

    name = "lstm_seq_backward"
    attrs = {"state": "tanh", "gate": "sigmoid", "has_dc": False, "has_da": False,
             "has_dz": True, "has_d0": True}

    def _inputs(self, args, has_dc, has_da):
        """(A, C, R, S, X, dS, dC or None, dA or None) from the positional inputs."""
        a, c, r, s, x, ds, *rest = args
        dc = rest.pop(0) if has_dc else None
        da = rest.pop(0) if has_da else None
        return a, c, r, s, x, ds, dc, da

    def infer(self, in_types, state, gate, has_dc, has_da, has_dz, has_d0):
        _check_fns(self.name, state, gate)
        want = 6 + bool(has_dc) + bool(has_da)
        if len(in_types) != want:
            raise ShapeError(f"{self.name}: expects {want} inputs (A, C, R, S, X, dS"
                             f"{', dC' if has_dc else ''}{', dA' if has_da else ''}), got "
                             f"{len(in_types)}")
        a, c, r, s, x, ds, dc, da = self._inputs(in_types, has_dc, has_da)
        names = (("A", "C", "R", "S", "X", "dS") + ("dC",) * bool(has_dc)
                 + ("dA",) * bool(has_da))
        dtype = _same_float(self.name, list(in_types), names)
        h = r.shape[1] if r.ndim == 2 else 0
        ok = (r.ndim == 2 and r.shape[0] == 4 * h and a.ndim == 2 and a.shape[0] == 4 * h
              and c.ndim == 2 and c.shape[0] == h and c.shape[1] > a.shape[1] > 0
              and a.shape[1] % (c.shape[1] - a.shape[1]) == 0 and ds.shape == c.shape
              and s.shape == c.shape and x.ndim == 2 and x.shape[1] == a.shape[1]
              and (dc is None or dc.shape == c.shape) and (da is None or da.shape == a.shape))
        if not ok:
            raise ShapeError(f"{self.name}: needs A (4H, T·N), C, S and dS (H, N + T·N), "
                             f"X (D, T·N), R (4H, H); got A {a.shape}, C {c.shape}, "
                             f"S {s.shape}, X {x.shape}, dS {ds.shape}, R {r.shape}")
        n = c.shape[1] - a.shape[1]
        dz, d0 = a.shape if has_dz else (4 * h, 0), (h, n) if has_d0 else (h, 0)
        return [TensorType(dtype, dz), TensorType(dtype, d0), TensorType(dtype, d0),
                TensorType(dtype, (4 * h, 1)), TensorType(dtype, r.shape),
                TensorType(dtype, (4 * h, x.shape[0]))]

    def ref(self, *args, state, gate, has_dc, has_da, has_dz, has_d0):
        a, c, r, s, x, ds, dc, da = self._inputs(args, has_dc, has_da)
        tn, h = a.shape[1], r.shape[1]
        n = c.shape[1] - tn
        fs, ds_, dg_ = _NP[state], _NP_D[state], _NP_D[gate]
        dz = np.empty_like(a)
        dh, dcc = np.zeros((h, n), a.dtype), np.zeros((h, n), a.dtype)
        for k in range(tn - n, -1, -n):
            i, f, g, o = np.split(a[:, k:k + n], 4)
            sc = fs(c[:, k + n:k + 2 * n])
            dhv = ds[:, k + n:k + 2 * n] + dh
            dcv = dcc + dhv * o * ds_(sc)
            if dc is not None:
                dcv += dc[:, k + n:k + 2 * n]
            parts = [dcv * g, dcv * c[:, k:k + n], dcv * i, dhv * sc]
            if da is not None:
                parts = [p + q for p, q in zip(parts, np.split(da[:, k:k + n], 4))]
            dz[:, k:k + n] = np.concatenate(
                [parts[0] * dg_(i), parts[1] * dg_(f), parts[2] * ds_(g), parts[3] * dg_(o)])
            dcc = dcv * f
            dh = r.T @ dz[:, k:k + n]
        dh0 = ds[:, :n] + dh
        dc0 = dcc + dc[:, :n] if dc is not None else dcc
        if not has_d0:
            dh0 = dc0 = np.empty((h, 0), dz.dtype)
        return (dz if has_dz else np.empty((4 * h, 0), dz.dtype), dh0, dc0,
                dz.sum(axis=1, keepdims=True), dz @ s[:, :tn].T, dz @ x.T)

    def prune(self, node, used):
        # dZ leaves the kernel only for another op (an input's gradient W^T·dZ): unread, its
        # 4H x T·N stores go (the backward gate loop 270-290 -> 160-190 us at H = 128, N = 32);
        # dh0 and dc0 unread (constant initial states): the last step's product goes
        at = {**({"has_dz": False} if node.attrs["has_dz"] and not used[0] else {}),
              **({"has_d0": False} if node.attrs["has_d0"] and not (used[1] or used[2])
                 else {})}
        return at or None

    def vjp(self, b, node, cts):
        # through the same computation written in primitive ops: the objective sum_k <out_k,
        # ct_k> differentiated by the ordinary autodiff pass
        from ..autodiff import backward

        # the inputs as leaves (a relabel each): autodiff must not follow A and C back into
        # the lstm_seq that made them, which the enclosing differentiation does itself
        leaves = [b.emit("relabel", v, fmt=v.fmt) for v in node.inputs]
        outs = _backward_graph(b, leaves, node.attrs)
        objective = None
        for o, ct in zip(outs, cts):
            if ct is None or ct.shape != o.shape:  # dZ pruned: (4H, 0), never read
                continue
            term = b.emit("reduce_sum", b.mul(o, ct), axes=(0, 1))
            objective = term if objective is None else b.add(objective, term)
        if objective is None:
            return [None] * len(node.inputs)
        return backward(b, objective, leaves)

    def lower_numba(self, node):
        at = node.attrs
        g, s = _src(_SRC_D[at["gate"]], node), _src(_SRC_D[at["state"]], node)
        h = node.inputs[2].shape[1]  # R (4H, H); N from C (H, N + T·N) and A (4H, T·N)
        n = node.inputs[1].shape[1] - node.inputs[0].shape[1]
        dtype = np_dtype(node.outputs[0].dtype)
        weights, product = _BACKWARD_PRODUCT[_packs(n, dtype)]
        weights = weights.format(first_panel=_FIRST_PANEL.format(gates=1))
        source = _BACKWARD.format(
            weights=weights, product=product,
            args=", dc" * at["has_dc"] + ", da" * at["has_da"],
            state_c=_src(_SRC[at["state"]], node).format("c[jj, nxt]"), dstate_c=s.format("sc"),
            dc_in=" + dc[jj, nxt]" if at["has_dc"] else "",
            da_i=" + da[jj, col]" if at["has_da"] else "",
            da_f=" + da[hd + jj, col]" if at["has_da"] else "",
            da_g=" + da[h2 + jj, col]" if at["has_da"] else "",
            da_o=" + da[h3 + jj, col]" if at["has_da"] else "",
            dgate_i=g.format("ai"), dgate_f=g.format("af"), dstate_g=s.format("ag"),
            dgate_o=g.format("ao"),
            dz_out=_DZ_OUT if at["has_dz"] else "", has_d0=at["has_d0"],
            d0_out=_D0_OUT.format(dc0="dc[jj, qq] + dcc[j, q]" if at["has_dc"] else "dcc[j, q]")
            if at["has_d0"] else "",
            zero=_src("ZERO", node), grid=_GRID.format(buf="zc"), chunk_columns=CHUNK_COLUMNS)
        groups, parts = _grid(h, n, dtype, groups_first=True)
        count = groups * parts
        d, tn = node.inputs[4].shape
        wide = _whole(h, dtype) + _whole(d, dtype)
        panels = _panels(1, h, parts) if _packs(n, dtype) else 1
        ap = zeros_aligned((panels, 4 * h * _panel_rows()), dtype)
        # [S's leading T·N columns; X]^T, a group's columns padded to whole registers
        bt = zeros_aligned((tn // n * _padded(n, dtype), wide), dtype)
        # each group's dZ of two chunks of steps, [dR dW] accumulated over the chunks (each
        # thread its block of whole panels of rows), each group's sums
        zc = zeros_aligned((groups, 4 * h, 2 * max(CHUNK_COLUMNS, _padded(n, dtype))), dtype)
        acc = zeros_aligned((_whole_panels(4 * h), wide), dtype)
        part = zeros_aligned((groups, 4 * h), dtype)
        sync = _sync(count)
        return Lowering(source=source, threads=count, sync=sync,
                        args=lambda ins, outs: [*outs, *ins, ap, zc, bt, acc, part, sync])

    def samples(self, rng):
        out, fwd = [], LstmSeq()
        flags = ((False, False), (True, True), (True, False), (False, True), (False, False))
        for s, (has_dc, has_da) in zip(fwd.samples(rng), flags):
            st, c, a = fwd.ref(*s.args, **s.attrs)
            a = np.where(a == 0, 0.25, a)  # relu's zeros sit on its derivative's step
            extra = ([rng.normal(size=c.shape)] if has_dc else []) + (
                [rng.normal(size=a.shape)] if has_da else [])
            # A and C as the forward pass leaves them: gates in (0, 1), g in (-1, 1)
            # the fourth without dh0 and dc0, the last without dZ (as dead-code elimination
            # leaves them when nothing reads them)
            out.append(Sample([a, c, s.args[2], st, s.args[0], rng.normal(size=st.shape),
                               *extra], {**s.attrs, "has_dc": has_dc, "has_da": has_da,
                                         "has_dz": len(out) < len(flags) - 1,
                                         "has_d0": len(out) != len(flags) - 2}))
        return out


def _backward_graph(b, inputs, at):
    """lstm_seq_backward's outputs computed with primitive ops (split, matmul, elementwise),
    step by step; used only to differentiate it."""
    a, c, r, s, x, ds, dc, da = LstmSeqBackward()._inputs(inputs, at["has_dc"], at["has_da"])
    tn, h = a.shape[1], r.shape[1]
    n = c.shape[1] - tn
    t = tn // n

    def steps(v, blocks):
        return b.emit_node("split", v, axis=1, sizes=(n,) * blocks).outputs if blocks > 1 \
            else [v]

    def gates(v):
        return b.emit_node("split", v, axis=0, sizes=(h,) * 4).outputs

    one = b.const(1.0, a.dtype)

    def act(kind, z):
        if kind == "tanh":
            return b.emit("tanh", z)
        if kind == "softsign":
            return b.emit("div", z, b.add(one, b.emit("abs", z)))
        return b.emit("relu", z)

    def deriv(kind, y):
        if kind in ("tanh", "sigmoid"):
            y2 = b.mul(y, y)
            return b.emit("sub", one, y2) if kind == "tanh" else b.emit("sub", y, y2)
        if kind == "softsign":
            m = b.emit("sub", one, b.emit("abs", y))
            return b.mul(m, m)
        zero = b.const(0.0, a.dtype)
        inside = b.emit("greater", y, zero)
        if kind == "hard-sigmoid":
            inside = b.emit("mul", b.emit("cast", inside, dtype=a.dtype),
                            b.emit("cast", b.emit("less", y, one), dtype=a.dtype))
            return b.mul(b.const(0.2, a.dtype), inside)
        return b.emit("cast", inside, dtype=a.dtype)

    a_t, c_t, ds_t = steps(a, t), steps(c, t + 1), steps(ds, t + 1)
    dc_t = steps(dc, t + 1) if dc is not None else None
    da_t = steps(da, t) if da is not None else None
    rt = b.emit("transpose", r, perm=(1, 0))
    dh = dcc = None
    dz_t = [None] * t
    for k in range(t - 1, -1, -1):
        i, f, g, o = gates(a_t[k])
        sc = act(at["state"], c_t[k + 1])
        dhv = ds_t[k + 1] if dh is None else b.add(ds_t[k + 1], dh)
        dcv = b.mul(dhv, b.mul(o, deriv(at["state"], sc)))
        if dcc is not None:
            dcv = b.add(dcv, dcc)
        if dc_t is not None:
            dcv = b.add(dcv, dc_t[k + 1])
        parts = [b.mul(dcv, g), b.mul(dcv, c_t[k]), b.mul(dcv, i), b.mul(dhv, sc)]
        if da_t is not None:
            parts = [b.add(p, q) for p, q in zip(parts, gates(da_t[k]))]
        dgates = [b.mul(parts[0], deriv(at["gate"], i)), b.mul(parts[1], deriv(at["gate"], f)),
                  b.mul(parts[2], deriv(at["state"], g)), b.mul(parts[3], deriv(at["gate"], o))]
        dz_t[k] = b.emit("concatenate", *dgates, axis=0)
        dcc = b.mul(dcv, f)
        dh = b.emit("matmul", rt, dz_t[k])
    dz = dz_t[0] if t == 1 else b.emit("concatenate", *dz_t, axis=1)
    dh0 = b.add(ds_t[0], dh)
    dc0 = b.add(dc_t[0], dcc) if dc_t is not None else dcc
    before = b.emit_node("split", s, axis=1, sizes=(tn, n)).outputs[0]
    dr = b.emit("matmul", dz, b.emit("transpose", before, perm=(1, 0)))
    dw = b.emit("matmul", dz, b.emit("transpose", x, perm=(1, 0)))
    return [dz, dh0, dc0, b.emit("sum_to", dz, shape=(4 * h, 1)), dr, dw]


# --- Numba kernels: the time loop, split between threads ------------------------------------

# The call's threads form a grid: G groups of the step block's columns (observations, whole
# registers each where the products run packed) by P parts of the hidden units (`_grid`).
# Columns never meet in a recurrence, so the groups run apart; the P threads of a group each
# compute their units' rows of the step's product, then their units' gates, cell and hidden
# state, and meet at a barrier (`step_barrier`, atomics in shared memory) once per step, the
# next step needing every unit's result. A group's step block ([h; x_t] in `hx`; dZ_t in a
# slot of `zc`) is double-buffered, so a thread may start writing step k + 1 while another
# still reads step k.
#
# Which split pays differs between the kernels (H = 128, N = 32 on this machine's 2 cores,
# phase cycles in the train step, quiet hour): the backward kernel runs as groups (two of 16
# columns): its gate loop 300-360 -> 230-280 us a call and no step barriers (50-100 us of
# waits); the forward one as parts (two of 64 units): as groups its gate loop took 440 us
# against 330, more than the barriers' 35-70 cost. Train step 3.14 -> 2.92 ms with the
# chunked weight gradients below (`bench --against`, 8 rounds each).
#
# The product runs on the rows packed once per call (`panel_gemm`, intrinsics.py; each part's
# rows packed by its G threads between them, read by all) when the step block is at least a
# register wide (each group's columns padded with zeros to whole registers), else as one
# single-threaded BLAS call (one group): packed, the H = 128, N = 32 train step went 6.31 ->
# 5.62 ms (`bench --against`, medians of 5 processes each).
#
# The backward kernel makes the weight gradients as it goes: dZ's step blocks stay in `zc`
# for a chunk of CHUNK_COLUMNS columns of steps (two chunks, alternating), and at a chunk's
# end each thread adds its rows of [dR dW] for the chunk's columns, its group's first, every
# other group's once they are done too, to its accumulator: ~750 us a call as one product at
# the end was (the panel kernel's rate), but from cache where that one read 2 MB of dZ back.
#
# The kernels run on any thread count T they are called with up to the grid's (a call on one
# thread: runtime's Barriers): the grid is min(G, T) groups by T // G parts, and the shared
# buffers are sized and laid out for any of them (padding rows and columns zeroed on every
# call: another grid's call may have written data there). Threads write neighbouring blocks
# of a row (a group's columns): the buffers start on cache lines (`zeros_aligned`, and the
# runtime's), else two threads write into one line at every step (train step, fastest of
# 12 blocks, three alternating pairs of processes: 3.15-3.46 ms unaligned, 2.91-3.05 aligned).
#
# Every index is unsigned (uint64 arithmetic throughout: with a signed one Numba adds a
# negative-index check, and LLVM then cannot tell that the gate loop's writes into the outputs
# never meet its reads, so the loop stays scalar: 4x slower, measured). The step's states are
# kept as (., columns) blocks too (`cb`, `dh`, `dcc`), so the loop never reads an output.
CHUNK_COLUMNS = 128

# the thread's place in the grid (groups from the first dimension of the step block's buffer)
_GRID = """    one = np.uint64(1)
    groups = min(np.uint64({buf}.shape[0]), np.uint64(T))
    parts = np.uint64(T) // groups
    g, p = np.uint64(t) // parts, np.uint64(t) % parts
    j0 = p * hd // parts  # its hidden units
    hs = (p + one) * hd // parts - j0
    lanes = np.uint64(panel_width({buf}))
    regs = (n + lanes - one) // lanes if n >= lanes else one  # register-columns, or one
    r0, r1 = g * regs // groups, (g + one) * regs // groups
    q0 = r0 * lanes  # its columns of each step block: wq, padded to wp in the buffers
    wq = min(n, r1 * lanes) - q0
    wp = (r1 - r0) * lanes if n >= lanes else n
    pr = np.uint64(PANEL_ROWS)
"""

_FORWARD = """def kernel(x, w, r, bias, h0, c0, s, c, a, ap, hx, sync, t, T):
    hd, n, d = np.uint64(h0.shape[0]), np.uint64(h0.shape[1]), np.uint64(x.shape[0])
{grid}    h2 = hd + hd
    h3 = h2 + hd
    x0 = p * d // parts  # the rows of x it stages for its group each step
    x1 = (p + one) * d // parts
    hxg = hx[g]  # (its columns: the first wp)
{weights}    cb = np.empty((hs, wq), dtype=s.dtype)
    for j in range(hs):
        for q in range(wq):
            qq = q0 + q
            cb[j, q] = c0[j0 + j, qq]
            hxg[0, j0 + j, q] = h0[j0 + j, qq]
            s[j0 + j, qq] = h0[j0 + j, qq]
            c[j0 + j, qq] = c0[j0 + j, qq]
    for m in range(x0, x1):
        for q in range(wq):
            hxg[0, hd + m, q] = x[m, q0 + q]
    base = np.uint64(sync[t * SYNC_STRIDE])  # where the counters stand (equal between calls)
    step_barrier(sync, t, T, base + one)  # every thread: the packed rows are shared
    steps = np.uint64(x.shape[1]) // n
    for k in range(steps):
        {product}
        h = hxg[(k + one) & one]
        for j in range(hs):
            jj = j0 + j
            for q in range(wq):
                col = k * n + q0 + q
                nxt = col + n
                ai = {gate_i}
                af = {gate_f}
                ag = {state_g}
                ao = {gate_o}
                cc = af * cb[j, q] + ai * ag
                hv = ao * {state_c}
                cb[j, q] = cc
                h[jj, q] = hv
                c[jj, nxt] = cc
                s[jj, nxt] = hv
                a[jj, col] = ai
                a[hd + jj, col] = af
                a[h2 + jj, col] = ag
                a[h3 + jj, col] = ao
        if k + one < steps:
            for m in range(x0, x1):
                for q in range(wq):
                    h[hd + m, q] = x[m, (k + one) * n + q0 + q]
        step_barrier(sync, t, parts, base + k + np.uint64(2), g * parts)
    return 0
"""

# a part's first panel in `ap`: the panels of the parts before it, in turn, each with {gates}
# packed rows a hidden unit (as `_panels` counts them)
_FIRST_PANEL = """    first = np.uint64(0)
    for u in range(p):
        first += (np.uint64({gates}) * ((u + one) * hd // parts - u * hd // parts) + pr
                  - one) // pr
"""

# the step's product on weights packed for `panel_gemm` (a step block at least a register
# wide), or as they are for BLAS: (weights, product) source for each kernel
_FORWARD_PRODUCT = {
    True: ("""    # its part's rows of [R W], packed for `panel_gemm` (its share of them: the
    # part's other groups pack the rest, seen after the first barrier), and of b
    rows = np.uint64(4) * hs
    panels = (rows + pr - one) // pr
{first_panel}    apl = ap[np.intp(first):np.intp(first + panels)]
    for i in range(g * rows // groups, (g + one) * rows // groups):
        row = i // hs * hd + j0 + i % hs
        pack_row(apl, i, 0, r[row])
        pack_row(apl, i, hd, w[row])
    bl = np.empty(rows, dtype=s.dtype)
    for gate in range(np.uint64(4)):
        for j in range(hs):
            bl[gate * hs + j] = bias[gate * hd + j0 + j, 0]
    z = np.empty((panels * pr, wp), dtype=s.dtype)
""", "panel_gemm(apl, hxg[k & one, :, :np.intp(wp)], z)"),
    False: ("""    # its part's rows of [R W] and of b
    rl = np.empty((4 * hs, hd + d), dtype=s.dtype)
    bl = np.empty(4 * hs, dtype=s.dtype)
    for gate in range(np.uint64(4)):
        for j in range(hs):
            row = gate * hd + j0 + j
            for m in range(hd):
                rl[gate * hs + j, m] = r[row, m]
            for m in range(d):
                rl[gate * hs + j, hd + m] = w[row, m]
            bl[gate * hs + j] = bias[row, 0]
    z = np.empty((4 * hs, wp), dtype=s.dtype)
""", "gemm(rl, hxg[k & one], z)")}
_BACKWARD_PRODUCT = {
    True: ("""    # its part's rows of R^T, packed (its share: as in the forward kernel)
    panels = (hs + pr - one) // pr
{first_panel}    apl = ap[np.intp(first):np.intp(first + panels)]
    for m in range(np.uint64(4) * hd):  # a panel's row of R^T: pr contiguous floats of R's
        for i in range(g * panels // groups, (g + one) * panels // groups):
            for u in range(min(pr, hs - i * pr)):
                apl[i, m * pr + u] = r[m, j0 + i * pr + u]
    dh = np.zeros((panels * pr, wp), dtype=dz.dtype)
""", "panel_gemm(apl, zg[:, np.intp(sq):np.intp(sq + wp)], dh)"),
    False: ("""    panels = (hs + pr - one) // pr
    rl = np.empty((hs, 4 * hd), dtype=dz.dtype)  # its part's rows of R^T
    for m in range(4 * hd):
        for j in range(hs):
            rl[j, m] = r[m, j0 + j]
    dh = np.zeros((hs, wp), dtype=dz.dtype)
""", "gemm(rl, zg[:, np.intp(sq):np.intp(sq + wp)], dh)")}

_DZ_OUT = """                dz[jj, col] = gi
                dz[hd + jj, col] = gf
                dz[h2 + jj, col] = gg
                dz[h3 + jj, col] = go
"""

_D0_OUT = """    for j in range(hs):
        jj = j0 + j
        for q in range(wq):
            qq = q0 + q
            dh0[jj, qq] = ds[jj, qq] + dh[j, q]
            dc0[jj, qq] = {dc0}
"""

_BACKWARD = """def kernel(dz, dh0, dc0, db, dr, dw, a, c, r, s, x, ds{args}, ap, zc, bt, acc, part,
           sync, t, T):
    hd, n = np.uint64(c.shape[0]), np.uint64(c.shape[1] - a.shape[1])
{grid}    h2 = hd + hd
    h3 = h2 + hd
    steps = np.uint64(a.shape[1]) // n
{weights}    # bt = [S's leading T·N columns; X]^T, a block for each group: wp rows a step (its
    # columns, then zero rows), S's and X's parts each padded with zero columns to whole
    # registers (the zeros from the allocation, never written); its share of its group's steps
    tn, d, wide = np.uint64(a.shape[1]), np.uint64(x.shape[0]), np.uint64(bt.shape[1])
    hp = (hd + lanes - one) // lanes * lanes
    btg = bt[np.intp(steps * q0):np.intp(steps * (q0 + wp))]
    for k in range(p * steps // parts, (p + one) * steps // parts):
        c0, c1, b0 = np.intp(k * n + q0), np.intp(k * n + q0 + wq), np.intp(k * wp)
        transpose_into(s[:np.intp(hd), c0:c1], btg[b0:b0 + c1 - c0, :np.intp(hd)])
        transpose_into(x[:, c0:c1], btg[b0:b0 + c1 - c0, np.intp(hp):np.intp(hp + d)])
        for q in range(wq, wp):  # the padding rows: zeros (a call on another grid may have
            for m in range(wide):  # written data there)
                btg[k * wp + q, m] = {zero}
    # its group's dZ of two chunks of steps, wp columns a step: a step's block is the
    # product's operand; at a chunk's end, every thread adds its rows of [dR dW] for the
    # chunk's columns of every group (still in cache) to its accumulator `at`, while the
    # groups go on into the other chunk
    zg = zc[g]
    widest = (regs + groups - one) // groups * lanes if n >= lanes else n
    chunk = max(one, np.uint64({chunk_columns}) // widest)  # steps: the same for every group
    for gate in range(np.uint64(4)):  # its padding columns: zeros (as bt's padding rows)
        for j in range(hs):
            for u in range(np.uint64(2) * chunk):
                for q in range(wq, wp):
                    zg[gate * hd + j0 + j, u * wp + q] = {zero}
    all_panels = (np.uint64(4) * hd + pr - one) // pr  # its rows of [dR dW]: whole panels
    m0 = np.uint64(t) * all_panels // np.uint64(T) * pr
    m1 = min(np.uint64(4) * hd, (np.uint64(t) + one) * all_panels // np.uint64(T) * pr)
    at = acc[np.intp(m0):np.intp((m1 + pr - one) // pr * pr)]  # (rows past 4H: scratch)
    for i in range(m1 - m0):
        for m in range(wide):
            at[i, m] = {zero}
    dcc = np.zeros((hs, wq), dtype=dz.dtype)
    sums = np.zeros((4 * hs, wq), dtype=dz.dtype)  # of its rows of dZ, for db
    base = np.uint64(sync[t * SYNC_STRIDE])  # where the counters stand (equal between calls)
    met = one  # the barriers met: every thread meets the same ones
    step_barrier(sync, t, T, base + met)  # every thread: the packed rows are shared
    for back in range(steps):
        k = steps - back - one
        half = (back // chunk) & one
        sq = (half * chunk + chunk - one - back % chunk) * wp  # the step's columns in zg
        for j in range(hs):
            jj = j0 + j
            for q in range(wq):
                col = k * n + q0 + q
                nxt = col + n
                ai = a[jj, col]
                af = a[hd + jj, col]
                ag = a[h2 + jj, col]
                ao = a[h3 + jj, col]
                sc = {state_c}
                dhv = ds[jj, nxt] + dh[j, q]
                dcv = dcc[j, q] + dhv * ao * {dstate_c}{dc_in}
                gi = (dcv * ag{da_i}) * {dgate_i}
                gf = (dcv * c[jj, col]{da_f}) * {dgate_f}
                gg = (dcv * ai{da_g}) * {dstate_g}
                go = (dhv * sc{da_o}) * {dgate_o}
                zg[jj, sq + q] = gi
                zg[hd + jj, sq + q] = gf
                zg[h2 + jj, sq + q] = gg
                zg[h3 + jj, sq + q] = go
{dz_out}                sums[j, q] += gi
                sums[hs + j, q] += gf
                sums[2 * hs + j, q] += gg
                sums[3 * hs + j, q] += go
                dcc[j, q] = dcv * af
        met += one
        step_barrier(sync, t, parts, base + met, g * parts)
        if back + one < steps or {has_d0}:  # the last step's product is for dh0 alone
            {product}
        if (back + one) % chunk == 0 or back + one == steps:  # steps k.. of the chunk
            met += one  # its group's chunk done: its own columns first, then every other
            store_release(sync, t * SYNC_STRIDE, base + met)  # group's once they are
            s0 = half * chunk + chunk - one - back % chunk  # the chunk's slots: s0, ..., s1 - 1
            s1 = (half + one) * chunk
            for v in range(groups):  # group u: its columns' width, slots and block of bt
                u = (g + v) % groups
                if v == one:
                    barrier_wait(sync, base + met, np.uint64(0), np.uint64(T))
                u0 = u * regs // groups
                uw = ((u + one) * regs // groups - u0) * lanes if n >= lanes else n
                b0 = np.intp((steps * u0 * lanes if n >= lanes else 0) + k * uw)
                z0, z1 = np.intp(s0 * uw), np.intp(s1 * uw)
                panel_gemm_add(zc[u, np.intp(m0):np.intp(m1), z0:z1], bt[b0:b0 + z1 - z0], at)
{d0_out}    for gate in range(np.uint64(4)):  # its columns' sums, for every group's to be added
        for j in range(hs):
            total = sums[gate * hs + j, 0]
            for q in range(one, wq):
                total += sums[gate * hs + j, q]
            part[g, gate * hd + j0 + j] = total
    store_release(sync, t * SYNC_STRIDE, base + met + one)  # its sums are in
    for i in range(m1 - m0):
        row = m0 + i
        for m in range(hd):
            dr[row, m] = at[i, m]
        for m in range(d):
            dw[row, m] = at[i, hp + m]
    barrier_wait(sync, base + met + one, np.uint64(0), np.uint64(T))  # every group's sums
    for row in range(m0, m1):
        total = part[0, row]
        for u in range(one, groups):
            total += part[u, row]
        db[row, 0] = total
    return 0
"""
