"""The BLAS libraries next to the kernels: their thread count during a program, and the SciPy
BLAS that kernels with in-kernel GEMMs (np.dot) call through Numba.

BLAS's threads spin-wait between calls, and so would any other pool's: two pools on the same
cores fight (measured: LeNet 16 ms -> 7 ms once BLAS ran single-threaded during the program).
A program whose kernels run on lgc's pool therefore sets BLAS to one thread for the length of a
call (`set_threads`), and splits a big product between its own threads (ops/linalg.py). (Until
prepared calls were launched without Python, an MLP's program left the threads to BLAS
instead: waking the pool through Python cost more than BLAS's own threads.)
"""

from __future__ import annotations

import os
import sys
import threading

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

            _BLAS.extend(_Threads(lc) for lc in threadpoolctl.ThreadpoolController()
                         .lib_controllers if lc.user_api == "blas")
        except Exception:  # threadpoolctl missing or a BLAS it cannot drive: leave BLAS alone
            pass
        _BLAS.append(None)
    previous = 0
    main = threading.current_thread() is threading.main_thread()
    for lib in _BLAS:
        if lib is not None:
            previous = lib.swap(n, main)
    return previous


class _Threads:
    """One BLAS library's thread count, read and set around every call of a threaded program
    (twice per call, for each library: NumPy's OpenBLAS and SciPy's). Through threadpoolctl
    that costs ~8 us a call; OpenBLAS's own two functions, found once, ~2 us. They are called
    directly from the main thread only, for an OpenBLAS on its own threads (not OpenMP's);
    otherwise threadpoolctl decides (it lets one thread alone change OpenBLAS's pool)."""

    def __init__(self, lc):
        self.lc, self.raw = lc, None
        if lc.internal_api == "openblas" and getattr(lc, "threading_layer", "") == "pthreads":
            try:
                prefix, suffix = lc._find_affixes()  # its symbols' names, as threadpoolctl found
                self.raw = (getattr(lc.dynlib, f"{prefix}openblas_get_num_threads{suffix}"),
                            getattr(lc.dynlib, f"{prefix}openblas_set_num_threads{suffix}"))
            except Exception:  # another threadpoolctl: its own API
                self.raw = None

    def swap(self, n: int, main: bool) -> int:
        if self.raw is not None and main:
            get, put = self.raw
            previous = get()
            put(n)
            return previous
        previous = self.lc.num_threads
        self.lc.set_num_threads(n)
        return previous
