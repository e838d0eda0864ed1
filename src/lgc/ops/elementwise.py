"""Elementwise ops: arithmetic, math, activations, comparisons, select and cast."""

from __future__ import annotations

import numpy as np

from ..ir.types import TensorType, np_dtype, result_dtype
from .base import (
    Elementwise,
    OpDef,
    Sample,
    broadcast_shapes,
    is_constant,
    merge_formats,
    register,
    same_type_input,
)


def _zero(b, v):
    return b.const(0.0, v.dtype)


# --- arithmetic -------------------------------------------------------------------------------


@register
class Add(Elementwise):
    """z = x + y"""

    name, arity, expr = "add", 2, "({0} + {1})"
    np_fn = staticmethod(np.add)

    def partials(self, b, node, ct):
        return [ct, ct]

    def simplify(self, node, b):
        x, y = node.inputs
        if is_constant(y, 0):
            return same_type_input(node, 0)
        if is_constant(x, 0):
            return same_type_input(node, 1)
        return _sum_of_products(node, b)


def _sum_of_products(node, b):
    """A1 @ B1 + A2 @ B2 -> [A2 A1] @ [B2; B1]: a weight used at every step of a recurrence gets
    its gradient as one GEMM over all steps instead of a GEMM and an add per step. Operands this
    rule already joined are joined flat, the later term first: reverse mode sums the steps from
    the last, so the joined operands come out in time order, the very concatenation of the
    step gradients that the input projection's gradient builds (CSE then shares it). A product
    that is also used elsewhere is then computed twice (correct, if wasteful)."""
    x, y = node.inputs
    px, py = x.producer, y.producer
    if (px is None or py is None or px.op.name != "matmul" or py.op.name != "matmul"
            or x.type != y.type or node.out.type != x.type):
        return None

    def parts(v, axis):
        p = v.producer
        if p is not None and p.op.name == "concatenate" and p.attrs["axis"] == axis:
            return list(p.inputs)
        return [v]
    lhs = parts(py.inputs[0], 1) + parts(px.inputs[0], 1)
    rhs = parts(py.inputs[1], 0) + parts(px.inputs[1], 0)
    return [b.emit("matmul", b.emit("concatenate", *lhs, axis=1),
                   b.emit("concatenate", *rhs, axis=0))]


@register
class Sub(Elementwise):
    """z = x - y"""

    name, arity, expr = "sub", 2, "({0} - {1})"
    np_fn = staticmethod(np.subtract)

    def partials(self, b, node, ct):
        return [ct, b.neg(ct)]

    def simplify(self, node, b):
        return same_type_input(node, 0) if is_constant(node.inputs[1], 0) else None


@register
class Mul(Elementwise):
    """z = x * y"""

    name, arity, expr = "mul", 2, "({0} * {1})"
    np_fn = staticmethod(np.multiply)

    def partials(self, b, node, ct):
        x, y = node.inputs
        return [b.mul(ct, y), b.mul(ct, x)]

    def simplify(self, node, b):
        x, y = node.inputs
        if is_constant(y, 1):
            return same_type_input(node, 0)
        return same_type_input(node, 1) if is_constant(x, 1) else None


@register
class Div(Elementwise):
    """z = x / y"""

    name, arity, expr = "div", 2, "({0} / {1})"
    np_fn = staticmethod(np.divide)

    def samples(self, rng):
        return [Sample([rng.uniform(-2, 2, (3, 4)), rng.uniform(0.5, 2, (3, 4))]),
                Sample([rng.uniform(-2, 2, (3, 4)), rng.uniform(0.5, 2, (4,))])]

    def partials(self, b, node, ct):
        x, y = node.inputs
        gx = b.emit("div", ct, y)
        return [gx, b.neg(b.mul(gx, node.out))]

    def simplify(self, node, b):
        return same_type_input(node, 0) if is_constant(node.inputs[1], 1) else None


@register
class Pow(Elementwise):
    """z = x ** y"""

    name, arity, expr = "pow", 2, "({0} ** {1})"
    np_fn = staticmethod(np.power)

    def samples(self, rng):
        return [Sample([rng.uniform(0.5, 2, (3, 4)), rng.uniform(-2, 2, (3, 4))]),
                Sample([rng.uniform(0.5, 2, (3, 4)), np.array(3.0)])]

    def partials(self, b, node, ct):
        x, y = node.inputs
        one = b.const(1.0, y.dtype)
        gx = b.mul(ct, b.mul(y, b.emit("pow", x, b.emit("sub", y, one))))
        gy = b.mul(ct, b.mul(node.out, b.emit("log", x)))
        return [gx, gy]


@register
class Neg(Elementwise):
    """y = -x"""

    name, expr = "neg", "(-{0})"
    np_fn = staticmethod(np.negative)

    def partials(self, b, node, ct):
        return [b.neg(ct)]

    def simplify(self, node, b):
        p = node.inputs[0].producer
        return same_type_input(p, 0) if p is not None and p.op is self else None


@register
class Maximum(Elementwise):
    """z = max(x, y); at ties each operand takes half the cotangent"""

    name, arity, expr = "maximum", 2, "max({0}, {1})"
    np_fn = staticmethod(np.maximum)
    cmp = "greater"

    def partials(self, b, node, ct):
        x, y = node.inputs
        one, half = b.const(1.0, ct.dtype), b.const(0.5, ct.dtype)
        tie = b.emit("where", b.emit("equal", x, y), half, _zero(b, ct))
        wx = b.emit("where", b.emit(self.cmp, x, y), one, tie)
        return [b.mul(ct, wx), b.mul(ct, b.emit("sub", one, wx))]


@register
class Minimum(Maximum):
    """z = min(x, y); at ties each operand takes half the cotangent"""

    name, expr = "minimum", "min({0}, {1})"
    np_fn = staticmethod(np.minimum)
    cmp = "less"


# --- math -------------------------------------------------------------------------------------


@register
class Exp(Elementwise):
    """y = exp(x)"""

    name, expr, expr_cpu = "exp", "math.exp({0})", "fast_exp({0})"
    np_fn = staticmethod(np.exp)

    def partials(self, b, node, ct):
        return [b.mul(ct, node.out)]


@register
class Log(Elementwise):
    """y = log(x)"""

    name, expr, expr_cpu, domain = "log", "math.log({0})", "fast_log({0})", (0.5, 2.0)
    np_fn = staticmethod(np.log)

    def partials(self, b, node, ct):
        return [b.emit("div", ct, node.inputs[0])]


@register
class Sqrt(Elementwise):
    """y = sqrt(x)"""

    name, expr, domain = "sqrt", "math.sqrt({0})", (0.5, 2.0)
    np_fn = staticmethod(np.sqrt)

    def partials(self, b, node, ct):
        two = b.const(2.0, ct.dtype)
        return [b.emit("div", ct, b.mul(two, node.out))]


@register
class Abs(Elementwise):
    """y = |x|; the derivative at 0 is 0"""

    name, expr = "abs", "abs({0})"
    np_fn = staticmethod(np.abs)

    def partials(self, b, node, ct):
        return [b.mul(ct, b.emit("sign", node.inputs[0]))]


@register
class Sign(Elementwise):
    """y = sign(x) (piecewise constant: no gradient flows)"""

    name, expr = "sign", "(1.0 if {0} > 0 else (-1.0 if {0} < 0 else 0.0))"
    differentiable = False
    np_fn = staticmethod(np.sign)


@register
class Tanh(Elementwise):
    """y = tanh(x)"""

    name, expr, expr_cpu = "tanh", "math.tanh({0})", "fast_tanh({0})"
    np_fn = staticmethod(np.tanh)

    def partials(self, b, node, ct):
        one = b.const(1.0, ct.dtype)
        y = node.out
        return [b.mul(ct, b.emit("sub", one, b.mul(y, y)))]


@register
class Sin(Elementwise):
    """y = sin(x)"""

    name, expr = "sin", "math.sin({0})"
    np_fn = staticmethod(np.sin)

    def partials(self, b, node, ct):
        return [b.mul(ct, b.emit("cos", node.inputs[0]))]


@register
class Cos(Elementwise):
    """y = cos(x)"""

    name, expr = "cos", "math.cos({0})"
    np_fn = staticmethod(np.cos)

    def partials(self, b, node, ct):
        return [b.neg(b.mul(ct, b.emit("sin", node.inputs[0])))]


# --- activations ------------------------------------------------------------------------------


@register
class Sigmoid(Elementwise):
    """y = 1 / (1 + exp(-x))"""

    name = "sigmoid"
    expr = "(1.0 / (1.0 + math.exp(-{0})) if {0} >= 0 else math.exp({0}) / (1.0 + math.exp({0})))"
    expr_cpu = "fast_sigmoid({0})"  # the same two-branch form, as selects

    def np_fn(self, x):
        # the two-branch form never overflows exp
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def partials(self, b, node, ct):
        one = b.const(1.0, ct.dtype)
        y = node.out
        return [b.mul(ct, b.mul(y, b.emit("sub", one, y)))]


@register
class Relu(Elementwise):
    """y = max(x, 0); the derivative at 0 is 0"""

    name, expr = "relu", "({0} if {0} > 0 else 0.0)"

    def np_fn(self, x):
        return np.where(x > 0, x, 0)

    def partials(self, b, node, ct):
        x = node.inputs[0]
        return [b.emit("where", b.emit("greater", x, _zero(b, x)), ct, _zero(b, ct))]


@register
class LeakyRelu(Elementwise):
    """y = x if x > 0 else scale * x"""

    name, expr = "leakyrelu", "({0} if {0} > 0 else {0} * {scale})"
    attrs = {"scale": 0.01}

    def np_fn(self, x, scale):
        return np.where(x > 0, x, x * scale)

    def samples(self, rng):
        return [Sample([rng.uniform(-2, 2, (3, 4))], {"scale": 0.2})]

    def partials(self, b, node, ct):
        x = node.inputs[0]
        scaled = b.mul(ct, b.const(node.attrs["scale"], ct.dtype))
        return [b.emit("where", b.emit("greater", x, _zero(b, x)), ct, scaled)]


# --- comparisons, select, cast ----------------------------------------------------------------


class _Compare(Elementwise):
    arity, out_dtype, float_only, differentiable = 2, "bool", False, False


def _compare(ir_name: str, fn, sym: str):
    cls = type(f"Compare_{ir_name}", (_Compare,), {
        "name": ir_name, "expr": f"({{0}} {sym} {{1}})", "np_fn": staticmethod(fn),
        "__doc__": f"z = x {sym} y (bool)",
    })
    return register(cls)


for _name, _fn, _sym in [("greater", np.greater, ">"), ("greater_equal", np.greater_equal, ">="),
                         ("less", np.less, "<"), ("less_equal", np.less_equal, "<="),
                         ("equal", np.equal, "=="), ("not_equal", np.not_equal, "!=")]:
    _compare(_name, _fn, _sym)


@register
class Where(OpDef):
    """z = x where cond else y"""

    name = "where"
    expr, fusible = "({1} if {0} else {2})", True

    def infer(self, in_types, **attrs):
        shape = broadcast_shapes(self.name, *(t.shape for t in in_types))
        fmt = merge_formats(self.name, list(in_types), len(shape))
        return [TensorType(result_dtype(in_types[1].dtype, in_types[2].dtype), shape, fmt)]

    def ref(self, c, x, y):
        dtype = np.result_type(x.dtype, y.dtype)
        return np.where(c, x, y).astype(dtype, copy=False)

    def vjp(self, b, node, cts):
        (ct,) = cts
        c, x, y = node.inputs
        zero = _zero(b, ct)
        gx = b.sum_to(b.emit("where", c, ct, zero), x.shape)
        gy = b.sum_to(b.emit("where", c, zero, ct), y.shape)
        return [None, gx, gy]

    def samples(self, rng):
        c = rng.uniform(size=(3, 4)) > 0.5
        return [Sample([c, rng.normal(size=(3, 4)), rng.normal(size=(4,))], nondiff=(0,))]


@register
class Cast(OpDef):
    """y = x converted to `dtype`"""

    name = "cast"
    attrs = {"dtype": "f32"}
    expr, fusible = "{0}", True

    def infer(self, in_types, dtype):
        return [in_types[0].with_(dtype=dtype)]

    def ref(self, x, dtype):
        return x.astype(np_dtype(dtype))

    def vjp(self, b, node, cts):
        x = node.inputs[0]
        if cts[0] is None or x.dtype not in ("f32", "f64"):
            return [None]
        return [b.emit("cast", cts[0], dtype=x.dtype)]

    def samples(self, rng):
        return [Sample([rng.normal(size=(3, 4))], {"dtype": "f64"})]

    def simplify(self, node, b):
        return same_type_input(node, 0)


@register
class StopGradient(Elementwise):
    """y = x, seen by autodiff as a constant"""

    name, expr, differentiable, float_only = "stop_gradient", "{0}", False, False
    alias = True

    def np_fn(self, x):
        return x
