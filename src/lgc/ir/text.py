"""The one text syntax of the IR: printer (`print_graph`) and parser (`parse_graph`).

    func @loss(%x: f32[64,128]{CB}, %fc1/Weights: f32[256,64]) -> (f32[]) {
      %0: f32[256,128] = matmul(%fc1/Weights, %x)  # fc1
      %1: f32[256,128]{CB} = relabel(%0, fmt='CB')  # fc1
      return %1
    }

Graph inputs keep their names; node outputs are numbered in order. Attributes are Python
literals (arrays as nested lists); the text after `#` is the node's provenance.
`parse_graph(print_graph(g))` rebuilds an equal graph.
"""

from __future__ import annotations

import ast
import re

import numpy as np

from ..errors import LgcError
from .core import Graph, Node, Value
from .types import TensorType, np_dtype


def value_names(g: Graph) -> dict[Value, str]:
    names: dict[Value, str] = {v: v.name or f"in{i}" for i, v in enumerate(g.inputs)}
    k = 0
    for n in g.nodes:
        for o in n.outputs:
            names[o] = str(k)
            k += 1
    return names


def format_attr(v) -> str:
    if isinstance(v, np.ndarray):
        return repr(v.tolist())
    if isinstance(v, np.generic):
        return repr(v.item())
    return repr(v)


def _is_default(n: Node, k: str, v) -> bool:
    """Attributes equal to the op's default are left out of the text (the parser fills them)."""
    d = n.op.attrs.get(k, _MISSING)
    if d is _MISSING or isinstance(v, np.ndarray) or isinstance(d, np.ndarray):
        return False
    return type(v) is type(d) and v == d


_MISSING = object()


def print_node(n: Node, names: dict[Value, str]) -> str:
    outs = ", ".join(f"%{names[o]}: {o.type}" for o in n.outputs)
    args = [f"%{names.get(v, '?')}" for v in n.inputs]
    args += [f"{k}={format_attr(v)}" for k, v in n.attrs.items() if not _is_default(n, k, v)]
    line = f"{outs} = {n.op.name}({', '.join(args)})"
    return line + (f"  # {n.prov}" if n.prov else "")


def print_graph(g: Graph) -> str:
    names = value_names(g)
    params = ", ".join(f"%{names[v]}: {v.type}" for v in g.inputs)
    results = ", ".join(str(v.type) for v in g.outputs)
    lines = [f"func @{g.name}({params}) -> ({results}) {{"]
    lines += [f"  {print_node(n, names)}" for n in g.nodes]
    lines.append("  return " + ", ".join(f"%{names.get(v, '?')}" for v in g.outputs))
    lines.append("}")
    return "\n".join(lines)


# --- parser -----------------------------------------------------------------------------------


class ParseError(LgcError):
    """IR text that does not follow the syntax."""


_TYPE = re.compile(r"(\w+)\[([\d,]*)\](?:\{(\w*)\})?")
_NAME = r"%([^\s,:()=]+)"


def parse_type(text: str) -> TensorType:
    m = _TYPE.fullmatch(text.strip())
    if not m:
        raise ParseError(f"bad type {text!r}")
    shape = tuple(int(s) for s in m.group(2).split(",") if s)
    return TensorType(m.group(1), shape, m.group(3) or "")


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, cur, quote = [], 0, [], ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


class _Specials(ast.NodeTransformer):
    """`repr` prints non-finite floats as bare names; read them back as floats."""

    def visit_Name(self, node: ast.Name) -> ast.AST:  # noqa: N802
        if node.id in ("inf", "nan"):
            return ast.Constant(float(node.id))
        return node


def _literal(text: str, lineno: int):
    try:
        return ast.literal_eval(_Specials().visit(ast.parse(text, mode="eval")))
    except (ValueError, SyntaxError):
        raise ParseError(f"line {lineno}: cannot read attribute value {text!r}") from None


def parse_graph(text: str) -> Graph:
    from ..ops.base import get_op

    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    m = re.fullmatch(r"func @(\S+)\((.*)\) -> \((.*)\) \{", lines[0].strip())
    if not m or lines[-1].strip() != "}":
        raise ParseError("expected 'func @name(...) -> (...) {' ... '}'")
    g = Graph(m.group(1))
    env: dict[str, Value] = {}
    for p in _split_top(m.group(2)):
        pm = re.fullmatch(_NAME + r": (.*)", p)
        if not pm:
            raise ParseError(f"bad parameter {p!r}")
        v = Value(parse_type(pm.group(2)), name=pm.group(1))
        env[v.name] = v
        g.inputs.append(v)

    def lookup(name: str, lineno: int) -> Value:
        if name not in env:
            raise ParseError(f"line {lineno}: %{name} is used before it is defined")
        return env[name]

    for lineno, line in enumerate(lines[1:-1], start=2):
        line = line.strip()
        if line.startswith("return"):
            g.outputs = [lookup(a.strip()[1:], lineno) for a in line[6:].split(",") if a.strip()]
            continue
        body, _, prov = line.partition("  # ")
        lhs, _, rhs = body.partition(" = ")
        om = re.fullmatch(r"([\w.]+)\((.*)\)", rhs.strip())
        if not om:
            raise ParseError(f"line {lineno}: cannot read {line!r}")
        try:
            op = get_op(om.group(1))
        except KeyError:
            raise ParseError(f"line {lineno}: unknown op {om.group(1)!r}") from None
        inputs, attrs = [], {}
        for a in _split_top(om.group(2)):
            if a.startswith("%"):
                inputs.append(lookup(a[1:], lineno))
            else:
                k, _, v = a.partition("=")
                attrs[k.strip()] = _literal(v.strip(), lineno)
        out_names, out_types = [], []
        for o in _split_top(lhs):
            vm = re.fullmatch(_NAME + r": (.*)", o)
            if not vm:
                raise ParseError(f"line {lineno}: bad result {o!r}")
            out_names.append(vm.group(1))
            out_types.append(parse_type(vm.group(2)))
        if op.name == "constant" and "value" in attrs:
            attrs["value"] = np.asarray(attrs["value"], dtype=np_dtype(out_types[0].dtype))
        unknown = sorted(set(attrs) - set(op.attrs))
        if unknown:
            raise ParseError(f"line {lineno}: {op.name} has no attributes {unknown} "
                             f"(it has {sorted(op.attrs)})")
        attrs = op.normalize_attrs(attrs)
        n = Node(op, inputs, attrs, out_types, prov.strip())
        for name, v in zip(out_names, n.outputs):
            env[name] = v
        g.nodes.append(n)
    return g
