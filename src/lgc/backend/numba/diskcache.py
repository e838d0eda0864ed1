"""Numba's per-kernel disk cache, loading machine code without Numba's compiler set-up.

Before loading a cached overload, Numba's `FunctionCache.load_overload` refreshes the whole
target context: it imports and registers every typing and lowering registry (numba.np.linalg,
arraymath, ... and through them scipy.linalg), about 0.3 s of a warm start that compiles
nothing. Machine code loaded from disk needs none of that, only the runtime (NRT) symbols its
object code links against; every other symbol (Numba's C helpers, libm) is registered when the
context is created. So a hit here initializes the NRT and loads; a miss returns None and the
dispatcher compiles, whose pipeline refreshes the context itself (numba/core/compiler.py).
"""

from __future__ import annotations

from numba.core.caching import FunctionCache
from numba.core.runtime import rtsys


class LoadingCache(FunctionCache):
    """FunctionCache whose loads skip the full context refresh (see the module docstring)."""

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)


def install(dispatcher) -> None:
    """Give a `cache=True` dispatcher the loading cache (same files, same index)."""
    dispatcher._cache = LoadingCache(dispatcher.py_func)
