"""The BLAS libraries next to the kernels: who gets the threads, their thread count during a
program, and the SciPy BLAS that kernels with in-kernel GEMMs (np.dot) call through Numba.

BLAS's threads spin-wait between calls, and so would any other pool's: two pools on the same
cores fight (measured: LeNet 16 ms -> 7 ms once BLAS ran single-threaded during the program).
A program therefore gives its threads either to BLAS or to its kernels (`matmul_bound`); in
the second case the runtime sets BLAS to one thread for the length of a call (`set_threads`).
"""

from __future__ import annotations

import os
import sys

from ...ir.core import Graph
from ...ops.base import PARALLEL_MIN_ELEMENTS

_BLAS: list = []  # the BLAS libraries' threadpoolctl controllers, found once (None: the end)
_BLAS_SEES_SCIPY = [False]  # whether SciPy's BLAS was loaded when they were found


def bind_scipy() -> None:
    """Kernels that call np.dot run SciPy's BLAS (Numba binds it): load it now so the thread
    limit below covers it too, or its threads spin against the kernels' (measured 15x slower)."""
    name = "scipy.linalg.cython_blas"
    if name not in sys.modules:
        # only the extension module Numba reads (12 ms), not all of scipy.linalg (250 ms of
        # a warm start); Cython users find it in sys.modules as usual
        try:
            import importlib.machinery
            import importlib.util

            where = importlib.util.find_spec("scipy").submodule_search_locations[0]
            folder = os.path.join(where, "linalg")
            so = next(f for f in os.listdir(folder) if f.startswith("cython_blas.")
                      and f.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)))
            spec = importlib.util.spec_from_file_location(name, os.path.join(folder, so))
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[name] = module
        except Exception:  # another SciPy layout: the plain import
            import scipy.linalg.cython_blas  # noqa: F401

    if _BLAS and not _BLAS_SEES_SCIPY[0]:
        _BLAS.clear()  # found again, SciPy's included, on the next call


def set_threads(n: int) -> int:
    """Set the BLAS libraries' thread count; returns the previous one (0 when unknown)."""
    if not _BLAS:
        _BLAS_SEES_SCIPY[0] = "scipy.linalg.cython_blas" in sys.modules
        try:
            import threadpoolctl

            _BLAS.extend(lc for lc in threadpoolctl.ThreadpoolController().lib_controllers
                         if lc.user_api == "blas")
        except Exception:  # threadpoolctl missing or a BLAS it cannot drive: leave BLAS alone
            pass
        _BLAS.append(None)
    previous = 0
    for lc in _BLAS:
        if lc is not None:
            previous = lc.num_threads
            lc.set_num_threads(n)
    return previous


# rough costs per unit, for one decision only: a BLAS flop, an element a kernel touches, a
# flop of a GEMM inside a (conv) kernel
_NS_PER = {"blas flop": 0.01, "element": 0.5, "kernel flop": 0.01}


def matmul_bound(g: Graph) -> bool:
    """True when BLAS calls outweigh the work parallel kernels would do (an MLP), so BLAS
    gets the threads and the kernels run serial. A recurrence's per-step products count as
    kernel work: they run inside its kernel, one single-threaded GEMM per thread."""
    blas = kernels = 0.0
    for n in g.nodes:
        gemm = n.op.blas_flops(n)
        if gemm:
            blas += gemm * _NS_PER["blas flop"]
            continue
        size = max((o.type.size for o in n.outputs), default=0)
        if size >= PARALLEL_MIN_ELEMENTS:
            kernels += size * _NS_PER["element"]
        kernels += n.op.flops(n) * _NS_PER["kernel flop"]
    return blas > kernels
