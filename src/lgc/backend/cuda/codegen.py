"""CUDA kernel source generation: the Numba CPU backend's scalar bodies in a CUDA scaffold.

Every elementwise kernel is a grid-stride loop: thread `cuda.grid(1)` starts at its own element
and steps by `cuda.gridsize(1)`, so the loop bound is the guard and any launch configuration is
correct. The launch is chosen from the size (`launch`): enough 256-thread blocks to cover the
elements on a GPU, capped so huge arrays loop; under the simulator, which runs every thread as a
Python thread, 2 blocks of at most 4 threads (still several blocks and several threads, so the
striding and the guards are exercised). Fused bodies come from `node.op.scalar_code`, exactly
as in the CPU backend; sizes never appear in the source, so one kernel serves every batch size.
"""

from __future__ import annotations

import re
import textwrap

from ...errors import CompileError
from ...ir.core import Node
from ...ops.nn import SOFTMAX_BODY
from ..numba.codegen import operand_loads, scalar_reads
from . import simulator

GPU_THREADS = 256
GPU_MAX_BLOCKS = 4096  # beyond this the grid-stride loop covers the rest
SIM_THREADS, SIM_BLOCKS = 4, 2
GPU_TILE, SIM_TILE = 16, 4  # matmul tile edge: 16x16 threads on a GPU, 4x4 in the simulator


def launch(n: int) -> tuple[int, int]:
    """(blocks, threads per block) for `n` elements of grid-stride work."""
    if simulator():
        threads = max(1, min(SIM_THREADS, n))
        return max(1, min(SIM_BLOCKS, -(-n // threads))), threads
    return max(1, min(GPU_MAX_BLOCKS, -(-n // GPU_THREADS))), GPU_THREADS


def tile() -> int:
    return SIM_TILE if simulator() else GPU_TILE


_NUMPY_TO_MATH = {"np.sqrt(": "math.sqrt(", "np.exp(": "math.exp(", "np.log(": "math.log(",
                  "np.inf": "math.inf", "np.tanh(": "math.tanh(", "np.abs(": "abs("}


def device_code(text: str, what: str) -> str:
    """`text` with NumPy scalar calls spelled the way CUDA kernels take them (math.*)."""
    for a, b in _NUMPY_TO_MATH.items():
        text = text.replace(a, b)
    if re.search(r"\bnp\.", text):
        raise CompileError(f"the CUDA kernel of {what} uses NumPy ({text.strip()!r}), which "
                           f"device code cannot call")
    return text


def _unflatten(nd: int, shape_of: str, indent: str) -> list[str]:
    """Lines turning the flat index `i` into i0..i{nd-1} over `shape_of`'s shape (row-major)."""
    if nd == 1:
        return [f"{indent}i0 = i"]
    lines = [f"{indent}r = i"]
    for d in range(nd - 1, 0, -1):
        lines.append(f"{indent}i{d} = r % {shape_of}.shape[{d}]")
        lines.append(f"{indent}r = r // {shape_of}.shape[{d}]")
    lines.append(f"{indent}i0 = r")
    return lines


_LOOP = "    for i in range(cuda.grid(1), {n}, cuda.gridsize(1)):"


def emit_fused(node: Node, kinds: list[str], nd: int) -> str:
    """Source of `kernel(outs..., ins...)` for a fused node; `kinds` and `nd` as in the CPU
    backend's emit_fused: "scalar" (1-element array read once), "full", or a broadcast pattern
    like "i0" whose 0s index size-1 dims at 0; nd = 1 when every operand is full or scalar."""
    outs = [f"o{k}" for k in range(len(node.outputs))]
    lines = [f"def kernel({', '.join(outs + [f'a{k}' for k in range(len(node.inputs))])}):"]
    reads, names = scalar_reads(kinds)
    lines += reads
    lines.append(_LOOP.format(n="o0.size"))
    ind = " " * 8
    lines += _unflatten(nd, "o0", ind)
    idx = ", ".join(f"i{d}" for d in range(nd))
    lines += operand_loads(kinds, nd, ind)
    body, results = node.op.scalar_code(node, names, target="cuda")
    lines += [ind + device_code(ln, f"fused ({node.prov})") for ln in body]
    lines += [f"{ind}{o}[{idx}] = {r}" for o, r in zip(outs, results)]
    return "\n".join(lines) + "\n"


def emit_reduce(init: str, update: str, what: str) -> str:
    """Source of `kernel(out, x)`: out[p, q] = reduce over k of x[p, k, q], one thread per
    output (q fastest across threads, so neighbouring threads read neighbouring memory)."""
    step = re.sub(r"\bv\b", "x[p, k, q]", device_code(update, what))
    return (
        "def kernel(out, x):\n"
        + _LOOP.format(n="out.size") + "\n"
        "        p = i // x.shape[2]\n"
        "        q = i - p * x.shape[2]\n"
        f"        acc = {device_code(init, what)}\n"
        "        for k in range(x.shape[1]):\n"
        f"            acc = {step}\n"
        "        out[p, q] = acc\n"
    )


# softmax over K of the (P, K, Q) view, one thread per (p, q), around the op's own body
SOFTMAX = ("def kernel(out, x):\n"
           "    for i in range(cuda.grid(1), x.shape[0] * x.shape[2], cuda.gridsize(1)):\n"
           "        p = i // x.shape[2]\n"
           "        q = i - p * x.shape[2]\n"
           + textwrap.indent(device_code(SOFTMAX_BODY, "softmax"), " " * 8))


def emit_matmul(dtype: str, t: int) -> str:
    """Tiled z = x @ y: each (t, t) block stages a tile of x and of y in shared memory per step
    along k, so each input element is read from global memory m/t (or n/t) times, not m (n)."""
    dt = {"f32": "float32", "f64": "float64"}[dtype]
    return f"""def kernel(z, x, y):
    sx = cuda.shared.array(({t}, {t}), dtype={dt})
    sy = cuda.shared.array(({t}, {t}), dtype={dt})
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    col = cuda.blockIdx.x * {t} + tx
    row = cuda.blockIdx.y * {t} + ty
    acc = 0.0
    for k0 in range(0, x.shape[1], {t}):
        if row < x.shape[0] and k0 + tx < x.shape[1]:
            sx[ty, tx] = x[row, k0 + tx]
        else:
            sx[ty, tx] = 0.0
        if col < y.shape[1] and k0 + ty < y.shape[0]:
            sy[ty, tx] = y[k0 + ty, col]
        else:
            sy[ty, tx] = 0.0
        cuda.syncthreads()
        for j in range({t}):
            acc += sx[ty, j] * sy[j, tx]
        cuda.syncthreads()
    if row < z.shape[0] and col < z.shape[1]:
        z[row, col] = acc
"""


def emit_update(op) -> str:
    """The op's own loop body over flat buffers (`op.body`: reads the arrays at i, writes the
    outputs at i), as a grid-stride CUDA kernel; the derived scalars are kernel arguments."""
    names = ([f"o{k}" for k in range(op.n_outputs)] + list(op.arg_names[:op.n_arrays])
             + list(op.scalar_names))
    body = "".join(f"        {device_code(ln, op.name)}\n" for ln in op.body)
    return f"def kernel({', '.join(names)}):\n" + _LOOP.format(n="o0.shape[0]") + "\n" + body


def emit_copy(nd: int, dst: list[str], src: list[str], space: str, n_args: int = 0) -> str:
    """Source of `kernel(o, x, c0, c1, ...)`: o[dst] = x[src] for every index i0..i{nd-1} of
    the iteration array `space` ("o" or "x"); dst/src are index expressions over the i's and
    the integer arguments c*. Transposes, broadcasts, slices and concatenations are all this."""
    args = ", ".join(["o", "x"] + [f"c{k}" for k in range(n_args)])
    lines = [f"def kernel({args}):", _LOOP.format(n=f"{space}.size")]
    lines += _unflatten(nd, space, " " * 8)
    lines.append(f"        o[{', '.join(dst)}] = x[{', '.join(src)}]")
    return "\n".join(lines) + "\n"


FILL = """def kernel(o, value):
    for i in range(cuda.grid(1), o.size, cuda.gridsize(1)):
        o[i] = value
"""
