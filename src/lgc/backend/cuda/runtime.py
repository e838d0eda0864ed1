"""The CUDA executable: optimized, fused graph -> device kernels launched in order.

Mirrors the CPU backend's NumbaExecutable: the same passes and fusion, the same fused scalar
bodies in a CUDA scaffold, reductions over (P, K, Q) views, device lowerings for the other ops
(lowerings.py), and a host fallback (device -> host, the op's NumPy reference, host -> device)
for ops with no device kernel, listed in `stats["host_steps"]`. Device buffers are planned once
per executable (slots shared between values whose lifetimes do not overlap); transfers happen
only at the edges: inputs in, outputs out, plus the fallbacks.

Device residency (`donate`): an input donated to an output gets a device mirror, kept in the
module-level `MIRRORS` keyed by the host array's identity and shared by every executable; the
update writes into the mirror in place, inputs that are views into a mirrored host buffer become
device views of it, and the host copy is refreshed only by `sync_host()` (TrainStep.params calls
it). Until then the host buffer is stale: the device holds the truth.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import numpy as np

from ...errors import CompileError, LgcError, ShapeError
from ...ir.core import Graph, Node, Value
from ...ir.types import np_dtype
from ...passes import optimize
from ..numba.runtime import Kernel as CpuKernel
from ..numba.runtime import _pkq, host_input
from ..plan import plan_buffers, workspace_bytes
from . import codegen, cuda, require_device
from .compile import load_kernel
from .lowerings import lowering


@dataclass
class Kernel(CpuKernel):
    """A generated CUDA kernel: the CPU backend's record, plus its launch count."""

    launches: int = 0


@dataclass
class Mirror:
    host: weakref.ref
    dev: object
    dirty: bool = False  # the device copy is newer than the host


MIRRORS: dict[int, Mirror] = {}


def _mirror(a: np.ndarray) -> tuple[Mirror, bool]:
    """The device mirror of host buffer `a`, and whether it was just uploaded."""
    m = MIRRORS.get(id(a))
    if m is not None and m.host() is a:
        return m, False
    key = id(a)
    m = MIRRORS[key] = Mirror(weakref.ref(a, lambda _: MIRRORS.pop(key, None)),
                              cuda.to_device(a))
    return m, True


def _device_view(a: np.ndarray):
    """A device view of `a` when it lies inside a mirrored host buffer (a parameter view into
    a flat buffer), else None."""
    if a.base is None or not MIRRORS:
        return None
    lo = a.__array_interface__["data"][0]
    for m in MIRRORS.values():
        h = m.host()
        if h is None or h.dtype != a.dtype or not h.flags.c_contiguous:
            continue
        base = h.__array_interface__["data"][0]
        if base <= lo and lo + a.nbytes <= base + h.nbytes and (lo - base) % a.itemsize == 0:
            off = (lo - base) // a.itemsize
            flat = m.dev.reshape(h.size)
            return flat[off:off + a.size].reshape(a.shape)
    return None


def sync_host() -> None:
    """Copy every device-updated mirror back into its host buffer."""
    for m in list(MIRRORS.values()):
        h = m.host()
        if m.dirty and h is not None:
            m.dev.copy_to_host(h)
            m.dirty = False


def forget(arrays) -> None:
    """Drop the mirrors of host arrays written on the host (the next call uploads them)."""
    for a in arrays:
        m = MIRRORS.get(id(a))
        if m is not None and m.host() is a:
            del MIRRORS[id(a)]


class CudaExecutable:
    backend = "cuda"

    def __init__(self, g: Graph):
        require_device()
        t0 = time.perf_counter()
        self.graph = g
        self.optimized = optimize(g)
        self.kernels: list[Kernel] = []
        self.transfers = {"to_device": 0, "to_host": 0}
        self._index: dict[Value, int] = {v: i for i, v in enumerate(self.optimized.inputs)}
        for n in self.optimized.nodes:
            for o in n.outputs:
                self._index[o] = len(self._index)
        self._types = {self._index[o]: o.type for n in self.optimized.nodes for o in n.outputs}
        self._consts: dict[int, object] = {}
        self._steps = [self._step(n) for n in self.optimized.nodes]
        self._plan_buffers()
        self._inputs = [cuda.device_array(v.shape, np_dtype(v.dtype))
                        for v in self.optimized.inputs]
        self._outputs = [self._index[v] for v in self.optimized.outputs]
        self._donated: dict[int, int] = {}
        self._donated_outputs: dict[int, int] = {}
        self.build_seconds = time.perf_counter() - t0

    # --- building -----------------------------------------------------------------------------

    def _kern(self, node: Node, ops: list[str]):
        def kern(source: str):
            try:
                fn = load_kernel(source)
            except Exception as e:  # a generated-source bug must name its origin
                raise CompileError(f"cannot build the CUDA kernel of {node.op.name} "
                                   f"(from {node.prov or 'model'}): {e}") from None
            k = Kernel(node, source, fn, ops, node.prov)
            self.kernels.append(k)

            def launch(grid, *args):
                if k.launches:
                    k.launches += 1
                    fn[grid](*args)
                    return
                self._first_launch(k, grid, args)
            return launch
        return kern

    def _first_launch(self, k: Kernel, grid, args) -> None:
        before = len(getattr(k.fn, "overloads", {}))
        t0 = time.perf_counter()
        try:
            k.fn[grid](*args)
        except LgcError:
            raise
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CompileError(f"the CUDA {k.node.op.name} kernel from {k.prov or 'the model'} "
                               f"failed: {msg}") from None
        k.launches = 1
        k.compile_seconds = time.perf_counter() - t0
        k.cache_hit = len(getattr(k.fn, "overloads", {})) == before

    def _step(self, n: Node):
        ins = [self._index[v] for v in n.inputs]
        outs = [self._index[o] for o in n.outputs]
        op = n.op
        if op.name == "fused":
            return ("kernel", n, self._fused(n, ins, outs))
        if op.reduce is not None and len(n.inputs) == 1:
            return ("kernel", n, self._reduce(n, ins, outs))
        if op.reshapes:
            (i_in,), (i_out,) = ins, outs
            shape = n.out.shape

            def view(env):
                env[i_out] = env[i_in].reshape(shape) if shape else env[i_in].reshape(())
            return ("view", n, view)
        if not n.inputs and op.pure:  # constants and fills: computed once, resident
            res = op.ref(**n.attrs)
            for i, r in zip(outs, res if isinstance(res, tuple) else (res,)):
                self._consts[i] = cuda.to_device(np.ascontiguousarray(r))

            def const(env):
                for i in outs:
                    env[i] = self._consts[i]
            return ("const", n, const)
        call = lowering(n, self._kern(n, [op.name]))
        if call is not None:
            def run(env, host):
                call([env[i] for i in ins], [self._out(env, i) for i in outs],
                     [host.get(i) for i in ins])
            return ("kernel", n, run)
        return ("host", n, self._host_step(n, ins, outs))

    def _host_step(self, n: Node, ins: list[int], outs: list[int]):
        op, attrs = n.op, n.attrs

        def run(env, host):
            args = [host[i] if i in host else self._to_host(env[i]) for i in ins]
            res = op.ref(*args, **attrs)
            for i, r in zip(outs, res if isinstance(res, tuple) else (res,)):
                t = self._types[i]
                self._out(env, i).copy_to_device(
                    np.ascontiguousarray(np.asarray(r, np_dtype(t.dtype)).reshape(t.shape)))
                self.transfers["to_device"] += 1
        return run

    def _fused(self, n: Node, ins: list[int], outs: list[int]):
        shape = n.attrs["shape"]
        size = int(np.prod(shape, dtype=np.int64))
        kinds, shapes = [], []
        for v in n.inputs:
            if v.type.size == 1:
                kinds.append("scalar")
                shapes.append((1,))
                continue
            padded = (1,) * (len(shape) - v.type.ndim) + v.shape
            kinds.append("full" if padded == shape else
                         "".join("0" if p == 1 and s != 1 else "i"
                                 for p, s in zip(padded, shape)))
            shapes.append(padded)
        flat = all(k in ("scalar", "full") for k in kinds)
        nd = 1 if flat else len(shape)
        iter_shape = (size,) if flat else shape
        if flat:
            shapes = [(1,) if k == "scalar" else (size,) for k in kinds]
        launch = self._kern(n, [b[0] for b in n.attrs["body"]])(codegen.emit_fused(n, kinds, nd))
        grid = codegen.launch(size)

        def run(env, host):
            args = [self._out(env, i).reshape(iter_shape) for i in outs]
            args += [env[i].reshape(s) for i, s in zip(ins, shapes)]
            launch(grid, *args)
        return run

    def _reduce(self, n: Node, ins: list[int], outs: list[int]):
        x = n.inputs[0]
        perm, p, kk, q = _pkq(x.shape, n.op.reduce_axes(n))
        init, update = n.op.reduce
        kern = self._kern(n, [n.op.name])
        launch = kern(codegen.emit_reduce(init, update, f"{n.op.name} ({n.prov})"))
        (i_in,), (i_out,) = ins, outs
        transpose = None
        if perm is not None and list(perm) != sorted(perm):  # axes not one block: transpose
            nd = len(perm)
            src = [f"i{perm.index(a)}" for a in range(nd)]
            transpose = kern(codegen.emit_copy(nd, [f"i{d}" for d in range(nd)], src, "o"))
            scratch = cuda.device_array(tuple(x.shape[d] for d in perm), np_dtype(x.dtype))
        grid, tgrid = codegen.launch(p * q), codegen.launch(x.type.size)

        def run(env, host):
            a = env[i_in]
            if transpose is not None:
                transpose(tgrid, scratch, a)
                a = scratch
            launch(grid, self._out(env, i_out).reshape((p, q)), a.reshape((p, kk, q)))
        return run

    def _plan_buffers(self) -> None:
        """Give every value a kernel or fallback writes a device buffer, reused across values
        whose lifetimes do not overlap (views keep their root alive; outputs live to the end)."""
        nodes = self.optimized.nodes
        plan = plan_buffers(nodes, [s[0] in ("kernel", "host") for s in self._steps],
                            [s[0] == "view" for s in self._steps],
                            lambda v: cuda.device_array(v.shape, np_dtype(v.dtype)),
                            live_to_end=self.optimized.outputs)
        self._buffers: dict[int, object] = {self._index[v]: b for v, b in plan.items()}
        self.workspace_bytes = workspace_bytes(plan)

    def donate(self, pairs: dict[int, int]) -> None:
        """Write graph output k into input j, for each k -> j, on the device: input j gets a
        device mirror that stays resident across calls (shared by every executable through
        MIRRORS), output k is returned as the host array passed as input j, and that host
        array is refreshed only by `sync_host()`."""
        outs = self.optimized.outputs
        self._donated = {self._index[outs[k]]: j for k, j in pairs.items()}
        self._donated_outputs = dict(pairs)
        # the planned buffers of donated values are never written: drop those used by no other
        shared = [i for i in self._buffers if i not in self._donated]
        for i in self._donated:
            buf = self._buffers.pop(i, None)
            if buf is not None and any(self._buffers[s] is buf for s in shared):
                self._buffers[i] = buf

    def sync_host(self) -> None:
        """Refresh the host copies of device-resident (donated) buffers."""
        sync_host()

    def _out(self, env, i: int):
        j = self._donated.get(i)
        buf = env[j] if j is not None else self._buffers[i]
        env[i] = buf
        return buf

    def _to_host(self, dev) -> np.ndarray:
        self.transfers["to_host"] += 1
        return dev.copy_to_host()

    # --- running ------------------------------------------------------------------------------

    def __call__(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        g = self.optimized
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"@{g.name}: expected {len(g.inputs)} inputs, got {len(inputs)}")
        env: list = [None] * len(self._index)
        host: dict[int, np.ndarray] = {}
        resident = set(self._donated.values())
        mirrors = []
        for j in sorted(resident):  # mirrors first: parameter views below point into them
            given = inputs[j]
            if not isinstance(given, np.ndarray) or host_input(g, j, given) is not given:
                raise ShapeError(f"@{g.name}: donated input {j} must be a C-contiguous "
                                 f"{np_dtype(g.inputs[j].dtype)} array (it is updated in place)")
            m, new = _mirror(inputs[j])
            self.transfers["to_device"] += new
            mirrors.append(m)
            env[j] = m.dev
        for k, a in enumerate(inputs):
            if k in resident:
                continue
            a = host[k] = host_input(g, k, a)
            dev = _device_view(a)
            if dev is None:
                dev = self._inputs[k]
                dev.copy_to_device(a)
                self.transfers["to_device"] += 1
            env[k] = dev
        for kind, _, run in self._steps:
            if kind in ("view", "const"):
                run(env)
            else:
                run(env, host)
        for m in mirrors:
            m.dirty = True
        out = []
        for k, i in enumerate(self._outputs):
            if k in self._donated_outputs:
                out.append(inputs[self._donated_outputs[k]])
            else:
                out.append(self._to_host(env[i]))
        return out

    @property
    def stats(self) -> dict:
        return {
            "n_ops": len(self.graph.nodes),
            "n_optimized_ops": len(self.optimized.nodes),
            "n_kernels": len(self.kernels),
            "compile_seconds": self.build_seconds + sum(k.compile_seconds for k in self.kernels),
            "cache_hits": sum(1 for k in self.kernels if k.cache_hit),
            "cache_misses": sum(1 for k in self.kernels if k.cache_hit is False),
            "host_steps": sorted({s[1].op.name for s in self._steps if s[0] == "host"}),
            "numpy_steps": [],
            "workspace_bytes": self.workspace_bytes,
            "transfers": dict(self.transfers),
            "simulator": codegen.simulator(),
        }
