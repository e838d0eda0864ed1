"""Kernel calls handed to the pool's threads without Python: a prepared call's arguments packed
once into a block of memory, and a trampoline that unpacks them and calls the kernel's
compiled code, so a worker thread runs its part of a call straight from its compiled wait
loop (threads.py, `_pool`'s SERVE) and never takes the GIL.

Why: a worker that runs a Python call must take the GIL, which the caller holds while it posts
the call; the worker then sleeps until the caller's own part releases it, and waking a sleeping
thread costs 20-60 us on a VM, every call. Through a trampoline, a call on two threads costs
a few microseconds more than on one.

The trampoline (`i32 tramp(i8* block, i64 t, i64 T)`, LLVM IR built with llvmlite and compiled
unoptimized by an MCJIT engine of its own: ~1 ms each, a program's together) loads each
argument from the block (arrays as Numba's array structs: meminfo and parent null, size,
itemsize, data, shape, strides), calls the kernel's
compiled function by address with Numba's calling convention, and returns 1 when the kernel
raised. Only kernels whose arguments are arrays and numbers take this path; the others keep
the Python one.
"""

from __future__ import annotations

import itertools
import struct

import numpy as np

# numba and llvmlite are imported in the functions: the runtime imports this module, and
# `import lgc` must not import Numba (~0.2 s) before a program is compiled
_WORD = 8
_COUNTER = itertools.count()


def _words(ty) -> int | None:
    """Words of the block one argument of Numba type `ty` takes; None: not packable."""
    from numba import types

    if isinstance(ty, types.Array):
        return 5 + 2 * ty.ndim
    if isinstance(ty, (types.Integer, types.Float, types.Boolean)):
        return 1
    return None


def packable(sig) -> bool:
    """Whether a kernel signature (its arguments, (t, T) last) can go through a trampoline."""
    from numba import types

    return all(_words(ty) is not None for ty in sig[:-2]) and all(
        isinstance(ty, types.Integer) for ty in sig[-2:])


def pack(sig, args) -> np.ndarray:
    """The block of `args` (the arguments before (t, T)) for a trampoline of `sig`. The caller
    keeps the arrays alive as long as the block is used."""
    from numba import types

    words: list[int] = []
    for ty, a in zip(sig, args):
        if isinstance(ty, types.Array):
            if not (isinstance(a, np.ndarray) and a.ndim == ty.ndim):
                raise TypeError(f"launch.pack: {ty} expected, got {type(a).__name__}")
            words += [0, 0, a.size, a.itemsize, a.ctypes.data, *a.shape, *a.strides]
        elif isinstance(ty, types.Float):
            fmt = "<f" if ty.bitwidth == 32 else "<d"
            raw = struct.pack(fmt, float(a)).ljust(_WORD, b"\0")
            words.append(struct.unpack("<q", raw)[0])
        else:
            words.append(int(a))
    return np.array(words, np.int64)


def trampoline(dispatcher, sig) -> int:
    """The address of a trampoline calling `dispatcher`'s compiled overload for `sig`."""
    return trampolines([(dispatcher, sig)])[0]


def trampolines(kernels: list[tuple]) -> list[int]:
    """The addresses of trampolines for (dispatcher, signature) pairs, each made once per
    overload; the new ones compiled together (one module: ~1 ms a trampoline)."""
    import llvmlite.binding as llvm
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    keys = [(id(d), tuple(s)) for d, s in kernels]
    new = {k: (d, s) for k, (d, s) in zip(keys, kernels) if k not in _MADE}
    if new:
        with global_compiler_lock:
            made = _build(list(new.values()), llvm, cpu_target.target_context)
        _MADE.update(zip(new, made))
    return [_MADE[k] for k in keys]


_MADE: dict[tuple, int] = {}


def _build(kernels: list[tuple], llvm, ctx) -> list[int]:
    """Compile trampolines for `kernels` in one module of their own, unoptimized (each is a
    few loads and a call: through Numba's codegen library, its O3 pipeline and linking, one
    cost ~10 ms alone and ~3.5 in a batch; here ~1), calling each kernel at its address;
    returns their addresses."""
    from llvmlite import ir

    module = ir.Module(f"lgc_trampolines_{next(_COUNTER)}")
    module.triple = llvm.get_process_triple()
    names = []
    for dispatcher, sig in kernels:
        cres = dispatcher.overloads[tuple(sig)]
        fndesc = cres.fndesc
        target = cres.library.get_pointer_to_function(fndesc.llvm_func_name)
        if not target:
            raise RuntimeError(f"launch: no address for {fndesc.llvm_func_name}")
        names.append(_define(module, ctx, fndesc, target))
    parsed = llvm.parse_assembly(str(module))
    machine = llvm.Target.from_triple(module.triple).create_target_machine(
        opt=0, codemodel="jitdefault")
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.finalize_object()
    _KEEP.append(engine)
    return [engine.get_function_address(name) for name in names]


def _define(module, ctx, fndesc, target: int) -> str:
    """`i32 lgc_tramp_<n>(i8* block, i64 t, i64 T)` in `module`, calling the function at address
    `target` (fndesc's, by Numba's calling convention); returns its name."""
    from llvmlite import ir
    from numba import types

    i8p, i64 = ir.IntType(8).as_pointer(), ir.IntType(64)
    fn = ir.Function(module, ir.FunctionType(ir.IntType(32), [i8p, i64, i64]),
                     f"lgc_tramp_{next(_COUNTER)}")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    block, t, count = fn.args
    argtys = list(fndesc.argtypes)
    values, offset = [], 0
    for ty in argtys[:-2]:
        llty = ctx.get_value_type(ty)
        ptr = builder.bitcast(builder.gep(block, [i64(offset * _WORD)]), llty.as_pointer())
        values.append(builder.load(ptr, align=_WORD))
        offset += _words(ty)
    values += [ctx.cast(builder, v, types.int64, ty) for v, ty in zip((t, count), argtys[-2:])]
    fnty = ctx.call_conv.get_function_type(fndesc.restype, argtys)
    callee = builder.inttoptr(i64(target), fnty.as_pointer())
    status, _ = ctx.call_conv.call_function(builder, callee, fndesc.restype, argtys, values)
    builder.ret(builder.zext(status.is_error, ir.IntType(32)))
    return fn.name


_KEEP: list = []  # the trampolines' code stays for the process


__all__ = ["pack", "packable", "trampoline", "trampolines"]
