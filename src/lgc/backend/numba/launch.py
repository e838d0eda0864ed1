"""Kernel calls handed to the pool's threads without Python: a prepared call's arguments packed
once into a block of memory, and a trampoline that unpacks them and calls the kernel's
compiled code, so a worker thread runs its part of a call straight from its compiled wait
loop (threads.py, `_pool`'s SERVE) and never takes the GIL.

Why: a worker that runs a Python call must take the GIL, which the caller holds while it posts
the call; the worker then sleeps until the caller's own part releases it, and waking a sleeping
thread costs 20-60 us on a VM, every call. Through a trampoline, a call on two threads costs
a few microseconds more than on one.

The trampoline (`i32 tramp(i8* block, i64 t, i64 T)`, LLVM IR built with llvmlite and compiled
unoptimized, a program's together, its machine code cached on disk by the kernels' signatures
and loaded by an MCJIT engine of its own) loads each argument from the block (arrays as
Numba's array structs: meminfo and parent null, size, itemsize, data, shape, strides), calls
the kernel's compiled function, at the address the module keeps in a slot for it, with
Numba's calling convention, and returns 1 when the kernel raised. Only kernels whose arguments
are arrays and numbers take this path; the others keep the Python one.
"""

from __future__ import annotations

import struct

import numpy as np

# numba and llvmlite are imported in the functions: the runtime imports this module, and
# `import lgc` must not import Numba (~0.2 s) before a program is compiled
_WORD = 8


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
    """Trampolines for `kernels` in one module of their own, unoptimized (each is a few loads
    and a call: through Numba's codegen library, its O3 pipeline and linking, one cost ~10 ms
    alone and ~3.5 in a batch; here ~1), loaded into an MCJIT engine of their own; returns
    their addresses. Each calls its kernel at the address in its slot of the module's array
    (`lgc_targets` returns where it is), filled after loading, so the machine code depends on
    the signatures only: it is cached on disk by them (a warm start loads it in ~1 ms instead
    of building it, ~3 ms a trampoline)."""
    import ctypes

    from .compile import write_atomic

    descs = [dispatcher.overloads[tuple(sig)].fndesc for dispatcher, sig in kernels]
    targets = [dispatcher.overloads[tuple(sig)].library.get_pointer_to_function(
        d.llvm_func_name) for (dispatcher, sig), d in zip(kernels, descs)]
    if not all(targets):
        raise RuntimeError("launch: no address for "
                           + ", ".join(d.llvm_func_name for d, a in zip(descs, targets) if not a))
    path = _object_path(descs, llvm)
    machine = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(
        opt=0, codemodel="jitdefault")
    try:
        obj = path.read_bytes()
    except OSError:
        obj = machine.emit_object(llvm.parse_assembly(_module(descs, ctx, llvm)))
        try:
            write_atomic(path, obj)
        except OSError:  # a read-only cache: the next process builds them again
            pass
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    _KEEP.append(engine)
    slots = ctypes.CFUNCTYPE(ctypes.c_void_p)(engine.get_function_address("lgc_targets"))()
    (ctypes.c_int64 * len(targets)).from_address(slots)[:] = targets
    return [engine.get_function_address(f"lgc_tramp_{i}") for i in range(len(descs))]


def _object_path(descs, llvm):
    """The cache file of the trampolines for these kernel signatures (their Numba types: the
    data model of each argument and the calling convention follow from them), made by this
    file's code (its hash is in the key) with these Numba and llvmlite versions."""
    import hashlib
    from pathlib import Path

    import llvmlite
    import numba

    from .compile import cache_dir

    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    spec = repr((code, numba.__version__, llvmlite.__version__, llvm.get_process_triple(),
                 [(str(d.restype), [str(t) for t in d.argtypes]) for d in descs]))
    return cache_dir() / "trampolines" / f"{hashlib.sha256(spec.encode()).hexdigest()[:32]}.o"


def _module(descs, ctx, llvm) -> str:
    """The LLVM IR of the trampolines `lgc_tramp_<i>` for kernels of `descs`, each calling the
    function whose address is in slot i of `lgc_targets` (an array the module exports through
    the function `lgc_targets`, which returns its address)."""
    from llvmlite import ir

    module = ir.Module("lgc_trampolines")
    module.triple = llvm.get_process_triple()
    i64 = ir.IntType(64)
    slots = ir.GlobalVariable(module, ir.ArrayType(i64, len(descs)), "lgc_target_slots")
    slots.initializer = ir.Constant(ir.ArrayType(i64, len(descs)), [0] * len(descs))
    slots.linkage = "internal"
    get = ir.Function(module, ir.FunctionType(i64.as_pointer(), []), "lgc_targets")
    ir.IRBuilder(get.append_basic_block("entry")).ret(slots.gep([ir.Constant(ir.IntType(32), 0),
                                                                 ir.Constant(ir.IntType(32), 0)]))
    for i, fndesc in enumerate(descs):
        _define(module, ctx, fndesc, slots, i)
    return str(module)


def _define(module, ctx, fndesc, slots, i: int) -> None:
    """`i32 lgc_tramp_<i>(i8* block, i64 t, i64 T)` in `module`, calling the function at the
    address in slot i of `slots` (fndesc's, by Numba's calling convention)."""
    from llvmlite import ir
    from numba import types

    i8p, i64, i32 = ir.IntType(8).as_pointer(), ir.IntType(64), ir.IntType(32)
    fn = ir.Function(module, ir.FunctionType(i32, [i8p, i64, i64]), f"lgc_tramp_{i}")
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
    target = builder.load(builder.gep(slots, [i32(0), i32(i)]))
    callee = builder.inttoptr(target, fnty.as_pointer())
    status, _ = ctx.call_conv.call_function(builder, callee, fndesc.restype, argtys, values)
    builder.ret(builder.zext(status.is_error, i32))


_KEEP: list = []  # the trampolines' code stays for the process


__all__ = ["pack", "packable", "trampoline", "trampolines"]
