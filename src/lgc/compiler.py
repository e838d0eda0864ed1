"""lgc.compile: a function compiled by a backend, and `lower` to inspect every stage (API §4)."""

from __future__ import annotations

from .backend import get_backend
from .ir.core import Graph
from .ir.text import print_node, value_names
from .ir.trace import Program
from .passes import optimize
from .transforms import compiled, run


def _is_gradient(n) -> bool:
    return n.prov == "dlgradient" or n.prov.startswith("vjp(")


def gradient_part(g: Graph) -> Graph | None:
    """The nodes dlgradient emitted, as a graph over the forward values they read."""
    nodes = [n for n in g.nodes if _is_gradient(n)]
    if not nodes:
        return None
    made = {o for n in nodes for o in n.outputs}
    inputs, seen = [], set()
    for n in nodes:
        for v in n.inputs:
            if v not in made and v not in seen:
                seen.add(v)
                inputs.append(v)
    used_after = {v for n in g.nodes if not _is_gradient(n) for v in n.inputs} | set(g.outputs)
    outputs = [o for n in nodes for o in n.outputs if o in used_after]
    return Graph(f"grad_{g.name}", inputs, nodes, outputs)


class Lowered:
    """Every stage of a compiled function at one signature."""

    def __init__(self, program: Program, exe):
        self.program = program
        self.executable = exe
        self.gradient_program = gradient_part(program.graph)
        self.optimized = getattr(exe, "optimized", None) or optimize(program.graph)
        self.kernels = list(getattr(exe, "kernels", []))

    @property
    def source(self) -> str:
        """The whole generated module: every kernel, each after the IR line it came from."""
        names = value_names(self.optimized)
        parts = []
        for k in self.kernels:
            parts.append(f"# {print_node(k.node, names)}\n{k.source}")
        return "\n\n".join(parts)

    @property
    def stats(self) -> dict:
        base = {"n_ops": len(self.program.graph.nodes), "n_kernels": len(self.kernels),
                "compile_seconds": 0.0, "cache_hits": 0, "cache_misses": 0}
        return {**base, **getattr(self.executable, "stats", {})}

    def __repr__(self) -> str:
        s = self.stats
        return (f"<Lowered @{self.program.graph.name}: {s['n_ops']} ops -> "
                f"{len(self.optimized.nodes)} optimized, {s['n_kernels']} kernels>")


class CompiledFunction:
    """lgc.compile(fun) — call it like `fun`; `lower(*args)` shows every stage."""

    def __init__(self, fun, backend: str | None = None):
        self.fun = fun
        self.backend = backend
        self.__name__ = getattr(fun, "__name__", "compiled")
        self.__doc__ = getattr(fun, "__doc__", None)

    def _backend(self) -> str:
        return self.backend or get_backend()

    def __call__(self, *args):
        return run(self.fun, args, self._backend())

    def lower(self, *args) -> Lowered:
        """Trace and compile (or load from the cache) for these arguments."""
        return Lowered(*compiled(self.fun, args, self._backend()))

    def __repr__(self) -> str:
        return f"<CompiledFunction {self.__name__} backend={self._backend()}>"


def compile(fun, backend: str | None = None) -> CompiledFunction:  # noqa: A001
    """lgc.compile(fun, backend="numba") — `fun` traced and compiled per input signature.

    `fun` may call dlgradient. Example::

        step = lgc.compile(modelLoss)
        loss, grads = step(params, X, T)
        print(step.lower(params, X, T).source)
    """
    if backend is not None:
        from .backend import available_backends

        if backend not in available_backends():
            from .errors import LgcError

            raise LgcError(f"unknown backend {backend!r}; available: "
                           f"{', '.join(available_backends())}")
    return CompiledFunction(fun, backend)
