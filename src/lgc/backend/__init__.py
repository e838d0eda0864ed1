"""Backends turn a Graph into an executable `f(list of arrays) -> list of arrays`.

The default comes from `lgc.set_backend`, else the `LGC_BACKEND` environment variable, else
the best backend available.
"""

from __future__ import annotations

import os
import sys

from ..errors import LgcError

_BACKENDS = {}
_selected: str | None = None


def register_backend(name: str, factory) -> None:
    _BACKENDS[name] = factory


def _numba(g):
    from .numba import NumbaExecutable  # numba is imported only when this backend is used

    return NumbaExecutable(g)


def _cuda(g):
    from .cuda import CudaExecutable  # numba.cuda is imported only when this backend is used

    return CudaExecutable(g)


def _load():
    if not _BACKENDS:
        from .reference import ReferenceExecutable

        register_backend("reference", ReferenceExecutable)
        register_backend("numba", _numba)
        register_backend("cuda", _cuda)


def available_backends() -> list[str]:
    _load()
    return list(_BACKENDS)


def set_backend(name: str) -> None:
    """Select the default backend for dlfeval and lgc.compile."""
    _check(name)
    _require(name)
    global _selected
    _selected = name


def get_backend() -> str:
    """The default backend's name."""
    name = _selected or os.environ.get("LGC_BACKEND") or _default()
    if name not in _BACKENDS:
        _check(name)
    return name


_DEFAULT: list[str] = []


def _default() -> str:
    if not _DEFAULT:
        import importlib.util

        _DEFAULT.append("numba" if importlib.util.find_spec("numba") else "reference")
    return _DEFAULT[0]


def _check(name: str) -> None:
    if name not in available_backends():
        raise LgcError(f"unknown backend {name!r}; available: {', '.join(available_backends())}")


def _require(name: str) -> None:
    """Backends that need hardware say so here, before any tracing (an LgcError)."""
    if name == "cuda":
        from .cuda import require_device

        require_device()


def compile_graph(g, backend: str | None = None):
    name = backend or get_backend()
    _check(name)
    _require(name)
    return _BACKENDS[name](g)


# --- device residency hooks (the cuda backend keeps donated buffers on the GPU) ---------------


def sync_host() -> None:
    """Copy buffers that a device backend updated in place (donated inputs) back into their
    host arrays. Call before reading such arrays; a no-op unless the cuda backend was used."""
    runtime = sys.modules.get("lgc.backend.cuda.runtime")
    if runtime is not None:
        runtime.sync_host()


def host_changed(arrays) -> None:
    """Say that these host arrays were written on the host: a device backend drops its
    resident copies and uploads them again on next use. A no-op unless cuda was used."""
    runtime = sys.modules.get("lgc.backend.cuda.runtime")
    if runtime is not None:
        runtime.forget(arrays)
